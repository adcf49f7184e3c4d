/**
 * Claim lanes in one process: at rest one lane holds every slot (a trickle costs one claim per
 * wake-up); a backlog brings the helper lane in, the lanes share the slots and drain it (every event
 * once, each aggregate in order); afterwards the helper gives its slots back and what comes next is
 * relayed at once. The poll is a minute, so a slot left without an owner would show as a timeout.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer } from "effect"
import type postgres from "postgres"
import { drained, insertEvents, relayLayer, streamWithAtLeast, testEnv } from "./support/relayHarness.js"
import { eventually } from "./support/wait.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

interface LaneView {
  /** Lanes registered in outbox_relay_wake (counted as live when slots are shared). */
  readonly registered: number
  /** Slot leases (two-key advisory locks in this database) per backend. */
  readonly slotsPerSession: ReadonlyArray<number>
}

const laneView = async (sql: postgres.Sql): Promise<LaneView> => {
  const [{ n }] = await sql<[{ n: number }]>`SELECT count(*)::int AS n FROM outbox_relay_wake`
  const rows = await sql<Array<{ slots: number }>>`
    SELECT count(*)::int AS slots FROM pg_locks
    WHERE locktype = 'advisory' AND objsubid = 2 AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    GROUP BY pid ORDER BY 1 DESC`
  return { registered: n, slotsPerSession: rows.map((r) => r.slots) }
}

const atRest = (view: LaneView) =>
  view.registered === 1 && view.slotsPerSession.length === 1 && view.slotsPerSession[0] === 64

describe("claim lanes", () => {
  it.live(
    "one lane at rest; the helper joins for a backlog and gives its slots back after",
    () =>
      Effect.gen(function*() {
        const t = yield* testEnv("lanes", {
          RELAY_CONCURRENCY: "2",
          RELAY_BATCH_SIZE: "50",
          RELAY_POLL_INTERVAL: "1 minute"
        })
        yield* Layer.build(relayLayer(t.env))
        const stream = `${t.prefix}orders`

        // At rest: one registered lane, holding all 64 slots.
        yield* promise(() => eventually(() => laneView(t.sql), atRest, 5_000, 20))

        // A backlog: 40 aggregates x 150 events, committed at once.
        const aggregates = 40
        const perAggregate = 150
        const backlog = Array.from({ length: aggregates * perAggregate }, (_, k) => ({
          topic: "orders",
          aggregate_id: `agg-${k % aggregates}`,
          payload: { i: Math.floor(k / aggregates) }
        }))
        let sharing = false
        let watching = true
        const watch = promise(async () => {
          while (watching && !sharing) {
            const view = await laneView(t.sql)
            if (
              view.registered === 2 && view.slotsPerSession.length === 2 && view.slotsPerSession.every((s) => s > 0)
            ) {
              sharing = true
            }
            await new Promise((r) => setTimeout(r, 5))
          }
        })
        const watcher = yield* Effect.forkChild(watch)
        yield* promise(() => insertEvents(t.sql, backlog))
        const entries = yield* promise(() => streamWithAtLeast(t.redis, stream, backlog.length, 60_000))
        // The helper stays in for at least a second: the watcher has time to see it.
        yield* promise(() => eventually(async () => sharing, (s) => s, 3_000, 10))
        watching = false
        yield* Fiber.join(watcher)
        assert.isTrue(sharing, "the helper lane joined and the lanes shared the slots")

        assert.strictEqual(entries.length, backlog.length)
        assert.strictEqual(new Set(entries.map((e) => e.fields.event_id)).size, backlog.length, "each event once")
        for (let a = 0; a < aggregates; a++) {
          const seq = entries.filter((e) => e.fields.aggregate_id === `agg-${a}`)
            .map((e) => (JSON.parse(e.fields.payload!) as { i: number }).i)
          assert.deepStrictEqual(seq, Array.from({ length: perAggregate }, (_, i) => i), `agg-${a} in order`)
        }

        // Afterwards: back to one lane with every slot, and new events (all over the slots) go out at once.
        yield* promise(() => eventually(() => laneView(t.sql), atRest, 5_000, 20))
        const started = Date.now()
        yield* promise(() =>
          insertEvents(t.sql, Array.from({ length: 200 }, (_, k) => ({ topic: "orders", aggregate_id: `late-${k}` })))
        )
        yield* promise(() => streamWithAtLeast(t.redis, stream, backlog.length + 200, 10_000))
        assert.isBelow(Date.now() - started, 3_000, "relayed on the wake-up, not the one-minute poll")
        assert.strictEqual(yield* promise(() => drained(t.sql)), 0)
      }).pipe(Effect.scoped),
    // 6,000 inserts and a drain: well under ten seconds alone, several times that on a loaded machine.
    90_000
  )
})
