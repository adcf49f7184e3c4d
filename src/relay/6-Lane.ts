/**
 * A lane: drains at start, then after every wake-up (notification, reconnect), new slot leases, or
 * `RELAY_POLL_INTERVAL` (the slow fallback poll), until its scope closes.
 *
 * While it keeps finding rows it marks itself awake so producers skip NOTIFY, and before it sleeps it
 * hands over (`Handover`) so no committed row waits for the poll. It rebalances its slot leases
 * between batches, never while a batch is in flight. While Redis memory is high (`Backpressure`) it
 * claims nothing: rows wait in Postgres. Lane 0 relays for ever; the others are helpers
 * that join only for a backlog (`HelperLanes`).
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import { Wakeups } from "./1-Wakeups.js"
import { SlotLeases } from "./2-SlotLeases.js"
import { ClaimSession } from "./3-ClaimSession.js"
import { Batch } from "./5-Batch.js"
import { WakeRegistry } from "./7-WakeRegistry.js"
import { handOver } from "./8-Handover.js"
import { firstLaneRebalanced, helpOnce, type LaneCrew, signalBacklog } from "./9-HelperLanes.js"
import { Backpressure } from "./Backpressure.js"
import { RelayConfig } from "./RelayConfig.js"

/** How long a lane going idle keeps its last COMMIT for the next claim to carry. */
const settleDelay = Duration.millis(5)

/** Events per second above which a busy lane pauses (`RELAY_BUSY_PAUSE`), measured over `busyWindowMs`. */
export const busyRate = 2_000
const busyWindowMs = 20

/**
 * The lane's intake rate over windows of at least `busyWindowMs` between claims: `heavy` once a whole
 * window brought in `busyRate` or more. A window is too long for a stall's catch-up batch to count.
 */
export const intakeMeter = () => {
  let windowStart = -Infinity
  let rows = 0
  let heavy = false
  return {
    get heavy() {
      return heavy
    },
    /** A claim sent at `sentAt` (relay clock) found `claimed` rows. */
    claimed(sentAt: number, claimed: number) {
      if (sentAt - windowStart > 10 * busyWindowMs) {
        // Idle in between: a new window, no verdict yet.
        windowStart = sentAt
        rows = 0
        heavy = false
        return
      }
      rows += claimed
      if (sentAt - windowStart >= busyWindowMs) {
        heavy = rows * 1000 >= busyRate * (sentAt - windowStart)
        windowStart = sentAt
        rows = 0
      }
    }
  }
}

/** One lane's own services: its claim session and slots, its row in outbox_relay_wake, its batches. */
const laneServices = Batch.layer.pipe(
  Layer.provideMerge(SlotLeases.layer),
  Layer.provideMerge(Layer.mergeAll(ClaimSession.layer, WakeRegistry.layer))
)

