/**
 * RELAY_STREAM_TRIM=acked with a slow consumer group: a fast group acknowledges everything, a slow one
 * holds pending and unread entries. Trimming removes only what both acknowledged: every entry the slow
 * group has not acknowledged stays, and a stream without groups is left whole.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Metric } from "effect"
import type { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import * as Metrics from "../src/relay/Metrics.js"
import { insertEvents, relayLayer, testEnv } from "./support/relayHarness.js"
import { eventually } from "./support/wait.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

/** Entry ids of a stream, oldest first. */
const entryIds = async (redis: Redis, stream: string) => (await redis.xrange(stream, "-", "+")).map(([id]) => id)

/** Reads up to `count` new entries for `group` and returns their ids. */
const readGroup = async (redis: Redis, stream: string, group: string, count: number) => {
  const reply = (await redis.xreadgroup("GROUP", group, "c1", "COUNT", count, "STREAMS", stream, ">")) as
    | Array<[string, Array<[string, Array<string>]>]>
    | null
  return (reply?.[0]?.[1] ?? []).map(([id]) => id)
}

const events = (topic: string, n: number) =>
  Array.from({ length: n }, () => ({ topic, event_id: randomUUID(), aggregate_id: "agg-1" }))

describe("consumer-safe trimming", () => {
  it.live(
    "trims only what every group acknowledged; pending, unread and group-less entries stay",
    () =>
      Effect.gen(function*() {
        const t = yield* testEnv("trimming", { RELAY_STREAM_TRIM: "acked" })
        const stream = `${t.prefix}orders`
        const audit = `${t.prefix}audit`
        // Published by a relay that has stopped, so the first pass of the next one sees the groups below.
        yield* promise(() => insertEvents(t.sql, [...events("orders", 30), ...events("audit", 10)]))
        yield* Effect.scoped(Effect.gen(function*() {
          yield* Layer.build(relayLayer({ ...t.env, RELAY_STREAM_TRIM: "none" }))
          yield* promise(() => eventually(() => t.redis.xlen(stream), (n) => n === 30))
        }))
        const all = yield* promise(() => entryIds(t.redis, stream))
        assert.strictEqual(all.length, 30)

        // fast reads and acknowledges all 30; slow reads 20 and acknowledges the first 5.
        yield* promise(() => t.redis.xgroup("CREATE", stream, "fast", "0"))
        yield* promise(() => t.redis.xgroup("CREATE", stream, "slow", "0"))
        const fastRead = yield* promise(() => readGroup(t.redis, stream, "fast", 100))
        yield* promise(() => t.redis.xack(stream, "fast", ...fastRead))
        const slowRead = yield* promise(() => readGroup(t.redis, stream, "slow", 20))
        yield* promise(() => t.redis.xack(stream, "slow", ...slowRead.slice(0, 5)))

        yield* Layer.build(relayLayer(t.env))
        // Only the 5 entries both groups acknowledged go: slow's 15 pending and 10 unread stay.
        const afterFirst = yield* promise(() => eventually(() => entryIds(t.redis, stream), (ids) => ids.length < 30))
        assert.deepStrictEqual(afterFirst, all.slice(5))
        assert.strictEqual(yield* promise(() => t.redis.xlen(audit)), 10, "a stream without groups is left whole")

        // slow catches up on what it read; new events keep coming. The next pass (every 10 s) trims
        // up to slow's first unread entry, which stays.
        yield* promise(() => t.redis.xack(stream, "slow", ...slowRead.slice(5)))
        yield* promise(() => insertEvents(t.sql, events("orders", 5)))
        const afterSecond = yield* promise(() =>
          eventually(() => entryIds(t.redis, stream), (ids) => ids.length === 15, 15_000, 200)
        )
        assert.deepStrictEqual(afterSecond.slice(0, 10), all.slice(20))
        const pending = (yield* promise(() => t.redis.xpending(stream, "slow"))) as [number, ...Array<unknown>]
        assert.strictEqual(pending[0], 0)
        // Everything left is what slow has not read yet: the 10 old entries and the 5 new ones.
        assert.deepStrictEqual(yield* promise(() => readGroup(t.redis, stream, "slow", 100)), afterSecond)
        assert.strictEqual((yield* Metric.value(Metrics.streamEntriesTrimmed)).count, 20)
      }).pipe(Effect.scoped, Effect.provideService(Metric.MetricRegistry, new Map())),
    60_000
  )
})
