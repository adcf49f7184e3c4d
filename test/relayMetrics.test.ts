/**
 * The relay metrics alerts and dashboards rely on, against real Postgres and Redis: each event's
 * latency from its `created_at` (whatever offset the session's TimeZone prints), the pending rows'
 * highest attempts, and Redis memory as `INFO memory` and `CONFIG GET maxmemory` report it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Metric } from "effect"
import { StreamPublisher } from "../src/relay/4-Publish.js"
import { Database } from "../src/relay/Database.js"
import * as Metrics from "../src/relay/Metrics.js"
import { RelayConfig } from "../src/relay/RelayConfig.js"
import { relayLayer, streamWithAtLeast, testEnv } from "./support/relayHarness.js"
import { eventually } from "./support/wait.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

/** Reads `read` until `done` holds (every 20 ms, for at most 5 seconds). */
const valueOnce = <A>(read: Effect.Effect<A>, done: (value: A) => boolean) =>
  Effect.gen(function*() {
    while (true) {
      const value = yield* read
      if (done(value)) return value
      yield* Effect.sleep("20 millis")
    }
  }).pipe(Effect.timeout("5 seconds"))

describe("relay metrics", () => {
  it.live("records each event's latency from created_at to the XADD, in a session printing +05:30", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("latency", { RELAY_METRICS_INTERVAL: "200 millis" })
      // The relay's sessions print created_at with this zone's offset.
      const database = new URL(t.databaseUrl).pathname.slice(1)
      yield* promise(() => t.sql.unsafe(`ALTER DATABASE "${database}" SET timezone = 'Asia/Kolkata'`))
      const before = Date.now()
      // Created two seconds "ago": every latency is at least that, and at most that plus the wait.
      yield* promise(() =>
        t.sql`INSERT INTO outbox_events (topic, event_type, aggregate_id, payload, created_at)
              SELECT 'orders', 'Aged', 'agg-' || g, '{}', now() - interval '2 seconds'
              FROM generate_series(1, 10) AS g`
      )
      yield* Layer.build(relayLayer(t.env))
      yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}orders`, 10))
      const latency = yield* valueOnce(Metric.value(Metrics.latencySeconds), (state) => state.count >= 10)
      const waited = (Date.now() - before) / 1000
      assert.strictEqual(latency.count, 10)
      assert.isAtLeast(latency.min, 2)
      assert.isAtMost(latency.max, 2 + waited)

      // The gauges Upkeep polls: nothing pending, Redis memory as INFO reports it.
      const used = yield* valueOnce(Metric.value(Metrics.redisUsedMemoryBytes), (state) => state.value > 0)
      assert.isAbove(used.value, 0)
      const [, maxmemory] = (yield* promise(() => t.redis.config("GET", "maxmemory"))) as [string, string]
      assert.strictEqual((yield* Metric.value(Metrics.redisMaxmemoryBytes)).value, Number(maxmemory))
      assert.strictEqual((yield* Metric.value(Metrics.pendingMaxAttempts)).value, 0)
    }).pipe(Effect.scoped, Effect.provideService(Metric.MetricRegistry, new Map())))

  it.live("stats: pending rows, their highest attempts, dead rows", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("stats")
      const context = yield* Layer.build(
        Database.layer.pipe(Layer.provide(RelayConfig.layerFrom(t.env)))
      )
      const stats = Effect.gen(function*() {
        const database = yield* Database
        return yield* database.stats
      }).pipe(Effect.provideContext(context))
      assert.deepStrictEqual(yield* stats, { pending: 0, pendingMaxAttempts: 0, oldestPendingSeconds: 0, dead: 0 })
      yield* promise(() =>
        t.sql`INSERT INTO outbox_events (topic, event_type, aggregate_id, payload, attempts, dead_at)
              VALUES ('orders', 'Fresh', 'a', '{}', 0, NULL),
                     ('orders', 'Replayed', 'b', '{}', 7, NULL),
                     ('orders', 'Dead', 'c', '{}', 9, now())`
      )
      const after = yield* stats
      assert.strictEqual(after.pending, 2)
      assert.strictEqual(after.pendingMaxAttempts, 7)
      assert.strictEqual(after.dead, 1)
    }).pipe(Effect.scoped))

  it.live("reads Redis used_memory and maxmemory", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("memory")
      const context = yield* Layer.build(StreamPublisher.layer.pipe(Layer.provide(RelayConfig.layerFrom(t.env))))
      const memory = yield* Effect.gen(function*() {
        const publisher = yield* StreamPublisher
        return yield* publisher.memory
      }).pipe(Effect.provideContext(context))
      const [, maxmemory] = (yield* promise(() => t.redis.config("GET", "maxmemory"))) as [string, string]
      assert.isAbove(memory.usedMemory, 0)
      assert.strictEqual(memory.maxmemory, Number(maxmemory))
      const info = yield* promise(() => eventually(() => t.redis.info("memory"), (text) => text.length > 0))
      // Same order of magnitude as a fresh INFO (memory moves a little between the two reads).
      const now = Number(/^used_memory:(\d+)/m.exec(info)![1])
      assert.isAbove(memory.usedMemory, now / 2)
      assert.isBelow(memory.usedMemory, now * 2)
    }).pipe(Effect.scoped))
})
