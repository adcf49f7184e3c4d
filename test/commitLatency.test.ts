/**
 * `outbox_relay_commit_latency_seconds` on `/metrics`, against real Postgres and Redis: it measures
 * from (an estimate of) the producer's COMMIT, not from `created_at` (the transaction's start). A
 * producer that keeps its transaction open for 300 ms shows up in the latency from `created_at` and
 * not in this one; a burst of commits from several connections is counted event for event.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Metric } from "effect"
import postgres from "postgres"
import { freePort } from "./support/ports.js"
import { daemonLayer, drained, streamWithAtLeast, testEnv } from "./support/relayHarness.js"
import { eventually, sleep } from "./support/wait.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

/** A histogram read from Prometheus text: its count and the cumulative count of each bucket. */
const histogram = (text: string, name: string) => {
  const buckets: Array<readonly [number, number]> = []
  for (const [, le, count] of text.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`, "gm"))) {
    buckets.push([le === "+Inf" ? Infinity : Number(le), Number(count)])
  }
  const count = Number(new RegExp(`^${name}_count (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN)
  /** Observations at or below the largest bucket boundary that is at most `seconds`. */
  const atMost = (seconds: number) => buckets.filter(([le]) => le <= seconds).at(-1)?.[1] ?? 0
  return { count, atMost }
}

/** What a histogram observed between two readings of `/metrics`. */
const observedBetween = (before: string, after: string, name: string) => {
  const [a, b] = [histogram(before, name), histogram(after, name)]
  return { count: b.count - a.count, atMost: (seconds: number) => b.atMost(seconds) - a.atMost(seconds) }
}

const counter = (text: string, name: string) =>
  Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN)

/**
 * The relay daemon on a port of its own, listening for notifications, with one event relayed: its lane
 * has claimed before, so the next claim has a previous one to be bounded by. Returns `/metrics` then.
 */
const startRelay = (settings: Record<string, string>) =>
  Effect.gen(function*() {
    const port = yield* promise(freePort)
    const t = yield* testEnv("commit-latency", { RELAY_HTTP_PORT: String(port), ...settings })
    yield* Layer.build(daemonLayer(t.env))
    const base = `http://127.0.0.1:${port}`
    // Until LISTEN is in place the estimate knows no notification times.
    yield* promise(() =>
      eventually(
        () => fetch(`${base}/readyz`).then((r) => r.json() as Promise<{ listen?: { ok: boolean } }>, () => undefined),
        (body) => body?.listen?.ok === true
      )
    )
    yield* promise(() => t.sql`INSERT INTO outbox_events (topic, event_type, payload) VALUES ('warmup', 'Warm', '{}')`)
    yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}warmup`, 1))
    const metrics = () => fetch(`${base}/metrics`).then((r) => r.text())
    const before = yield* promise(() =>
      eventually(metrics, (text) => counter(text, "outbox_events_relayed_total") === 1)
    )
    return { t, metrics, before }
  })

describe("latency from the producer's commit", () => {
  it.live("leaves out the time a producer's transaction stayed open before its COMMIT", () =>
    Effect.gen(function*() {
      const { before, metrics, t } = yield* startRelay({})
      const events = 5
      for (let i = 1; i <= events; i++) {
        // INSERT, 300 ms of the producer's own work, COMMIT; the relay is idle in between.
        yield* promise(() =>
          t.sql.begin(async (tx) => {
            await tx`INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
                     VALUES ('orders', 'Slow', ${`agg-${i}`}, '{}')`
            await tx`SELECT pg_sleep(0.3)`
          })
        )
        yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}orders`, i))
        yield* promise(() => sleep(300))
      }
      const after = yield* promise(metrics)
      const fromCreated = observedBetween(before, after, "outbox_relay_latency_seconds")
      const fromCommit = observedBetween(before, after, "outbox_relay_commit_latency_seconds")
      assert.strictEqual(fromCreated.count, events)
      assert.strictEqual(fromCreated.atMost(0.3), 0, "from created_at, every event waited the producer's 300 ms")
      assert.strictEqual(fromCommit.count, events)
      assert.strictEqual(fromCommit.atMost(0.1), events, "from the commit, every event took under 0.1 s")
    }).pipe(Effect.scoped, Effect.provideService(Metric.MetricRegistry, new Map())))

  it.live("counts every event of a burst of commits from several connections", () =>
    Effect.gen(function*() {
      // Batches never fill, so every claim bounds the commits of the next one's rows.
      const { before, metrics, t } = yield* startRelay({ RELAY_BATCH_SIZE: "5000" })
      const connections = 8
      const perConnection = 400
      const events = connections * perConnection
      const producers = yield* Effect.acquireRelease(
        Effect.sync(() => postgres(t.databaseUrl, { max: connections, onnotice: () => {}, fetch_types: false })),
        (sql) => promise(() => sql.end({ timeout: 1 }))
      )
      // Single-row commits whose transactions "started" 2 s earlier: created_at says so.
      yield* promise(() =>
        Promise.all(Array.from({ length: connections }, async (_, c) => {
          for (let i = 0; i < perConnection; i++) {
            await producers`INSERT INTO outbox_events (topic, event_type, aggregate_id, payload, created_at)
                            VALUES ('orders', 'Burst', ${`agg-${c}-${i % 10}`}, '{}', now() - interval '2 seconds')`
          }
        }))
      )
      yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}orders`, events, 30_000))
      yield* promise(() => drained(t.sql))
      const after = yield* promise(() =>
        eventually(metrics, (body) => counter(body, "outbox_events_relayed_total") >= events + 1)
      )
      const relayed = counter(after, "outbox_events_relayed_total") - counter(before, "outbox_events_relayed_total")
      const fromCreated = observedBetween(before, after, "outbox_relay_latency_seconds")
      const fromCommit = observedBetween(before, after, "outbox_relay_commit_latency_seconds")
      assert.strictEqual(relayed, events)
      assert.strictEqual(fromCommit.count, relayed)
      assert.strictEqual(fromCreated.count, relayed)
      assert.strictEqual(fromCreated.atMost(2), 0)
      assert.strictEqual(fromCommit.atMost(1), relayed, "from the commit, every event took under a second")
    }).pipe(Effect.scoped, Effect.provideService(Metric.MetricRegistry, new Map())))
})
