/**
 * The daemon's loop: drains at start, then after every wake-up (notification, reconnect), new slot
 * leases, or `RELAY_POLL_INTERVAL`, until its scope closes.
 *
 * While it keeps finding rows it marks itself awake so producers skip NOTIFY, and before it sleeps it
 * hands over (see `WakeState` and sql/0003_relay_wake.sql) so no committed row waits for the poll.
 * It rebalances slot leases between batches (never while a batch is in flight), keeps the backlog
 * gauges fresh and purges retained rows.
 *
 * Lanes: the first lane always relays; the others (`RELAY_CONCURRENCY` - 1 helpers) stay dormant,
 * holding no slots and not counted as live, until the first lane claims a full batch (a backlog).
 * Then one helper registers, the lanes share the slots again, and it drains its share; it leaves
 * (gives its slots back at once) when its slots are empty and it has been in for a second. So a
 * backlog drains with every lane, and a steady trickle is relayed by one lane: one claim per
 * wake-up instead of one per lane (`npm run bench` latency: one lane had the lower latency at
 * 1,000 events/s).
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import { Claimer, LeaseBoard } from "./3-ClaimSession.js"
import { Database } from "./Database.js"
import * as Metrics from "./Metrics.js"
import { Notifications } from "./1-Wakeups.js"
import { Relay } from "./5-Batch.js"
import { RelayConfig } from "./RelayConfig.js"
import { WakeState } from "./7-WakeRegistry.js"

/** One lane's services: its claim connection and slots, its wake flag, its batch logic. */
const LaneServices = Relay.layer.pipe(Layer.provideMerge(Layer.mergeAll(Claimer.layer, WakeState.layer)))

/**
 * What the lanes of one process share: the first lane's backlog signal that wakes a dormant helper,
 * and requests to rebalance now (a lane joined or left, so the others should take or give slots at
 * their next batch boundary instead of at their next lease check).
 */
interface Lanes {
  readonly count: number
  /** Offered by the first lane when it claims a full batch; a dormant helper takes it and joins. */
  readonly backlog: Queue.Queue<void>
  /** Per lane: rebalance at the next chance. */
  readonly forced: Array<boolean>
  /** Per lane: wakes it from idle to rebalance. */
  readonly nudges: ReadonlyArray<Queue.Queue<void>>
  /** Completed after the first lane's next forced rebalance (a joining helper waits for it). */
  primaryRebalanced: Array<Deferred.Deferred<void>>
}

const makeLanes = (count: number) =>
  Effect.gen(function*() {
    const nudges: Array<Queue.Queue<void>> = []
    for (let i = 0; i < count; i++) nudges.push(yield* Queue.sliding<void>(1))
    return {
      count,
      backlog: yield* Queue.sliding<void>(1),
      forced: Array.from({ length: count }, () => false),
      nudges,
      primaryRebalanced: []
    } satisfies Lanes
  })

/** Asks every lane but `from` to rebalance at its next chance. */
const requestRebalance = (lanes: Lanes, from: number) =>
  Effect.sync(() => {
    for (let i = 0; i < lanes.count; i++) {
      if (i === from) continue
      lanes.forced[i] = true
      Queue.offerUnsafe(lanes.nudges[i]!, undefined)
    }
  })

/** How long a helper stays in at least, so a backlog that comes in waves does not churn the leases. */
const helperMinimumMs = 1000

