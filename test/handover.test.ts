/**
 * The NOTIFY hand-over: producers skip NOTIFY while the relay is draining, and no event ever waits
 * for the slow poll because of it. The poll is set to a minute here, so anything that arrives late
 * would show as a timeout.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer } from "effect"
import { insertEvents, relayLayer, testEnv } from "./support/relayHarness.js"
import { eventually } from "./support/wait.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

describe("NOTIFY hand-over", () => {
  it.live("delivers every burst promptly while producers skip NOTIFY during drains", () =>
    Effect.gen(function*() {
      // One claim lane: producers skip NOTIFY only while every lane is awake, and a lane whose slots
      // get few events would keep the flag down (docs/design.md, Helper lanes).
      const t = yield* testEnv("handover", {
        RELAY_POLL_INTERVAL: "1 minute",
        RELAY_BATCH_SIZE: "20",
        RELAY_CONCURRENCY: "1"
      })
      yield* Layer.build(relayLayer(t.env))
      const stream = `${t.prefix}orders`
      let produced = 0
      let sawAwake = false
      for (let burst = 0; burst < 6; burst++) {
        const writers = 12
        const perWriter = 60
        const watch = promise(async () => {
          const rows = await t
            .sql`SELECT count(*)::int AS n FROM outbox_relay_wake WHERE awake_until > clock_timestamp()`
          if (rows[0]!.n > 0) sawAwake = true
        })
        yield* promise(() =>
          Promise.all(Array.from({ length: writers }, async (_, w) => {
            for (let i = 0; i < perWriter; i++) {
              await insertEvents(t.sql, [{ topic: "orders", aggregate_id: `w${w}`, payload: { burst, w, i } }])
            }
          }))
        ).pipe(Effect.zip(Effect.andThen(Effect.sleep("20 millis"), watch), { concurrent: true }))
        produced += writers * perWriter
        const lastCommit = Date.now()
        // Every event of the burst, including those committed while the relay was handing over.
        const length = yield* promise(() => eventually(() => t.redis.xlen(stream), (n) => n >= produced, 3_000, 5))
        assert.strictEqual(length, produced, `burst ${burst}: all events arrived`)
        assert.isBelow(Date.now() - lastCommit, 5_000, `burst ${burst}: the tail did not wait for the one-minute poll`)
        // An idle gap long enough for the relay to go to sleep.
        yield* Effect.sleep(`${30 + burst * 40} millis`)
      }
      assert.isTrue(sawAwake, "the relay marked itself awake while producers were busy")
      const [wake] = yield* promise(() =>
        t.sql`SELECT count(*)::int AS n FROM outbox_relay_wake WHERE awake_until > clock_timestamp()`
      )
      assert.strictEqual(wake!.n, 0, "asleep again once idle: producers notify")
      const [summary] = yield* promise(() =>
        t.sql`SELECT pg_sequence_last_value('outbox_relay_awake_until')::text AS v`
      )
      assert.strictEqual(summary!.v, "1", "the number the trigger reads says asleep too")
    }).pipe(Effect.scoped))

  // Since sql/0006 producers in any isolation level skip NOTIFY (the flag is a sequence, read without
  // a snapshot), so the hand-over must cover them all.
  for (const level of ["read committed", "repeatable read"] as const) {
    it.live(`relays a row whose producer (${level}) saw the relay awake but committed after it went idle`, () =>
      Effect.gen(function*() {
        const t = yield* testEnv("handover-late", {
          RELAY_POLL_INTERVAL: "1 minute",
          RELAY_BATCH_SIZE: "5",
          RELAY_CONCURRENCY: "1"
        })
        yield* Layer.build(relayLayer(t.env))
        const stream = `${t.prefix}orders`
        let load = true
        // Background producers keep the relay draining, so it marks itself awake.
        const background = promise(() =>
          Promise.all(Array.from({ length: 6 }, async (_, w) => {
            let i = 0
            while (load) await insertEvents(t.sql, [{ topic: "orders", aggregate_id: `bg${w}`, payload: { i: i++ } }])
          }))
        )
        const fiber = yield* Effect.forkChild(background)
        // Whatever happens below, stop the producers before the database goes away.
        yield* Effect.addFinalizer(() => Effect.andThen(Effect.sync(() => (load = false)), Fiber.await(fiber)))
        const late = yield* promise(() => t.sql.reserve())
        yield* Effect.addFinalizer(() =>
          Effect.promise(() => late`ROLLBACK`.catch(() => undefined)).pipe(
            Effect.andThen(Effect.sync(() => late.release()))
          )
        )
        // Open a producer transaction that sees the relay awake, so its trigger skips the NOTIFY.
        const sawAwake = yield* promise(async () => {
          const deadline = Date.now() + 10_000
          while (Date.now() < deadline) {
            await late.unsafe(`BEGIN ISOLATION LEVEL ${level}`)
            // What the trigger reads (sql/0006_wake_summary.sql).
            const [row] = await late`
              SELECT pg_sequence_last_value('outbox_relay_awake_until')
                       > (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
                AS awake`
            if (row!.awake) {
              await late`INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
                          VALUES ('orders', 'Late', 'late', '{}')`
              return true
            }
            await late`ROLLBACK`
            await new Promise((r) => setTimeout(r, 5))
          }
          return false
        })
        assert.isTrue(sawAwake, "the relay was awake while producers were busy")
        load = false
        yield* Fiber.join(fiber)
        // Let the relay drain the background load and try to go to sleep; the open transaction holds it.
        const drained = yield* promise(() => t.redis.xlen(stream))
        yield* Effect.sleep("300 millis")
        const committed = Date.now()
        yield* promise(() => late`COMMIT`)
        const entries = yield* promise(() =>
          eventually(
            () => t.redis.xrange(stream, "-", "+"),
            (es) => es.some(([, fields]) => fields.includes("Late")),
            3_000,
            5
          )
        )
        assert.isTrue(entries.some(([, fields]) => fields.includes("Late")), "the late row arrived")
        assert.isBelow(Date.now() - committed, 1_000, "without waiting for the slow poll")
        assert.isAtLeast(entries.length, drained + 1)
      }).pipe(Effect.scoped))
  }

  it.live("relays commits that land while a batch is in flight at once, and commits its last batch when idle", () =>
    Effect.gen(function*() {
      // Sparse writers: many commits land while a batch is in flight, with the lane's flag down, so
      // only their notifications can wake it (the poll is a minute).
      const t = yield* testEnv("in-flight", { RELAY_POLL_INTERVAL: "1 minute", RELAY_CONCURRENCY: "1" })
      yield* Layer.build(relayLayer(t.env))
      const stream = `${t.prefix}orders`
      const writers = 4
      const until = Date.now() + 1_500
      const counts = yield* promise(() =>
        Promise.all(Array.from({ length: writers }, async (_, w) => {
          let i = 0
          while (Date.now() < until) {
            await insertEvents(t.sql, [{ topic: "orders", aggregate_id: `w${w}`, payload: { w, i: i++ } }])
            await new Promise((r) => setTimeout(r, Math.random() * 4))
          }
          return i
        }))
      )
      const produced = counts.reduce((a, b) => a + b, 0)
      const lastCommit = Date.now()
      const length = yield* promise(() => eventually(() => t.redis.xlen(stream), (n) => n >= produced, 3_000, 5))
      assert.strictEqual(length, produced, "every event arrived, none twice")
      assert.isBelow(Date.now() - lastCommit, 1_000, "the last ones did not wait for the poll")
      const entries = yield* promise(() => t.redis.xrange(stream, "-", "+"))
      const next = new Array<number>(writers).fill(0)
      for (const [, fields] of entries) {
        const { i, w } = JSON.parse(fields[fields.indexOf("payload") + 1]!) as { w: number; i: number }
        assert.strictEqual(i, next[w], `writer ${w}: in commit order`)
        next[w]!++
      }
      // Idle now: the last batch's deletion is committed soon after, not left open.
      const pending = yield* promise(() =>
        eventually(
          async () => (await t.sql`SELECT count(*)::int AS n FROM outbox_events`)[0]!.n,
          (n) => n === 0,
          1_000,
          5
        )
      )
      assert.strictEqual(pending, 0, "no published row left in the table")
    }).pipe(Effect.scoped))

  it.live("wakes the relay for producers in REPEATABLE READ and SERIALIZABLE transactions", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("isolation", { RELAY_POLL_INTERVAL: "1 minute" })
      yield* Layer.build(relayLayer(t.env))
      for (const level of ["repeatable read", "serializable"] as const) {
        const started = Date.now()
        yield* promise(() =>
          t.sql.begin(
            `isolation level ${level}`,
            (tx) =>
              tx`INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
               VALUES ('orders', 'Isolated', ${level}, '{}')`
          )
        )
        yield* promise(() =>
          eventually(() => t.redis.xlen(`${t.prefix}orders`), (n) => n >= (level === "serializable" ? 2 : 1), 10_000, 5)
        )
        // Far below the one-minute poll: the NOTIFY woke the relay.
        assert.isBelow(Date.now() - started, 5_000)
      }
      yield* promise(() => insertEvents(t.sql, [{ topic: "orders" }]))
      const n = yield* promise(() => eventually(() => t.redis.xlen(`${t.prefix}orders`), (n) => n >= 3, 2_000, 5))
      assert.strictEqual(n, 3)
    }).pipe(Effect.scoped))
})
