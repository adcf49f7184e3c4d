/**
 * One claim lane: a connection of its own that claims batches of the slots it leases.
 *
 * Its transaction spans the Redis round trip, and a connection that failed mid-transaction is thrown
 * away whole (`end`) and replaced, so a half-finished transaction is never reused. The slot leases
 * are session advisory locks of this same connection: if the session dies, its open claim dies with
 * it, so no other lane or relay can overtake a batch still in flight. A process runs
 * `RELAY_CONCURRENCY` lanes; each counts as one relay when the slots are shared out.
 */
import { randomBytes } from "node:crypto"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import { type ClaimedBatch, type Client, compareIds, type DeadLetter, makeClient, type OutboxRow, runQuery } from "./Database.js"
import type { DatabaseUnavailable } from "../shared/Errors.js"
import { RelayConfig } from "./RelayConfig.js"
import { arrayParam, assertBackendPidSql, slotCount, slotMask, statements } from "./Statements.js"

/** Who owns what: a lane's slots and how many relays (lanes) share them. */
export interface SlotLease {
  readonly owned: ReadonlyArray<number>
  readonly liveRelays: number
  readonly target: number
}

/** The leases of every lane of this process, for `/readyz` and metrics. */
export class LeaseBoard extends Context.Service<LeaseBoard, {
  readonly set: (lane: string, lease: SlotLease | undefined) => Effect.Effect<void>
  readonly all: Effect.Effect<ReadonlyMap<string, SlotLease>>
}>()("outbox-relay/LeaseBoard") {
  static readonly layer = Layer.effect(
    LeaseBoard,
    Effect.gen(function*() {
      const ref = yield* Ref.make<ReadonlyMap<string, SlotLease>>(new Map())
      return LeaseBoard.of({
        set: (lane, lease) =>
          Ref.update(ref, (m) => {
            const next = new Map(m)
            if (lease) next.set(lane, lease)
            else next.delete(lane)
            return next
          }),
        all: Ref.get(ref)
      })
    })
  )
}

