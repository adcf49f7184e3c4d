/**
 * How the lanes of one process work together. The first lane always relays; the other
 * `RELAY_CONCURRENCY - 1` are helpers that stay dormant (no slots, no row in `outbox_relay_wake`, not
 * counted as live) until the first lane claims a full batch: a backlog. Then one helper registers,
 * the lanes share the slots again, and it drains its share; it leaves (gives its slots back at once)
 * when its slots are empty and it has been in for a second. So a backlog drains with every lane, and a
 * steady trickle costs one claim per wake-up instead of one per lane (docs/design.md, Slots and lanes).
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type { SlotLeases } from "./2-SlotLeases.js"
import type { WakeRegistry } from "./7-WakeRegistry.js"

/** How long a helper stays in at least, so a backlog that comes in waves does not churn the leases. */
const shortestStay = Duration.seconds(1)

/** The signals between the lanes of one process. */
export interface LaneCrew {
  readonly size: number
  /** Offered by the first lane when it claims a full batch; a dormant helper takes it and joins. */
  readonly backlog: Queue.Queue<void>
  /** Per lane: rebalance at the next chance (a lane joined or left). */
  readonly rebalanceDue: Array<boolean>
  /** Per lane: wakes it from idle to rebalance. */
  readonly nudges: ReadonlyArray<Queue.Queue<void>>
  /** Completed after the first lane's next forced rebalance (a joining helper waits for it). */
  firstLaneRebalanced: Array<Deferred.Deferred<void>>
}

export const makeCrew = (size: number): Effect.Effect<LaneCrew> =>
  Effect.gen(function*() {
    const nudges: Array<Queue.Queue<void>> = []
    for (let i = 0; i < size; i++) nudges.push(yield* Queue.sliding<void>(1))
    return {
      size,
      backlog: yield* Queue.sliding<void>(1),
      rebalanceDue: Array.from({ length: size }, () => false),
      nudges,
      firstLaneRebalanced: []
    }
  })

/** Asks every lane but `from` to rebalance at its next chance. */
export const requestRebalance = (crew: LaneCrew, from: number): Effect.Effect<void> =>
  Effect.sync(() => {
    for (let i = 0; i < crew.size; i++) {
      if (i === from) continue
      crew.rebalanceDue[i] = true
      Queue.offerUnsafe(crew.nudges[i]!, undefined)
    }
  })

/** Called by the first lane after a rebalance that was due: helpers waiting to lease may go on. */
export const firstLaneRebalanced = (crew: LaneCrew): Effect.Effect<void> =>
  Effect.sync(() => {
    const waiting = crew.firstLaneRebalanced
    crew.firstLaneRebalanced = []
    for (const done of waiting) Deferred.doneUnsafe(done, Effect.void)
  })

/** The first lane signals a backlog (it claimed a full batch): a dormant helper may join. */
export const signalBacklog = (crew: LaneCrew): void => {
  if (crew.size > 1) Queue.offerUnsafe(crew.backlog, undefined)
}

/**
 * One round of a helper lane: dormant until a backlog, then in until its slots are empty and it has
 * stayed `shortestStay`, then out again. `drain` relays until this lane's slots are empty; `idle`
 * sleeps until a wake-up or the given time (local clock, ms).
 */
export const helpOnce = (options: {
  readonly lane: number
  readonly crew: LaneCrew
  readonly registry: WakeRegistry["Service"]
  readonly leases: SlotLeases["Service"]
  readonly drain: Effect.Effect<void>
  readonly idle: (untilMs: number) => Effect.Effect<void>
}): Effect.Effect<void> =>
  Effect.gen(function*() {
    const { crew, lane, leases, registry } = options
    yield* Queue.take(crew.backlog)
    const registered = yield* Effect.as(registry.register, true).pipe(
      Effect.catch((error) => Effect.as(Effect.logDebug("helper lane could not register", error.message), false))
    )
    if (!registered) {
      // Stay dormant: no heartbeat may bring the row back.
      yield* registry.unregister.pipe(Effect.ignore)
      return
    }
    yield* Effect.logDebug("helper lane joined", lane)
    // The first lane gives up its share first (at its next batch boundary), then this one leases.
    const rebalanced = yield* Deferred.make<void>()
    crew.firstLaneRebalanced.push(rebalanced)
    yield* requestRebalance(crew, lane)
    yield* Deferred.await(rebalanced).pipe(Effect.timeoutOption("1 second"))
    crew.rebalanceDue[lane] = true
    const joinedAt = yield* Clock.currentTimeMillis
    const leaveAt = joinedAt + Duration.toMillis(shortestStay)
    while (true) {
      yield* options.drain
      if ((yield* Clock.currentTimeMillis) >= leaveAt) break
      yield* options.idle(leaveAt)
    }
    // Leave: slots back at once and no longer counted, then the other lanes take the slots.
    yield* leases.releaseAll.pipe(Effect.ignore)
    yield* registry.unregister.pipe(Effect.ignore)
    yield* Queue.clear(crew.backlog)
    yield* requestRebalance(crew, lane)
    yield* Effect.logDebug("helper lane left", lane)
  })
