/**
 * The relay when things break: its LISTEN connection killed or unreachable, Redis stopped and
 * restarted, events that can never be published. Nothing is lost, nothing is dead-lettered because a
 * server was down, and a poison event never holds back its neighbours.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { Health } from "../src/relay/Health.js"
import { freePort } from "./support/ports.js"
import { startRedisServer } from "./support/redisServer.js"
import {
  drained,
  insertEvents,
  pendingCount,
  readStream,
  relayLayer,
  streamWithAtLeast,
  testEnv
} from "./support/relayHarness.js"
import { eventually } from "./support/wait.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

describe("faults", () => {
  it.live("recovers from pg_terminate_backend on the LISTEN connection: new events arrive within 3 s", () =>
    Effect.gen(function*() {
      // A poll this slow cannot be what delivers the events below.
      const t = yield* testEnv("listen-kill", { RELAY_POLL_INTERVAL: "1 minute" })
      const context = yield* Layer.build(relayLayer(t.env))
      const health = Context.get(context, Health)
      yield* promise(() => eventually(() => Effect.runPromise(health.snapshot), (s) => s.listen.ok))
      const listenPids = () =>
        t.sql<Array<{ pid: number }>>`
          SELECT pid FROM pg_stat_activity
          WHERE application_name = 'outbox-relay-listen' AND datname = current_database()`.then((rows) =>
          rows.map((r) => r.pid)
        )
      const [before] = yield* promise(listenPids)
      assert.isDefined(before)

      for (let round = 0; round < 3; round++) {
        yield* promise(() =>
          t.sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE application_name = 'outbox-relay-listen' AND datname = current_database()`
        )
        const started = Date.now()
        yield* promise(() => insertEvents(t.sql, [{ topic: "orders", payload: { round } }]))
        const entries = yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}orders`, round + 1, 5_000))
        const elapsed = Date.now() - started
        assert.strictEqual(entries.length, round + 1)
        // Typically a few hundred ms; the bound leaves room for a loaded machine and still rules out the
        // one-minute poll.
        assert.isBelow(elapsed, 3000, `round ${round}: event arrived after ${elapsed} ms`)
        // An event committed after the reconnect arrives by notification as well.
        yield* promise(() => eventually(listenPids, (pids) => pids.length === 1 && pids[0] !== before))
      }
      const [after] = yield* promise(listenPids)
      assert.notStrictEqual(after, before, "the LISTEN connection was replaced")
    }).pipe(Effect.scoped))

  it.live("delivers through the slow poll when LISTEN cannot connect at all", () =>
    Effect.gen(function*() {
      const closedPort = yield* promise(freePort)
      const t = yield* testEnv("listen-broken", {
        RELAY_LISTEN_DATABASE_URL: `postgres://postgres@127.0.0.1:${closedPort}/nowhere`,
        RELAY_POLL_INTERVAL: "300 millis"
      })
      const context = yield* Layer.build(relayLayer(t.env))
      const health = Context.get(context, Health)
      yield* promise(() => insertEvents(t.sql, [{ topic: "orders" }, { topic: "orders" }]))
      const entries = yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}orders`, 2, 5_000))
      assert.strictEqual(entries.length, 2)
      const snapshot = yield* health.snapshot
      assert.isFalse(snapshot.listen.ok, "LISTEN is reported broken")
      assert.isTrue(snapshot.ready, "the relay is still ready: Postgres and Redis answer")
    }).pipe(Effect.scoped))

  it.live("loses nothing and dead-letters nothing when Redis is stopped for 3 s", () =>
    Effect.gen(function*() {
      const redis = yield* Effect.acquireRelease(
        promise(() => startRedisServer({ appendonly: true })),
        (server) => promise(() => server.dispose())
      )
      const t = yield* testEnv("redis-down", { RELAY_REDIS_URL: redis.url, RELAY_POLL_INTERVAL: "500 millis" })
      const context = yield* Layer.build(relayLayer(t.env))
      const health = Context.get(context, Health)
      const { Redis } = yield* promise(() => import("ioredis"))
      const reader = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: null })
      reader.on("error", () => {})
      yield* Effect.addFinalizer(() => Effect.sync(() => reader.disconnect()))
      const stream = `${t.prefix}orders`
      const produce = (from: number, count: number) =>
        promise(() =>
          insertEvents(
            t.sql,
            Array.from({ length: count }, (_, i) => ({ topic: "orders", payload: { seq: from + i } }))
          )
        )

      yield* produce(0, 50)
      yield* promise(() => reader.connect())
      yield* promise(() => streamWithAtLeast(reader, stream, 50))
      yield* promise(() => redis.stop())
      // Events keep coming while Redis is away.
      for (let i = 0; i < 6; i++) {
        yield* produce(50 + i * 10, 10)
        yield* Effect.sleep("500 millis")
      }
      const during = yield* health.snapshot
      assert.isFalse(during.ready, "not ready while Redis is down")
      assert.isAbove(yield* promise(() => pendingCount(t.sql)), 0, "events wait in the outbox")
      yield* promise(() => redis.start())
      yield* produce(110, 40)
      const entries = yield* promise(() => streamWithAtLeast(reader, stream, 150, 20_000))
      const seqs = entries.map((e) => (JSON.parse(e.fields.payload!) as { seq: number }).seq)
      assert.deepStrictEqual(seqs, Array.from({ length: 150 }, (_, i) => i), "every event once, in order")
      const [dead] = yield* promise(() =>
        t.sql<Array<{ n: number }>>`SELECT count(*)::int AS n FROM outbox_events WHERE dead_at IS NOT NULL`
      )
      assert.strictEqual(dead!.n, 0, "nothing dead-lettered")
      assert.strictEqual(yield* promise(() => drained(t.sql)), 0)
      const after = yield* promise(() => eventually(() => Effect.runPromise(health.snapshot), (s) => s.ready))
      assert.isTrue(after.ready)
    }).pipe(Effect.scoped))

  it.live("dead-letters poison events with their reason while their neighbours arrive", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("poison", {
        RELAY_MAX_PAYLOAD_BYTES: "1000",
        RELAY_TOPIC_PATTERN: "^(orders|taken)$"
      })
      // A key of the wrong type where a stream should be.
      yield* promise(() => t.redis.set(`${t.prefix}taken`, "not a stream"))
      yield* Layer.build(relayLayer(t.env))
      yield* promise(() =>
        insertEvents(t.sql, [
          { topic: "orders", payload: { seq: 1 } },
          { topic: "orders", payload: { seq: 2, blob: "x".repeat(2000) } },
          { topic: "orders", payload: { seq: 3 } },
          { topic: "taken", payload: { seq: 4 } },
          { topic: "elsewhere", payload: { seq: 5 } },
          { topic: "orders", payload: { seq: 6 } }
        ])
      )
      const entries = yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}orders`, 3))
      assert.deepStrictEqual(entries.map((e) => (JSON.parse(e.fields.payload!) as { seq: number }).seq), [1, 3, 6])
      const dead = yield* promise(() =>
        eventually(
          () =>
            t.sql<Array<{ seq: number; last_error: string; attempts: number; dead_at: Date | null }>>`
            SELECT (payload->>'seq')::int AS seq, last_error, attempts, dead_at
            FROM outbox_events WHERE dead_at IS NOT NULL ORDER BY id`,
          (rows) => rows.length === 3
        )
      )
      assert.deepStrictEqual(dead.map((d) => d.seq), [2, 4, 5])
      assert.match(dead[0]!.last_error, /RELAY_MAX_PAYLOAD_BYTES/)
      assert.match(dead[1]!.last_error, /WRONGTYPE/)
      assert.match(dead[2]!.last_error, /RELAY_TOPIC_PATTERN/)
      for (const d of dead) {
        assert.strictEqual(d.attempts, 1)
        assert.isNotNull(d.dead_at)
      }
      // Mirrored for people and alerts, with the reason.
      const mirrored = yield* promise(() => streamWithAtLeast(t.redis, `{${t.prefix}orders}:dlq`, 1))
      assert.strictEqual(mirrored.length, 1)
      assert.match(mirrored[0]!.fields.reason!, /RELAY_MAX_PAYLOAD_BYTES/)
      assert.strictEqual(yield* promise(() => drained(t.sql)), 0)
      // Neighbours committed later still flow.
      yield* promise(() => insertEvents(t.sql, [{ topic: "orders", payload: { seq: 7 } }]))
      const later = yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}orders`, 4))
      assert.strictEqual(later.length, 4)
      assert.strictEqual((yield* promise(() => readStream(t.redis, `{${t.prefix}orders}:dlq`))).length, 1)
    }).pipe(Effect.scoped))
})