/** Runs lane number `lane` of `crew` until interrupted. */
export const runLane = (lane: number, crew: LaneCrew) =>
  Effect.gen(function*() {
    const config = yield* RelayConfig
    const batch = yield* Batch
    const backpressure = yield* Backpressure
    const leases = yield* SlotLeases
    const registry = yield* WakeRegistry
    const { notifications, subscribe } = yield* Wakeups
    const wakeups = yield* subscribe
    const nudge = crew.nudges[lane]!

    // Slot leases are checked at most this often (and on every wake-up after that).
    const leaseCheck = Duration.min(Duration.seconds(1), Duration.divideUnsafe(config.leaseTimeout, 5))
    const leaseCheckMs = Duration.toMillis(leaseCheck)
    const busyPause = Duration.isGreaterThan(config.busyPause, Duration.zero)
    const intake = intakeMeter()
    let lastRebalance = -Infinity
    /** Rebalances slot leases when due; true when this lane gained slots (drain them). */
    const maybeRebalance = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const due = crew.rebalanceDue[lane]!
      if (!due && now - lastRebalance < leaseCheckMs) return false
      crew.rebalanceDue[lane] = false
      lastRebalance = now
      const before = (yield* leases.current).owned
      return yield* leases.rebalance.pipe(
        Effect.tap((lease) =>
          lease.owned.length === before.length
            ? Effect.void
            : Effect.logInfo("slot leases changed").pipe(
              Effect.annotateLogs({ owned: lease.owned.length, liveRelays: lease.liveRelays, target: lease.target })
            )
        ),
        Effect.map((lease) => lease.owned.some((slot) => !before.includes(slot))),
        Effect.catch((error) =>
          Effect.as(
            Effect.logWarning("slot rebalance failed").pipe(Effect.annotateLogs({ reason: error.message })),
            false
          )
        ),
        Effect.ensuring(lane === 0 && due ? firstLaneRebalanced(crew) : Effect.void)
      )
    })

    /** Commits what is open, then waits (leases kept balanced) until Redis memory allows claiming again. */
    const waitForMemory = Effect.gen(function*() {
      yield* batch.settle
      while (backpressure.paused()) {
        yield* backpressure.awaitResume(leaseCheck)
        yield* maybeRebalance
      }
    })

    /**
     * Whether every row committed after `sentAt` (relay clock) sends its notification to this lane:
     * no producer may skip NOTIFY for this lane's flag, and LISTEN has been up throughout.
     */
    const allNotify = (sentAt: number) =>
      registry.skipsFrom(sentAt) === Infinity && notifications.listeningSince(sentAt)

    /**
     * Claims until a claim comes back empty (or every row it missed will notify) and no producer
     * relies on this lane being awake.
     */
    const drainCycle = Effect.gen(function*() {
      let busyClaims = 0
      while (true) {
        if (backpressure.paused()) yield* waitForMemory
        yield* maybeRebalance
        // A wake-up from before the claim is sent is for rows the claim sees.
        yield* Queue.clear(wakeups)
        const result = yield* batch.next
        const full = result.full
        if (lane === 0 && full) signalBacklog(crew)
        if (busyPause) intake.claimed(result.sentAt, result.claimed)
        if (result.claimed > 0) {
          // Two claims with rows in a row: producers are busy, so spare them their NOTIFYs.
          if (++busyClaims >= 2) {
            yield* registry.markAwake
            // Producers keep us busy at a high rate but the batch was not full: let the next one grow.
            if (busyPause && !full && intake.heavy) {
              yield* Effect.sleep(config.busyPause)
            }
          } else if (!full && allNotify(result.sentAt) && Queue.sizeUnsafe(wakeups) === 0) {
            // Every row this claim missed notifies, and none has yet: no claim to find nothing.
            return
          }
          continue
        }
        if (!(yield* registry.isAwake)) return
        const stillBusy = yield* handOver(registry, wakeups, batch.next)
        // The last claim, after every producer that skipped its NOTIFY has committed.
        if (!stillBusy && (yield* batch.next).claimed === 0) return
        busyClaims = 2
        yield* registry.markAwake
      }
    })

    /**
     * Sleeps until a notification, new slots, the slow poll, or `untilMs` (local clock) passes.
     * A nudge from another lane (one joined or left) rebalances at once.
     */
    const tick = Duration.min(config.pollInterval, leaseCheck)
    const idle = (untilMs = Infinity) =>
      Effect.gen(function*() {
        const since = yield* Clock.currentTimeMillis
        while (true) {
          const now = yield* Clock.currentTimeMillis
          if (now >= untilMs) return
          const woken = yield* Effect.raceAll([
            Effect.as(Queue.take(wakeups), "woken" as const),
            Effect.as(Queue.take(nudge), "nudged" as const),
            Effect.as(
              Effect.sleep(Duration.millis(Math.max(1, Math.min(Duration.toMillis(tick), untilMs - now)))),
              "tick" as const
            )
          ])
          if (woken === "woken") return
          if (yield* maybeRebalance) return
          if ((yield* Clock.currentTimeMillis) - since >= Duration.toMillis(config.pollInterval)) return
        }
      })

    // Nothing stays open while the lane sleeps: the last batch's COMMIT and its attempt tokens go out first.
    const drain = Effect.andThen(drainCycle, batch.settle)

    /**
     * Lane 0 between drains: what the last batch left open (its COMMIT, its attempt tokens) waits
     * `settleDelay` for a wake-up, whose claim and script call carry it (no round trips of its own);
     * then it is sent and the lane sleeps.
     */
    const rest = Effect.gen(function*() {
      const woken = yield* Effect.raceFirst(
        Effect.as(Queue.take(wakeups), true),
        Effect.as(Effect.sleep(settleDelay), false)
      )
      if (woken) return
      yield* batch.settle
      yield* idle()
    })

    if (lane === 0) {
      yield* registry.register.pipe(
        Effect.catch((error) =>
          Effect.logWarning("could not register the relay; its heartbeat will").pipe(
            Effect.annotateLogs({ reason: error.message })
          )
        )
      )
      // Stopped while resting or between batches: the last COMMIT and the attempt tokens still go out.
      return yield* Effect.forever(Effect.andThen(drainCycle, rest)).pipe(Effect.onInterrupt(() => batch.settle))
    }
    return yield* Effect.forever(helpOnce({ lane, crew, registry, leases, drain, idle }))
  }).pipe(
    Effect.onInterrupt(() => Effect.logDebug("lane stopped: no batch in flight", lane)),
    Effect.scoped,
    Effect.provide(Layer.fresh(laneServices))
  )
