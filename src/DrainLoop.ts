/**
 * The daemon's loop: drains at start, then after every wake-up (notification, reconnect), new slot
 * leases, or `RELAY_POLL_INTERVAL`, until its scope closes.
 *
 * While it keeps finding rows it marks itself awake so producers skip NOTIFY, and before it sleeps it
 * hands over (see `WakeState` and sql/0003_relay_wake.sql) so no committed row waits for the poll.
 * It rebalances slot leases between batches (never while a batch is in flight), keeps the backlog
 * gauges fresh and purges retained rows.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import { Claimer, LeaseBoard } from "./Claimer.js"
import { Database } from "./Database.js"
import * as Metrics from "./Metrics.js"
import { Notifications } from "./Notifications.js"
import { Relay } from "./Relay.js"
import { RelayConfig } from "./RelayConfig.js"
import { WakeState } from "./WakeState.js"

/** One lane's services: its claim connection and slots, its wake flag, its batch logic. */
const LaneServices = Relay.layer.pipe(Layer.provideMerge(Layer.mergeAll(Claimer.layer, WakeState.layer)))

/** One lane: drain, then idle until woken, for ever. */
const laneLoop = (lane: number) =>
  Effect.gen(function*() {
    const config = yield* RelayConfig
    const relay = yield* Relay
    const claimer = yield* Claimer
    const wake = yield* WakeState
    const notifications = yield* Notifications
    const wakeups = yield* notifications.subscribe

    /** The flag is a hint to producers: failing to set it only costs notifications. */
    const markAwake = wake.markAwake.pipe(
      Effect.catch((error) => Effect.logDebug("could not mark the relay awake", error.message))
    )

    /**
     * Clears the flag and waits (claiming meanwhile, never blocking producers) until every producer
     * that saw it set has finished. Returns true when it found rows on the way (stay awake).
     */
    const handOver = Effect.gen(function*() {
      let cleared = yield* Effect.orElseSucceed(Effect.as(wake.markAsleep, true), () => false)
      let delayMs = 0.2
      while (true) {
        if (cleared) {
          const done = yield* Effect.orElseSucceed(wake.handoverDone, () => false)
          if (done) return false
        } else {
          // The flag could not be cleared: it lapses with its lease, then producers notify again.
          const now = yield* Clock.currentTimeMillis
          if (now > (yield* wake.flagExpiresAt)) return false
          cleared = yield* Effect.orElseSucceed(Effect.as(wake.markAsleep, true), () => false)
        }
        yield* Effect.sleep(Duration.micros(BigInt(Math.round(delayMs * 1000))))
        delayMs = Math.min(delayMs * 2, 5)
        if ((yield* relay.relayNext).claimed > 0) return true
      }
    })

    const busyPauseMs = Duration.toMillis(config.busyPause)
    // Slot leases are checked at most this often (and on every wake-up after that).
    const leaseCheckMs = Math.min(1000, Duration.toMillis(config.leaseTimeout) / 5)
    let lastRebalance = -Infinity
    /** Rebalances slot leases when due; true when this relay gained slots (drain them). */
    const maybeRebalance = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      if (now - lastRebalance < leaseCheckMs) return false
      lastRebalance = now
      const before = (yield* claimer.lease).owned
      return yield* claimer.rebalance.pipe(
          Effect.tap((lease) =>
          lease.owned.length === before.length ? Effect.void : Effect.logInfo("slot leases changed").pipe(
            Effect.annotateLogs({ owned: lease.owned.length, liveRelays: lease.liveRelays, target: lease.target })
          )
        ),
        Effect.map((lease) => lease.owned.some((slot) => !before.includes(slot))),
        Effect.catch((error) => Effect.as(Effect.logWarning("slot rebalance failed").pipe(Effect.annotateLogs({ reason: error.message })), false))
      )
    })

    /** Claims until a claim comes back empty and no producer relies on this relay being awake. */
    const drainCycle = Effect.gen(function*() {
      let busyClaims = 0
      while (true) {
        yield* maybeRebalance
        const result = yield* relay.relayNext
        if (result.claimed > 0) {
          // Two claims with rows in a row: producers are busy, so spare them their NOTIFYs.
          if (++busyClaims >= 2) {
            yield* markAwake
            // Producers keep us busy but the batch was not full: optionally let the next one grow.
            if (busyPauseMs > 0 && result.claimed < config.batchSize) yield* Effect.sleep(config.busyPause)
          }
          continue
        }
        if (!(yield* wake.isAwake)) return
        const stillBusy = yield* handOver
        if (!stillBusy) {
          // The last claim, after every producer that skipped its NOTIFY has committed.
          if ((yield* relay.relayNext).claimed === 0) return
        }
        busyClaims = 2
        yield* markAwake
      }
    })

    /** Sleeps until a notification, new slots, or the slow poll. */
    const tickMs = Math.min(Duration.toMillis(config.pollInterval), leaseCheckMs)
    const idle = Effect.gen(function*() {
      const since = yield* Clock.currentTimeMillis
      while (true) {
        const woken = yield* Effect.raceFirst(
          Effect.as(Queue.take(wakeups), true),
          Effect.as(Effect.sleep(Duration.millis(tickMs)), false)
        )
        if (woken) return
        if (yield* maybeRebalance) return
        if ((yield* Clock.currentTimeMillis) - since >= Duration.toMillis(config.pollInterval)) return
      }
    })

    // Nothing stays open while the lane sleeps: the last batch's COMMIT and its markers go out first.
    return yield* Effect.forever(Effect.andThen(Effect.andThen(drainCycle, relay.settle), idle))
  }).pipe(
    Effect.onInterrupt(() => Effect.logDebug("lane stopped: no batch in flight", lane)),
    Effect.scoped,
    Effect.provide(Layer.fresh(LaneServices))
  )

