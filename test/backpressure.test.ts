/**
 * Redis memory backpressure against a Redis of its own with a small `maxmemory` (noeviction): past
 * RELAY_REDIS_MAX_MEMORY_RATIO the relay stops claiming (rows wait in Postgres, no OOM retry loop),
 * `/readyz` and a gauge on `/metrics` say why, and once a consumer frees memory it resumes; every event arrives
 * once.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Metric } from "effect"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import * as Metrics from "../src/relay/Metrics.js"
import { freePort } from "./support/ports.js"
import { startRedisServer } from "./support/redisServer.js"
import { daemonLayer, insertEvents, pendingCount, testEnv } from "./support/relayHarness.js"
import { eventually, sleep } from "./support/wait.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

const redisServer = Effect.acquireRelease(
  promise(() => startRedisServer({ maxmemory: "8mb" })),
  (server) => promise(() => server.dispose())
)

const redisClient = (url: string) =>
  Effect.acquireRelease(
    Effect.sync(() => new Redis(url, { maxRetriesPerRequest: 1 })),
    (client) => Effect.sync(() => client.disconnect())
  )

/** Event ids in a stream, oldest first. */
const eventIds = async (redis: Redis, stream: string) =>
  (await redis.xrange(stream, "-", "+")).map(([, fields]) => fields[fields.indexOf("event_id") + 1]!)

describe("redis memory backpressure", () => {
  it.live(
    "pauses claiming above the ratio of maxmemory, says why, and resumes once memory is freed",
    () =>
      Effect.gen(function*() {
        const server = yield* redisServer
        const port = yield* promise(freePort)
        const t = yield* testEnv("backpressure", {
          RELAY_REDIS_URL: server.url,
          RELAY_REDIS_MAX_MEMORY_RATIO: "0.5",
          RELAY_METRICS_INTERVAL: "100 millis",
          RELAY_BATCH_SIZE: "50",
          RELAY_POLL_INTERVAL: "200 millis",
          RELAY_HTTP_PORT: String(port)
        })
        const redis = yield* redisClient(server.url)
        const stream = `${t.prefix}orders`
        yield* Layer.build(daemonLayer(t.env))
        const readiness = promise(async () => {
          const response = await fetch(`http://127.0.0.1:${port}/readyz`)
          const body = (await response.json()) as Record<string, { ok: boolean; error?: string }>
          return { status: response.status, body }
        })
        const gauge = promise(async () => {
          const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
          return /^outbox_redis_backpressure (\d+)/m.exec(metrics)?.[1]
        })
        const paused = Effect.map(Metric.value(Metrics.redisBackpressure), (state) => state.value === 1)

        // Produce 1 KB events, 200 at a time, until the relay pauses (at 4 MB of the 8 MB).
        const payload = { blob: "x".repeat(1000) }
        const produced: Array<string> = []
        const produce = (n: number) => {
          const events = Array.from({ length: n }, () => ({ topic: "orders", event_id: randomUUID(), payload }))
          produced.push(...events.map((e) => e.event_id))
          return promise(() => insertEvents(t.sql, events))
        }
        for (let round = 0; !(yield* paused); round++) {
          assert.isBelow(round, 100, "the relay never paused")
          yield* produce(200)
          yield* promise(() => sleep(50))
        }
        // Postgres and Redis are reachable: the relay stays ready, the detail says why it waits.
        const { body, status } = yield* readiness
        assert.strictEqual(status, 200)
        assert.isFalse(body.redisMemory!.ok)
        assert.match(body.redisMemory!.error ?? "", /above 50% of maxmemory 8\.0 MB; claiming paused/)
        assert.strictEqual(yield* gauge, "1")

        // More events while paused: they stay in Postgres, the stream does not grow, no batch fails.
        yield* produce(500)
        yield* promise(() => sleep(300))
        const failuresBefore = (yield* Metric.value(Metrics.batchFailures)).count
        const lengthBefore = yield* promise(() => redis.xlen(stream))
        yield* promise(() => sleep(1500))
        assert.isTrue(yield* paused)
        assert.strictEqual(yield* promise(() => redis.xlen(stream)), lengthBefore)
        assert.isAtLeast(yield* promise(() => pendingCount(t.sql)), 500)
        assert.strictEqual((yield* Metric.value(Metrics.batchFailures)).count, failuresBefore)

        // A consumer reads what is there and frees the memory: the relay resumes and drains.
        const seen = yield* promise(() => eventIds(redis, stream))
        yield* promise(() => redis.del(stream))
        const left = yield* promise(() => eventually(() => pendingCount(t.sql), (n) => n === 0, 15_000))
        assert.strictEqual(left, 0)
        assert.isFalse(yield* paused)
        assert.isTrue((yield* readiness).body.redisMemory!.ok)
        assert.strictEqual(yield* gauge, "0")
        seen.push(...(yield* promise(() => eventIds(redis, stream))))
        assert.strictEqual(new Set(seen).size, seen.length, "an event was published twice")
        assert.deepStrictEqual([...seen].sort(), [...produced].sort())
      }).pipe(Effect.scoped, Effect.provideService(Metric.MetricRegistry, new Map())),
    60_000
  )
})
