/**
 * The relay end to end against real Postgres and Redis, in-process: what a producer writes is what a
 * consumer reads, once, in order; rolled-back work never appears; a backlog drains.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { drained, insertEvents, readStream, relayLayer, streamWithAtLeast, testEnv } from "./support/relayHarness.js"
import { eventually } from "./support/wait.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

describe("relay", () => {
  it.live("publishes an inserted event to prefix+topic with the full envelope", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("envelope")
      yield* Layer.build(relayLayer(t.env))
      yield* promise(() =>
        t.sql`INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
              VALUES ('orders', 'OrderPlaced', 'order-42', '{"total": 10}')`
      )
      const [entry] = yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}orders`, 1))
      assert.isDefined(entry)
      const f = entry!.fields
      assert.deepStrictEqual(Object.keys(f).sort(), [
        "aggregate_id",
        "aggregate_type",
        "event_id",
        "event_type",
        "headers",
        "occurred_at",
        "payload",
        "schema_version",
        "tenant_id",
        "topic"
      ])
      assert.strictEqual(f.topic, "orders")
      assert.strictEqual(f.event_type, "OrderPlaced")
      assert.strictEqual(f.aggregate_id, "order-42")
      assert.strictEqual(f.aggregate_type, "")
      assert.strictEqual(f.tenant_id, "")
      assert.strictEqual(f.schema_version, "1")
      assert.deepStrictEqual(JSON.parse(f.payload!), { total: 10 })
      assert.deepStrictEqual(JSON.parse(f.headers!), {})
      assert.match(f.event_id!, /^[0-9a-f-]{36}$/)
      assert.isFalse(Number.isNaN(Date.parse(f.occurred_at!)))
      assert.strictEqual(yield* promise(() => drained(t.sql)), 0)
    }).pipe(Effect.scoped))

  it.live("publishes nothing for a rolled-back transaction", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("rollback")
      yield* Layer.build(relayLayer(t.env))
      yield* promise(() =>
        t.sql.begin(async (tx) => {
          await tx`INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
                   VALUES ('orders', 'Doomed', 'a', '{}')`
          await tx`SELECT 1/0`
        }).catch(() => undefined)
      )
      yield* promise(() => insertEvents(t.sql, [{ topic: "orders", event_type: "Kept" }]))
      const entries = yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}orders`, 1))
      // Give a stray publish of the rolled-back event time to show up.
      yield* Effect.sleep("300 millis")
      const after = yield* promise(() => readStream(t.redis, `${t.prefix}orders`))
      assert.deepStrictEqual(after.map((e) => e.fields.event_type), ["Kept"])
      assert.strictEqual(entries.length, 1)
    }).pipe(Effect.scoped))

  it.live("publishes an event_id inserted twice (ON CONFLICT DO NOTHING) once", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("dup")
      const eventId = "5b3f6a1e-8f7c-4d2b-9a51-0c7e2f4d1a90"
      yield* Layer.build(relayLayer(t.env))
      // The producer retries its transaction: both inserts carry the same idempotency key.
      yield* promise(() =>
        t.sql.begin(async (tx) => {
          for (let i = 0; i < 2; i++) {
            await tx`INSERT INTO outbox_events (event_id, topic, event_type, aggregate_id, payload)
                     VALUES (${eventId}, 'orders', 'OrderPlaced', 'o-1', '{}')
                     ON CONFLICT (event_id) DO NOTHING`
          }
          // The enqueue function is idempotent for the same content too.
          await tx`SELECT outbox_enqueue('orders', 'OrderPlaced', 'o-1', '{}'::jsonb, '{}'::jsonb, ${eventId}::uuid)`
        })
      )
      // Same aggregate, so the marker is published after the event (order holds per aggregate only:
      // another aggregate may sit in another lane's slots and overtake it).
      yield* promise(() => insertEvents(t.sql, [{ topic: "orders", event_type: "Marker", aggregate_id: "o-1" }]))
      const entries = yield* promise(() =>
        eventually(() => readStream(t.redis, `${t.prefix}orders`), (es) =>
          es.some((e) => e.fields.event_type === "Marker"))
      )
      assert.deepStrictEqual(
        entries.map((e) =>
          e.fields.event_id
        ).filter((id) => id === eventId),
        [eventId]
      )
    }).pipe(Effect.scoped))

  it.live("drains a backlog present at start, in id order per aggregate", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("backlog", { RELAY_BATCH_SIZE: "250" })
      const total = 3000
      yield* promise(() =>
        t.sql`INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
              SELECT CASE WHEN g % 2 = 0 THEN 'even' ELSE 'odd' END, 'Counted', 'agg-' || (g % 7),
                     jsonb_build_object('seq', g)
              FROM generate_series(1, ${total}) AS g`
      )
      yield* Layer.build(relayLayer(t.env))
      const even = yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}even`, total / 2, 20_000))
      const odd = yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}odd`, total / 2, 20_000))
      assert.strictEqual(even.length + odd.length, total)
      for (const entries of [even, odd]) {
        const seqs = entries.map((e) => (JSON.parse(e.fields.payload!) as { seq: number }).seq)
        assert.strictEqual(new Set(seqs).size, seqs.length, "no duplicates")
        // Lanes publish different aggregates in parallel: the order promised is per aggregate.
        for (let agg = 0; agg < 7; agg++) {
          const ofAggregate = entries.filter((e) => e.fields.aggregate_id === `agg-${agg}`)
            .map((e) => (JSON.parse(e.fields.payload!) as { seq: number }).seq)
          assert.deepStrictEqual(ofAggregate, [...ofAggregate].sort((a, b) => a - b), `agg-${agg} in outbox id order`)
        }
      }
      assert.strictEqual(yield* promise(() => drained(t.sql)), 0)
    }).pipe(Effect.scoped))

  it.live("relays big events in smaller batches, then small ones in full batches, all in order", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("big-events", {})
      const big = 40
      const small = 5000
      // 40 events of 900 kB (36 MB of payload) ahead of 5,000 small ones, on one aggregate.
      yield* promise(() =>
        t.sql`INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
              SELECT 'mixed', 'Sized', 'agg-1',
                     CASE WHEN g <= ${big} THEN jsonb_build_object('seq', g, 'pad', repeat('x', 900000))
                          ELSE jsonb_build_object('seq', g) END
              FROM generate_series(1, ${big + small}) AS g`
      )
      yield* Layer.build(relayLayer(t.env))
      const entries = yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}mixed`, big + small, 60_000))
      const seqs = entries.map((e) => (JSON.parse(e.fields.payload!) as { seq: number }).seq)
      assert.deepStrictEqual(seqs, Array.from({ length: big + small }, (_, i) => i + 1), "each once, in order")
      assert.strictEqual(yield* promise(() => drained(t.sql)), 0)
    }).pipe(Effect.scoped))

  for (
    const [title, settings] of [
      ["", {}],
      [", with RELAY_BUSY_PAUSE", { RELAY_BUSY_PAUSE: "20 millis" }]
    ] as const
  ) {
    it.live(`keeps each aggregate's order while producers commit concurrently${title}`, () =>
      Effect.gen(function*() {
        const t = yield* testEnv("concurrent", { RELAY_BATCH_SIZE: "50", ...settings })
        yield* Layer.build(relayLayer(t.env))
        const producers = 8
        const perProducer = 100
        // Each producer owns one aggregate and commits its events one transaction at a time.
        yield* promise(() =>
          Promise.all(Array.from({ length: producers }, async (_, p) => {
            for (let i = 0; i < perProducer; i++) {
              await insertEvents(t.sql, [{ topic: "orders", aggregate_id: `agg-${p}`, payload: { p, i } }])
            }
          }))
        )
        const entries = yield* promise(() =>
          streamWithAtLeast(t.redis, `${t.prefix}orders`, producers * perProducer, 20_000)
        )
        assert.strictEqual(entries.length, producers * perProducer)
        for (let p = 0; p < producers; p++) {
          const seq = entries.filter((e) => e.fields.aggregate_id === `agg-${p}`)
            .map((e) => (JSON.parse(e.fields.payload!) as { i: number }).i)
          assert.deepStrictEqual(seq, Array.from({ length: perProducer }, (_, i) => i))
        }
        assert.strictEqual(yield* promise(() => drained(t.sql)), 0)
      }).pipe(Effect.scoped))
  }
})