export class Claimer extends Context.Service<Claimer, {
  /**
   * Claims up to `limit` pending rows of the slots this lane leases; rolls back when the scope
   * closes before `commit`.
   */
  readonly claimBatch: (limit: number) => Effect.Effect<ClaimedBatch, DatabaseUnavailable, Scope.Scope>
  /**
   * Takes or gives back slots so that every live relay (lane) owns its share. Runs between batches
   * only, on the claim connection (so a lease never outlives the claims made under it).
   */
  readonly rebalance: Effect.Effect<SlotLease, DatabaseUnavailable>
  readonly lease: Effect.Effect<SlotLease>
  /**
   * Ends whatever the lane left open: a COMMIT deferred with `commitLater`, or the transaction of an
   * empty claim. Runs before the lane goes idle, before a rebalance, and at shutdown.
   */
  readonly settle: Effect.Effect<void, DatabaseUnavailable>
  /** Settles, then gives back every slot this lane leases (a helper lane going dormant). */
  readonly releaseAll: Effect.Effect<void, DatabaseUnavailable>
}>()("outbox-relay/Claimer") {
  static readonly layer = Layer.effect(
    Claimer,
    Effect.gen(function*() {
      const config = yield* RelayConfig
      const board = yield* LeaseBoard
      const sqlText = statements(config.schema)
      const timeout = config.databaseTimeout
      const retaining = Duration.toMillis(config.retention) > 0
      const laneId = randomBytes(4).toString("hex")
      yield* Effect.addFinalizer(() => board.set(laneId, undefined))

      // This lane's connection; replaced after any failure.
      let relayClient: Client | undefined
      // Slots leased by the relay connection's session; gone with it.
      let owned = new Set<number>()
      // The backend pid of the session holding `owned`. postgres.js reconnects silently after a
      // session ends while idle (pg_terminate_backend, a Postgres restart), and a new session holds
      // neither our leases nor our transaction: every claim and commit checks it is still this one.
      let leasePid: number | undefined
      let lease: SlotLease = { owned: [], liveRelays: 1, target: slotCount }
      const relayConnection = () =>
        relayClient ??= makeClient(config.databaseUrl, {
          max: 1,
          applicationName: "outbox-relay-claim",
          timeout,
          deadClientTimeout: config.leaseTimeout,
          claimPlan: true
        })
      // What the lane left open on its connection, ended by the next claim (in the same round trip)
      // or by `settle`: a published batch whose COMMIT was deferred, or an empty claim's transaction
      // (it deleted nothing: no row locks, no snapshot between statements, only the table's ROW
      // EXCLUSIVE lock, for the few milliseconds until the lane claims again or settles).
      let deferred: { readonly onCommitted: Effect.Effect<void> } | undefined
      let emptyOpen = false
      const discardRelayConnection = Effect.suspend(() => {
        const client = relayClient
        relayClient = undefined
        deferred = undefined
        emptyOpen = false
        owned = new Set()
        leasePid = undefined
        lease = { ...lease, owned: [] }
        board.set(laneId, lease).pipe(Effect.runSync)
        return client ? Effect.promise(() => client.end({ timeout: 0 })).pipe(Effect.ignore) : Effect.void
      })
      const query = <A>(operation: string, run: () => Promise<A>) => runQuery(operation, timeout, run)
      const claimSql = retaining ? sqlText.claimBatchRetaining : sqlText.claimBatch
      // The connection whose session has the claim prepared as `claimStatement`.
      let preparedOn: Client | undefined

      /** A failed statement on the relay connection: drop the connection, report the failure. */
      const onRelayConnection = <A>(operation: string, run: (sql: Client) => Promise<A>) =>
        query(operation, () => run(relayConnection())).pipe(Effect.tapError(() => discardRelayConnection))

      /**
       * The statements that end what the lane left open, to run first in the next round trip, as
       * text for a multi-statement message. Fails (division by zero) on any session but the one that
       * claimed: a COMMIT there would only draw a warning, and the rows it thinks it deletes were
       * already rolled back.
       */
      const closingSql = (): string =>
        deferred
          ? `${assertBackendPidSql(leasePid!)}; COMMIT; `
          : emptyOpen
          ? "COMMIT; "
          : ""

      /** After the round trip that carried `closingSql` succeeded. */
      const closed = Effect.suspend(() => {
        const done = deferred
        deferred = undefined
        emptyOpen = false
        return done ? done.onCommitted : Effect.void
      })

      const settle = Effect.suspend(() =>
        deferred || emptyOpen
          ? Effect.andThen(onRelayConnection("commit", (sql) => sql.unsafe(closingSql())), closed)
          : Effect.void
      )
      // At shutdown: commit what was published (else it is rolled back and published again, deduplicated
      // by the markers), then close.
      yield* Effect.addFinalizer(() =>
        Effect.andThen(settle.pipe(Effect.timeout(timeout), Effect.ignore), discardRelayConnection)
      )

      const claimBatch = Effect.fnUntraced(function*(limit: number) {
        if (owned.size === 0) {
          yield* settle
          return { rows: [], commit: () => Effect.void, commitLater: (onCommitted) => onCommitted } satisfies ClaimedBatch
        }
        const slots = [...owned]
        const open = { done: false }
        // Whatever the last batch left open, BEGIN and the claim go in one message: one round trip,
        // one reply to parse. The claim is a statement prepared once per connection (PREPARE in the
        // first message), run with EXECUTE and its parameters written in (all numbers of our own).
        // One protocol exchange instead of one per statement: `node bench/claim-message.mjs` measured
        // the client's CPU per claim round trip at less than half that of the five pipelined
        // statements sent before (146–161 µs vs 320–405 µs on an empty outbox).
        // The claim takes rows only on the session holding the leases (its pid filter). On a new session
        // (postgres.js reconnects silently) EXECUTE finds no prepared statement and fails: the
        // connection is replaced and the next rebalance leases again.
        const rows = yield* Effect.acquireRelease(
          onRelayConnection("claim", (sql) => {
            const prepare = preparedOn === sql ? "" : `PREPARE ${claimStatement}(int, text, text) AS ${claimSql}; `
            return sql.unsafe(
              `${closingSql()}${prepare}BEGIN; EXECUTE ${claimStatement}(${limit}, '${slotMask(slots)}', '${leasePid}')`
            ).then((results) => {
              preparedOn = sql
              return lastResult(results) as unknown as Array<OutboxRow>
            })
          }).pipe(Effect.tap(() => closed)),
          () =>
            open.done ? Effect.void : onRelayConnection("rollback", (sql) => sql.unsafe("ROLLBACK")).pipe(Effect.ignore)
        )
        if (rows.length === 0) {
          // Nothing deleted: leave the transaction for the next round trip to end.
          open.done = true
          emptyOpen = true
        }
        // RETURNING does not promise an order; publishing relies on it.
        const sorted = [...rows].sort((a, b) => compareIds(a.id, b.id))
        const commit = (dead: ReadonlyArray<DeadLetter>) =>
          onRelayConnection("commit", (sql) =>
            Promise.all([
              // Fails (division by zero) on any session but the one that claimed: a COMMIT there would
              // only draw a warning, and the rows it thinks it deletes were already rolled back.
              sql.unsafe(assertBackendPidSql(leasePid!)),
              ...dead.map(({ reason, row }) =>
                retaining
                  ? sql.unsafe(sqlText.markDeadRetaining, [row.event_id, reason, String(row.attempts + 1)], {
                    prepare: true
                  })
                  : sql.unsafe(sqlText.insertDead, [
                  row.id, row.event_id, row.topic, row.event_type, row.aggregate_type, row.aggregate_id,
                  row.tenant_id, row.payload, row.headers, String(row.schema_version), row.occurred_at,
                  row.created_at, String(row.attempts + 1), reason
                ], { prepare: true })
              ),
              sql.unsafe("COMMIT")
            ])).pipe(
              // Whatever the outcome, this transaction is over: no rollback at scope close.
              Effect.ensuring(Effect.sync(() => {
                open.done = true
                emptyOpen = false
              })),
              Effect.asVoid
            )
        const commitLater = (onCommitted: Effect.Effect<void>) =>
          Effect.sync(() => {
            if (rows.length === 0) return
            deferred = { onCommitted }
            open.done = true
          })
        return { rows: sorted, commit, commitLater } satisfies ClaimedBatch
      })

      // A relay is live when its heartbeat (every second, see WakeState) is this recent.
      const liveWindowMs = Math.min(5000, Math.max(2000, Duration.toMillis(config.leaseTimeout) / 2))
      const rebalance = Effect.gen(function*() {
        yield* settle
        const [{ live, pid }] = yield* onRelayConnection("rebalance", (sql) =>
          sql.unsafe<[{ live: number; pid: number }]>(sqlText.liveRelays, [liveWindowMs], { prepare: true }))
        if (pid !== leasePid) {
          // A session we have not leased on (the first, or a silent reconnect): it owns nothing yet.
          if (leasePid !== undefined) {
            yield* Effect.logWarning("claim session replaced; taking slot leases again").pipe(
              Effect.annotateLogs({ previousBackend: leasePid, backend: pid, slots: owned.size })
            )
          }
          owned = new Set()
          leasePid = pid
          // A new session has no prepared claim either: the next claim prepares it again.
          preparedOn = undefined
        }
        const target = Math.ceil(slotCount / live)
        if (owned.size > target) {
          const extra = [...owned].sort((a, b) => b - a).slice(0, owned.size - target)
          yield* onRelayConnection("rebalance", (sql) => sql.unsafe(sqlText.releaseSlots, [arrayParam(extra)], { prepare: true }))
          for (const slot of extra) owned.delete(slot)
        } else if (owned.size < target) {
          const candidates = shuffle(Array.from({ length: slotCount }, (_, i) => i).filter((i) => !owned.has(i)))
          const [{ slots: leased }] = yield* onRelayConnection("rebalance", (sql) =>
            sql.unsafe<[{ slots: string }]>(sqlText.tryLeaseSlots, [arrayParam(candidates)], { prepare: true }))
          const slots = leased === "" ? [] : leased.split(",").map(Number)
          const keep = slots.slice(0, target - owned.size)
          const giveBack = slots.slice(target - owned.size)
          if (giveBack.length > 0) {
            yield* onRelayConnection("rebalance", (sql) => sql.unsafe(sqlText.releaseSlots, [arrayParam(giveBack)], { prepare: true }))
          }
          for (const slot of keep) owned.add(slot)
        }
        lease = { owned: [...owned].sort((a, b) => a - b), liveRelays: live, target }
        yield* board.set(laneId, lease)
        return lease
      })

      const releaseAll = Effect.gen(function*() {
        yield* settle
        if (owned.size > 0) {
          const slots = [...owned]
          yield* onRelayConnection("release", (sql) => sql.unsafe(sqlText.releaseSlots, [arrayParam(slots)], { prepare: true }))
        }
        owned = new Set()
        lease = { ...lease, owned: [] }
        // A dormant lane is not one of the relay's lanes in /readyz.
        yield* board.set(laneId, undefined)
      })

      return Claimer.of({ claimBatch, rebalance, lease: Effect.sync(() => lease), settle, releaseAll })
    })
  )
}

/** The name the claim statement is prepared under on a claim connection. */
const claimStatement = "outbox_relay_claim"

/**
 * The last statement's result of a multi-statement message (postgres.js resolves one result, or an
 * array of them when several statements returned rows).
 */
const lastResult = (results: unknown): ReadonlyArray<unknown> => {
  const last = (results as { command?: string }).command === undefined
    ? (results as ReadonlyArray<ReadonlyArray<unknown> & { command?: string }>).at(-1)
    : (results as ReadonlyArray<unknown> & { command?: string })
  if (last?.command !== "DELETE" && last?.command !== "UPDATE") {
    throw new Error(`unexpected reply to the claim (${String(last?.command)})`)
  }
  return last
}

const shuffle = <A>(items: Array<A>): Array<A> => {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[items[i], items[j]] = [items[j]!, items[i]!]
  }
  return items
}
