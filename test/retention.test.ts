/**
 * RELAY_RETENTION: published rows are kept (marked) for the window, so a producer re-inserting an
 * event_id after it was published still gets one stream entry; older rows are purged.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { Database } from "../src/relay/Database.js"
import { RelayConfig } from "../src/relay/RelayConfig.js"
import { drained, insertEvents, readStream, relayLayer, streamWithAtLeast, testEnv } from "./support/relayHarness.js"
import { eventually } from "./support/wait.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

describe("retention", () => {
  it.live("dedupes an event_id re-inserted after publishing, for the retention window", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("retention", { RELAY_RETENTION: "1 hour", RELAY_MAX_PAYLOAD_BYTES: "100" })
      yield* Layer.build(relayLayer(t.env))
      const id = "3e5a2c1b-7d4f-4a8e-9b6c-1f2e3d4c5b6a"
      const produce = () =>
        t.sql`INSERT INTO outbox_events (event_id, topic, event_type, aggregate_id, payload)
              VALUES (${id}, 'orders', 'OrderPlaced', 'o-1', '{}') ON CONFLICT (event_id) DO NOTHING`
      yield* promise(produce)
      yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}orders`, 1))
      // The producer retries after the relay published: same key, nothing new.
      yield* promise(produce)
      yield* promise(() =>
        insertEvents(t.sql, [
          { topic: "orders", event_type: "Marker" },
          { topic: "orders", event_type: "TooBig", payload: { blob: "x".repeat(200) } }
        ])
      )
      const entries = yield* promise(() =>
        eventually(() => readStream(t.redis, `${t.prefix}orders`), (es) =>
          es.some((e) => e.fields.event_type === "Marker"))
      )
      assert.deepStrictEqual(
        entries.map((e) =>
          e.fields.event_type
        ),
        ["OrderPlaced", "Marker"]
      )
      const rows = yield* promise(() =>
        eventually(
          () =>
            t.sql<Array<{ event_type: string; published: boolean; dead: boolean }>>`
            SELECT event_type, published_at IS NOT NULL AS published, dead_at IS NOT NULL AS dead
            FROM outbox_events ORDER BY id`,
          (rs) => rs.some((r) => r.dead)
        )
      )
      assert.deepStrictEqual(rows, [
        { event_type: "OrderPlaced", published: true, dead: false },
        { event_type: "Marker", published: true, dead: false },
        { event_type: "TooBig", published: false, dead: true }
      ])
      assert.strictEqual(yield* promise(() => drained(t.sql)), 0)
    }).pipe(Effect.scoped))

  it.live("purges published rows older than the retention, never pending or dead ones", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("purge", { RELAY_RETENTION: "200 millis" })
      const context = yield* Layer.build(relayLayer(t.env))
      const database = Context.get(context, Database)
      yield* promise(() => insertEvents(t.sql, Array.from({ length: 20 }, () => ({ topic: "orders" }))))
      yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}orders`, 20))
      yield* promise(() =>
        t.sql`INSERT INTO outbox_events (topic, event_type, aggregate_id, payload, dead_at)
                                 VALUES ('orders', 'Dead', 'x', '{}', now())`
      )
      yield* Effect.sleep("300 millis")
      const purged = yield* database.purgePublished
      assert.strictEqual(purged, 20)
      const [left] = yield* promise(() => t.sql`SELECT count(*)::int AS n FROM outbox_events`)
      assert.strictEqual(left!.n, 1, "the dead row stays")
    }).pipe(Effect.scoped))
})

describe("table upkeep", () => {
  it.live("vacuums the outbox table once the rows the relay deleted pass RELAY_VACUUM_THRESHOLD", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("vacuum", { RELAY_VACUUM_THRESHOLD: "300" })
      // Only the relay may vacuum it in this test.
      yield* promise(() => t.sql`ALTER TABLE outbox_events SET (autovacuum_enabled = off)`)
      const context = yield* Layer.build(relayLayer(t.env))
      const database = Context.get(context, Database)
      const stats = () =>
        t.sql<[{ dead: number; vacuums: number }]>`
          SELECT n_dead_tup::int AS dead, vacuum_count::int AS vacuums
          FROM pg_stat_user_tables WHERE relid = 'outbox_events'::regclass`.then((rows) => rows[0])

      yield* promise(() => insertEvents(t.sql, Array.from({ length: 200 }, () => ({ topic: "orders" }))))
      yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}orders`, 200))
      assert.strictEqual(
        yield* database.vacuumIfNeeded,
        "not-needed",
        "200 dead tuples: under the threshold, no vacuum"
      )

      yield* promise(() => insertEvents(t.sql, Array.from({ length: 300 }, () => ({ topic: "orders" }))))
      yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}orders`, 500))
      // Statistics reach the view within about a second.
      yield* promise(() => eventually(stats, (s) => s.dead > 300))
      assert.strictEqual(yield* database.vacuumIfNeeded, "vacuumed")
      const after = yield* promise(() => eventually(stats, (s) => s.vacuums > 0))
      assert.isBelow(after.dead, 300)
      assert.strictEqual(yield* promise(() => drained(t.sql)), 0)
    }).pipe(Effect.scoped))

  it.live("leaves the table to autovacuum when its role may not vacuum it", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("vacuum-denied")
      const role = `outbox_relay_${Math.random().toString(36).slice(2, 10)}`
      yield* Effect.acquireRelease(
        Effect.promise(() =>
          t.sql.unsafe(`CREATE ROLE ${role} LOGIN PASSWORD 'relay';
                        GRANT USAGE ON SCHEMA public TO ${role};
                        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role}`)
        ),
        () => Effect.promise(() => t.sql.unsafe(`DROP OWNED BY ${role}; DROP ROLE ${role}`).catch(() => {}))
      )
      const url = new URL(t.env.RELAY_DATABASE_URL!)
      url.username = role
      url.password = "relay"
      const context = yield* Layer.build(
        Database.layer.pipe(
          Layer.provide(RelayConfig.layerFrom({ ...t.env, RELAY_DATABASE_URL: url.href, RELAY_VACUUM_THRESHOLD: "50" }))
        )
      )
      const database = Context.get(context, Database)
      yield* promise(() => t.sql`ALTER TABLE outbox_events SET (autovacuum_enabled = off)`)
      yield* promise(() => insertEvents(t.sql, Array.from({ length: 100 }, () => ({ topic: "orders" }))))
      yield* promise(() => t.sql`DELETE FROM outbox_events`)
      yield* promise(() =>
        eventually(
          () =>
            t.sql<
              [{ dead: number }]
            >`SELECT n_dead_tup::int AS dead FROM pg_stat_user_tables WHERE relid = 'outbox_events'::regclass`,
          ([s]) => s.dead >= 100
        )
      )
      assert.strictEqual(yield* database.vacuumIfNeeded, "not-allowed")
      const [{ vacuums }] = yield* promise(() =>
        t.sql<
          [{ vacuums: number }]
        >`SELECT vacuum_count::int AS vacuums FROM pg_stat_user_tables WHERE relid = 'outbox_events'::regclass`
      )
      assert.strictEqual(vacuums, 0)
    }).pipe(Effect.scoped))
})
