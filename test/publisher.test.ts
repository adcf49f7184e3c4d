/**
 * The publish script's promise: a batch published again (the relay died between XADD and COMMIT)
 * adds nothing twice, and the dedupe memory only holds events in flight.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { StreamPublisher } from "../src/relay/4-Publish.js"
import type { OutboxRow } from "../src/relay/Database.js"
import { RelayConfig } from "../src/relay/RelayConfig.js"
import { inflightKey } from "../src/shared/RedisKeys.js"
import { readStream, testEnv } from "./support/relayHarness.js"

const row = (n: number, topic: string): OutboxRow => ({
  id: String(n),
  event_id: `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`,
  topic,
  event_type: "Counted",
  aggregate_type: "counter",
  aggregate_id: `agg-${n % 3}`,
  tenant_id: "t1",
  payload: JSON.stringify({ n }),
  headers: "{}",
  schema_version: 1,
  occurred_at: "2026-01-01T00:00:00.000000Z",
  created_at: "2026-01-01 00:00:00+00",
  attempts: 0,
  slot: n % 3
})

// These tests are about markers: every slot's lease epoch is 1 (fencing has tests of its own).
const epochs: ReadonlyMap<number, string> = new Map([[0, "1"], [1, "1"], [2, "1"]])

describe("StreamPublisher", () => {
  it.live("publishes a re-claimed batch once, and forgets markers after the commit", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("publisher")
      const context = yield* Layer.build(StreamPublisher.layer.pipe(Layer.provide(RelayConfig.layerFrom(t.env))))
      const publisher = Context.get(context, StreamPublisher)
      const rows = Array.from({ length: 10 }, (_, i) => row(i + 1, i % 2 === 0 ? "a" : "b"))

      const first = yield* publisher.publish(rows.slice(0, 6), epochs)
      assert.isTrue(first.every((o) => o._tag === "Published" && !o.duplicate))
      // The relay "crashed" before COMMIT: the rows come back, with more behind them.
      const second = yield* publisher.publish(rows, epochs)
      assert.deepStrictEqual(
        second.map((o) => o._tag === "Published" && o.duplicate),
        [true, true, true, true, true, true, false, false, false, false]
      )
      // The duplicate outcome points at the entry the first attempt added.
      assert.deepStrictEqual(
        second.slice(0, 6).map((o) => o._tag === "Published" ? o.entryId : ""),
        first.map((o) => o._tag === "Published" ? o.entryId : "")
      )
      for (const topic of ["a", "b"]) {
        const entries = yield* Effect.promise(() => readStream(t.redis, `${t.prefix}${topic}`))
        const ns = entries.map((e) => (JSON.parse(e.fields.payload!) as { n: number }).n)
        assert.deepStrictEqual(ns, rows.filter((r) => r.topic === topic).map((r) => Number(r.id)))
      }
      yield* publisher.forgetLater(rows)
      yield* publisher.flushForgotten
      for (const topic of ["a", "b"]) {
        const left = yield* Effect.promise(() => t.redis.hlen(inflightKey(`${t.prefix}${topic}`)))
        assert.strictEqual(left, 0, "no dedupe memory left once committed")
      }
    }).pipe(Effect.scoped))

  it.live("drops committed markers with the next call for the stream, or when flushed", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("forget-later")
      const context = yield* Layer.build(StreamPublisher.layer.pipe(Layer.provide(RelayConfig.layerFrom(t.env))))
      const publisher = Context.get(context, StreamPublisher)
      const markers = (topic: string) => Effect.promise(() => t.redis.hkeys(inflightKey(`${t.prefix}${topic}`)))
      const first = [row(1, "a"), row(2, "a"), row(3, "b")]
      const second = [row(4, "a"), row(5, "a")]
      yield* publisher.publish(first, epochs)
      yield* publisher.forgetLater(first)
      // Queued, not sent: the markers are still there until the stream's next call.
      assert.strictEqual((yield* markers("a")).length, 2)
      yield* publisher.publish(second, epochs)
      assert.deepStrictEqual(
        (yield* markers("a")).sort(),
        second.map((r) => r.event_id),
        "stream a: only the new batch"
      )
      assert.deepStrictEqual(yield* markers("b"), [first[2]!.event_id], "stream b had no call since")
      // A batch published again after its markers were dropped would be added twice: only committed
      // batches are forgotten, and a re-claim of an uncommitted one still finds its markers.
      const again = yield* publisher.publish(second, epochs)
      assert.isTrue(again.every((o) => o._tag === "Published" && o.duplicate))
      yield* publisher.forgetLater(second)
      yield* publisher.flushForgotten
      assert.deepStrictEqual(yield* markers("a"), [])
      assert.deepStrictEqual(yield* markers("b"), [], "stream b's marker went with the flush")
      const entries = yield* Effect.promise(() => readStream(t.redis, `${t.prefix}a`))
      assert.deepStrictEqual(entries.map((e) => (JSON.parse(e.fields.payload!) as { n: number }).n), [1, 2, 4, 5])
    }).pipe(Effect.scoped))

  it.live("trims streams with MAXLEN ~ when asked", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("maxlen", { RELAY_STREAM_MAXLEN: "100" })
      const context = yield* Layer.build(StreamPublisher.layer.pipe(Layer.provide(RelayConfig.layerFrom(t.env))))
      const publisher = Context.get(context, StreamPublisher)
      for (let batch = 0; batch < 10; batch++) {
        yield* publisher.publish(Array.from({ length: 100 }, (_, i) => row(batch * 100 + i + 1, "trimmed")), epochs)
      }
      const length = yield* Effect.promise(() => t.redis.xlen(`${t.prefix}trimmed`))
      assert.isAtMost(length, 300)
      assert.isAtLeast(length, 100)
    }).pipe(Effect.scoped))
})