/**
 * The daemon: `RELAY_CONCURRENCY` lanes, each with its own connection and slots, plus the backlog
 * gauges and the purge of retained rows.
 */
export const DrainLoop = Layer.effectDiscard(
  Effect.gen(function*() {
    const config = yield* RelayConfig
    const database = yield* Database
    const scope = yield* Scope.Scope
    yield* Effect.logInfo("relay started").pipe(Effect.annotateLogs({
      schema: config.schema,
      streamPrefix: config.streamPrefix,
      batchSize: config.batchSize,
      lanes: config.concurrency,
      pollInterval: Duration.format(config.pollInterval)
    }))
    for (let lane = 0; lane < config.concurrency; lane++) {
      yield* Effect.forkIn(laneLoop(lane), scope)
    }
    const leases = yield* LeaseBoard
    const refreshStats = Effect.andThen(
      Effect.flatMap(leases.all, (lanes) =>
        Metric.update(Metrics.slotsOwned, [...lanes.values()].reduce((n, lease) => n + lease.owned.length, 0))),
      database.stats
    ).pipe(
      Effect.flatMap((stats) =>
        Effect.all([
          Metric.update(Metrics.backlog, stats.pending),
          Metric.update(Metrics.oldestPendingSeconds, stats.oldestPendingSeconds),
          Metric.update(Metrics.deadLetters, stats.dead)
        ], { discard: true })
      ),
      Effect.ignore
    )
    yield* Effect.forkIn(Effect.repeat(refreshStats, Schedule.spaced(config.metricsInterval)), scope)
    // Table upkeep every 10 s: retained published rows (RELAY_RETENTION) are purged in small batches,
    // then the dead tuples left by claims and purges are vacuumed when there are many.
    let vacuumAllowed = true
    const upkeep = Effect.gen(function*() {
      const purged = yield* Effect.orElseSucceed(database.purgePublished, () => 0)
      if (purged > 0) yield* Effect.logDebug("purged published rows", purged)
      if (!vacuumAllowed) return
      const outcome = yield* database.vacuumIfNeeded.pipe(
        Effect.catch((error) =>
          Effect.as(Effect.logDebug("vacuum failed; will try again").pipe(Effect.annotateLogs({ reason: error.message })), "failed")
        )
      )
      if (outcome === "vacuumed") yield* Effect.logDebug("vacuumed the outbox table")
      if (outcome === "not-allowed") {
        vacuumAllowed = false
        yield* Effect.logWarning(
          "cannot vacuum the outbox table (only its owner, the database owner or a superuser can); leaving it to autovacuum"
        )
      }
    })
    yield* Effect.forkIn(Effect.repeat(upkeep, Schedule.spaced("10 seconds")), scope)
  })
)
