/**
 * Which slots each lane may claim. Aggregate keys hash into 64 slots (sql/0004_slots.sql); a slot is
 * leased by one lane at a time with a session advisory lock, so the events of one aggregate are
 * relayed by one lane, in order, whatever the number of lanes and relays. Every live lane (its
 * heartbeat is recent, see `WakeRegistry`) gets an equal share; a lane that dies loses its session and
 * so its locks, and the others take its slots at their next rebalance (docs/design.md, Slots and lanes).
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { randomBytes } from "node:crypto"
import type { DatabaseUnavailable } from "../shared/Errors.js"
import { ClaimSession } from "./3-ClaimSession.js"
import { RelayConfig } from "./RelayConfig.js"
import { slotCount } from "./Statements.js"

/** Who owns what: a lane's slots and how many relays (lanes) share them. */
export interface SlotLease {
  readonly owned: ReadonlyArray<number>
  readonly liveRelays: number
  readonly target: number
}

/** The leases of every lane of this process, for `/readyz` and metrics. */
export class LeaseBoard extends Context.Service<LeaseBoard, {
  /** Shows a lane's lease, read afresh on every `all`; `undefined` takes the lane off the board. */
  readonly set: (lane: string, lease: (() => SlotLease) | undefined) => Effect.Effect<void>
  readonly all: Effect.Effect<ReadonlyMap<string, SlotLease>>
}>()("outbox-relay/relay/LeaseBoard") {
  static readonly layer = Layer.sync(this, () => {
    const lanes = new Map<string, () => SlotLease>()
    return {
      set: (lane, lease) =>
        Effect.sync(() => {
          if (lease) lanes.set(lane, lease)
          else lanes.delete(lane)
        }),
      all: Effect.sync(() => new Map([...lanes].map(([lane, lease]) => [lane, lease()])))
    }
  })
}

const make = Effect.gen(function*() {
  const config = yield* RelayConfig
  const board = yield* LeaseBoard
  const session = yield* ClaimSession
  const laneId = randomBytes(4).toString("hex")
  let liveRelays = 1
  let target = slotCount
  const current = (): SlotLease => ({
    owned: [...session.owned()].sort((a, b) => a - b),
    liveRelays,
    target
  })
  yield* Effect.addFinalizer(() => board.set(laneId, undefined))

  // A relay is live when its heartbeat (every second, see WakeRegistry) is this recent.
  const liveWindowMs = Math.min(5000, Math.max(2000, Duration.toMillis(config.leaseTimeout) / 2))

  const rebalance = Effect.gen(function*() {
    liveRelays = yield* session.liveRelays(liveWindowMs)
    target = Math.ceil(slotCount / liveRelays)
    const owned = session.owned()
    if (owned.size > target) {
      yield* session.release([...owned].sort((a, b) => b - a).slice(0, owned.size - target))
    } else if (owned.size < target) {
      const candidates = shuffle(Array.from({ length: slotCount }, (_, i) => i).filter((i) => !owned.has(i)))
      yield* session.lease(candidates, target - owned.size)
    }
    yield* board.set(laneId, current)
    return current()
  })

  const releaseAll = Effect.gen(function*() {
    yield* session.release([...session.owned()])
    // A dormant lane is not one of the relay's lanes in /readyz.
    yield* board.set(laneId, undefined)
  })

  return SlotLeases.of({ rebalance, current: Effect.sync(current), releaseAll })
})

/** One lane's share of the slots. */
export class SlotLeases extends Context.Service<SlotLeases, {
  /**
   * Takes or gives back slots so that every live relay (lane) owns its share. Runs between batches
   * only, on the claim session (so a lease never outlives the claims made under it).
   */
  readonly rebalance: Effect.Effect<SlotLease, DatabaseUnavailable>
  readonly current: Effect.Effect<SlotLease>
  /** Gives back every slot this lane leases (a helper lane going dormant). */
  readonly releaseAll: Effect.Effect<void, DatabaseUnavailable>
}>()("outbox-relay/relay/SlotLeases") {
  static readonly layer = Layer.effect(this, make)
}

const shuffle = <A>(items: Array<A>): Array<A> => {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[items[i], items[j]] = [items[j]!, items[i]!]
  }
  return items
}