/** One lane: lane 0 relays for ever; a helper lane joins while there is a backlog (see above). */
const laneLoop = (lane: number, lanes: Lanes) =>
  Effect.gen(function*() {
    const config = yield* RelayConfig
    const relay = yield* Relay
    const claimer = yield* Claimer
    const wake = yield* WakeState
    const notifications = yield* Notifications
    const wakeups = yield* notifications.subscribe
    const nudge = lanes.nudges[lane]!

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
        // The flag is down, so producers notify again: a notification ends the wait at once.
        yield* Effect.raceFirst(
          Effect.sleep(Duration.micros(BigInt(Math.round(delayMs * 1000)))),
          Queue.take(wakeups)
        )
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
      const forced = lanes.forced[lane]!
      if (!forced && now - lastRebalance < leaseCheckMs) return false
      lanes.forced[lane] = false
      lastRebalance = now
      const before = (yield* claimer.lease).owned
      return yield* claimer.rebalance.pipe(
          Effect.tap((lease) =>
          lease.owned.length === before.length ? Effect.void : Effect.logInfo("slot leases changed").pipe(
            Effect.annotateLogs({ owned: lease.owned.length, liveRelays: lease.liveRelays, target: lease.target })
          )
        ),
        Effect.map((lease) => lease.owned.some((slot) => !before.includes(slot))),
        Effect.catch((error) => Effect.as(Effect.logWarning("slot rebalance failed").pipe(Effect.annotateLogs({ reason: error.message })), false)),
        Effect.ensuring(
          lane === 0 && forced
            ? Effect.sync(() => {
              const waiting = lanes.primaryRebalanced
              lanes.primaryRebalanced = []
              for (const done of waiting) Deferred.doneUnsafe(done, Effect.void)
            })
            : Effect.void
        )
      )
    })

    /** Claims until a claim comes back empty and no producer relies on this relay being awake. */
    const drainCycle = Effect.gen(function*() {
      let busyClaims = 0
      while (true) {
        yield* maybeRebalance
        const result = yield* relay.relayNext
        // A full batch: there is a backlog, so a dormant helper may join.
        if (lane === 0 && lanes.count > 1 && result.claimed >= config.batchSize) Queue.offerUnsafe(lanes.backlog, undefined)
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

    /**
     * Sleeps until a notification, new slots, the slow poll, or `untilMs` (local clock) passes.
     * A nudge from another lane (one joined or left) rebalances at once.
     */
    const tickMs = Math.min(Duration.toMillis(config.pollInterval), leaseCheckMs)
    const idle = (untilMs = Infinity) =>
      Effect.gen(function*() {
        const since = yield* Clock.currentTimeMillis
        while (true) {
          const now = yield* Clock.currentTimeMillis
          if (now >= untilMs) return
          const woken = yield* Effect.raceAll([
            Effect.as(Queue.take(wakeups), "woken" as const),
            Effect.as(Queue.take(nudge), "nudged" as const),
            Effect.as(Effect.sleep(Duration.millis(Math.max(1, Math.min(tickMs, untilMs - now)))), "tick" as const)
          ])
          if (woken === "woken") return
          if (yield* maybeRebalance) return
          if ((yield* Clock.currentTimeMillis) - since >= Duration.toMillis(config.pollInterval)) return
        }
      })

    // Nothing stays open while the lane sleeps: the last batch's COMMIT and its markers go out first.
    const drainThenSettle = Effect.andThen(drainCycle, relay.settle)

    if (lane === 0) {
      yield* wake.register.pipe(
        Effect.catch((error) =>
          Effect.logWarning("could not register the relay; its heartbeat will").pipe(
            Effect.annotateLogs({ reason: error.message })
          )
        )
      )
      return yield* Effect.forever(Effect.andThen(drainThenSettle, idle()))
    }

    /** A helper: dormant until a backlog, then in until its slots are empty (and a second passed). */
    const helpOnce = Effect.gen(function*() {
      yield* Queue.take(lanes.backlog)
      const registered = yield* Effect.as(wake.register, true).pipe(
        Effect.catch((error) =>
          Effect.as(Effect.logDebug("helper lane could not register", error.message), false)
        )
      )
      if (!registered) {
        // Stay dormant: no heartbeat may bring the row back.
        yield* wake.unregister.pipe(Effect.ignore)
        return
      }
      yield* Effect.logDebug("helper lane joined", lane)
      // The first lane gives up its share first (at its next batch boundary), then this one leases.
      const rebalanced = yield* Deferred.make<void>()
      lanes.primaryRebalanced.push(rebalanced)
      yield* requestRebalance(lanes, lane)
      yield* Deferred.await(rebalanced).pipe(Effect.timeoutOption("1 second"))
      lanes.forced[lane] = true
      const joinedAt = yield* Clock.currentTimeMillis
      while (true) {
        yield* drainThenSettle
        const now = yield* Clock.currentTimeMillis
        if (now - joinedAt >= helperMinimumMs) break
        yield* idle(joinedAt + helperMinimumMs)
      }
      // Leave: slots back at once and no longer counted, then the other lanes take the slots.
      yield* claimer.releaseAll.pipe(Effect.ignore)
      yield* wake.unregister.pipe(Effect.ignore)
      yield* Queue.clear(lanes.backlog)
      yield* requestRebalance(lanes, lane)
      yield* Effect.logDebug("helper lane left", lane)
    })
    return yield* Effect.forever(helpOnce)
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
    const lanes = yield* makeLanes(config.concurrency)
    for (let lane = 0; lane < config.concurrency; lane++) {
      yield* Effect.forkIn(laneLoop(lane, lanes), scope)
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
