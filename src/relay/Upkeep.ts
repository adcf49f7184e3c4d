/**
 * The relay's periodic chores, beside the lanes: the backlog gauges (every `RELAY_METRICS_INTERVAL`, or less often
 * while counting a big backlog takes long; Redis memory is read by `Backpressure`), and every 10 seconds the purge of
 * retained published rows (`RELAY_RETENTION`) and a vacuum of the outbox table when claims and purges left many dead
 * tuples (`RELAY_VACUUM_THRESHOLD`), so claims stay fast between autovacuum runs (docs/design.md, Table health), and
 * with `RELAY_STREAM_TRIM=acked` the trim of what every consumer group acknowledged (`StreamTrim`).
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import { LeaseBoard } from "./2-SlotLeases.js"
import { Database } from "./Database.js"
import * as Metrics from "./Metrics.js"
import { RelayConfig } from "./RelayConfig.js"
import { makeAckedTrim } from "./StreamTrim.js"

/** How often retained rows are purged, the table is checked for vacuum and acknowledged entries are trimmed. */
const tableUpkeepEvery = Schedule.spaced("10 seconds")

/** Reads the backlog, oldest pending age, max attempts, dead letters and owned slots into their gauges. */
const refreshOutboxGauges = Effect.gen(function*() {
  const database = yield* Database
  const leases = yield* LeaseBoard
  const lanes = yield* leases.all
  yield* Metric.update(Metrics.slotsOwned, [...lanes.values()].reduce((n, lease) => n + lease.owned.length, 0))
  const stats = yield* database.stats
  yield* Metric.update(Metrics.backlog, stats.pending)
  yield* Metric.update(Metrics.pendingMaxAttempts, stats.pendingMaxAttempts)
  yield* Metric.update(Metrics.oldestPendingSeconds, stats.oldestPendingSeconds)
  yield* Metric.update(Metrics.deadLetters, stats.dead)
}).pipe(Effect.ignore)

/**
 * Counting pending rows reads every one of them: with a backlog of millions that is a good part of a
 * second of Postgres's time, which a drain needs. The gauges wait at least this many times as long as
 * their last reading took, so they never cost more than about 2% of one core.
 */
const gaugeCostFactor = 50

/** Refreshes the gauges every `interval`, or less often while a reading takes long. */
const refreshGaugesForever = (interval: Duration.Duration) =>
  Effect.gen(function*() {
    while (true) {
      const started = yield* Clock.currentTimeMillis
      yield* refreshOutboxGauges
      const took = (yield* Clock.currentTimeMillis) - started
      yield* Effect.sleep(Duration.max(interval, Duration.millis(took * gaugeCostFactor)))
    }
  })

/** Purges retained rows, then vacuums when needed; stops trying to vacuum once refused. */
const makeTableUpkeep = Effect.gen(function*() {
  const database = yield* Database
  let vacuumAllowed = true
  return Effect.gen(function*() {
    const purged = yield* Effect.orElseSucceed(database.purgePublished, () => 0)
    if (purged > 0) yield* Effect.logDebug("purged published rows", purged)
    if (!vacuumAllowed) return
    const outcome = yield* database.vacuumIfNeeded.pipe(
      Effect.catch((error) =>
        Effect.as(
          Effect.logDebug("vacuum failed; will try again").pipe(Effect.annotateLogs({ reason: error.message })),
          "failed"
        )
      )
    )
    if (outcome === "vacuumed") yield* Effect.logDebug("vacuumed the outbox table")
    if (outcome === "not-allowed") {
      vacuumAllowed = false
      yield* Effect.logWarning(
        "cannot vacuum the outbox table (only its owner, the database owner or a superuser can); " +
          "leaving it to autovacuum"
      )
    }
  })
})

/** Runs the chores for as long as the layer lives. */
export const Upkeep: Layer.Layer<
  never,
  never,
  RelayConfig | Database | LeaseBoard
> = Layer.effectDiscard(
  Effect.gen(function*() {
    const config = yield* RelayConfig
    yield* Effect.forkScoped(refreshGaugesForever(config.metricsInterval))
    const tableUpkeep = yield* makeTableUpkeep
    yield* Effect.forkScoped(Effect.repeat(tableUpkeep, tableUpkeepEvery))
    if (config.streamTrim === "acked") {
      yield* Effect.forkScoped(Effect.repeat(yield* makeAckedTrim, tableUpkeepEvery))
    }
  })
)
