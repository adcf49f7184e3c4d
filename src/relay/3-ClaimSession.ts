/**
 * A lane's Postgres session: the connection it claims on, the slots that session leases, and the
 * transaction of each batch (claim, then COMMIT once Redis acknowledged the XADDs).
 *
 * Its transaction spans the Redis round trip, and a connection that failed mid-transaction is thrown
 * away whole (`end`) and replaced, so a half-finished transaction is never reused. The slot leases
 * are session advisory locks of this same connection: if the session dies, its open claim dies with
 * it, so no other lane or relay can overtake a batch still in flight. Which slots to lease is decided
 * by `SlotLeases`; this module keeps them tied to the session (docs/design.md, Slots and lanes).
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { DatabaseUnavailable } from "../shared/Errors.js"
import {
  type ClaimedBatch,
  type Client,
  compareIds,
  type DeadLetter,
  makePostgresClient,
  type OutboxRow,
  runQuery
} from "./Database.js"
import { RelayConfig } from "./RelayConfig.js"
import { arrayParam, assertBackendPidSql, slotMask, statements } from "./Statements.js"

/** The name the claim statement is prepared under on a claim connection. */
const claimStatement = "outbox_relay_claim"

const make = Effect.gen(function*() {
  const config = yield* RelayConfig
  const sqlText = statements(config.schema)
  const timeout = config.databaseTimeout
  const retaining = Duration.toMillis(config.retention) > 0

  // This lane's connection; replaced after any failure.
  let client: Client | undefined
  // Slots leased by the connection's session; gone with it.
  let owned = new Set<number>()
  // The epoch (fencing token, sql/0007_slot_epochs.sql) each owned slot was leased with.
  let epochs = new Map<number, string>()
  // The backend pid of the session holding `owned`. postgres.js reconnects silently after a
  // session ends while idle (pg_terminate_backend, a Postgres restart), and a new session holds
  // neither our leases nor our transaction: every claim and commit checks it is still this one.
  let sessionPid: number | undefined
  // Bumped whenever `owned` changes: a claim on new slots may find rows committed long ago.
  let slotsVersion = 0
  const connection = () =>
    client ??= makePostgresClient(config.databaseUrl, {
      max: 1,
      applicationName: `outbox-relay-claim/${process.pid}`,
      timeout,
      deadClientTimeout: config.leaseTimeout,
      claimPlan: true,
      ca: config.databaseCa
    })
  // What the lane left open on its connection, ended by the next claim (in the same round trip)
  // or by `settle`: a published batch whose COMMIT was deferred, or an empty claim's transaction
  // (it deleted nothing: no row locks, no snapshot between statements, only the table's ROW
  // EXCLUSIVE lock, for the few milliseconds until the lane claims again or settles).
  let deferred: { readonly onCommitted: Effect.Effect<void> } | undefined
  let emptyOpen = false
  // The connection whose session has the claim prepared as `claimStatement`.
  let preparedOn: Client | undefined

  const discardConnection = Effect.suspend(() => {
    const current = client
    client = undefined
    deferred = undefined
    emptyOpen = false
    owned = new Set()
    epochs = new Map()
    slotsVersion++
    sessionPid = undefined
    return current ? Effect.promise(() => current.end({ timeout: 0 })).pipe(Effect.ignore) : Effect.void
  })

  /** A statement on the lane's connection; a failure drops the connection. */
  const run = <A>(operation: string, statement: (sql: Client) => Promise<A>) =>
    runQuery(operation, timeout, () => statement(connection())).pipe(Effect.tapError(() => discardConnection))

  /**
   * The statements that end what the lane left open, to run first in the next round trip, as
   * text for a multi-statement message. Fails (division by zero) on any session but the one that
   * claimed: a COMMIT there would only draw a warning, and the rows it thinks it deletes were
   * already rolled back.
   */
  const closingSql = (): string =>
    deferred
      ? `${assertBackendPidSql(sessionPid!)}; COMMIT; `
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
      ? Effect.andThen(run("commit", (sql) => sql.unsafe(closingSql())), closed)
      : Effect.void
  )
  // At shutdown: commit what was published (else it is rolled back and published again, deduplicated
  // by the attempt records), then close.
  yield* Effect.addFinalizer(() =>
    Effect.andThen(settle.pipe(Effect.timeout(timeout), Effect.ignore), discardConnection)
  )

  const claimSql = retaining ? sqlText.claimBatchRetaining : sqlText.claimBatch
  // The claim's slot mask, computed again only when the owned slots change.
  let maskFor = -1
  let maskText = ""
  const mask = () => {
    if (maskFor !== slotsVersion) {
      maskText = slotMask(owned)
      maskFor = slotsVersion
    }
    return maskText
  }

  const claimBatch = Effect.fnUntraced(function*(limit: number) {
    if (owned.size === 0) {
      yield* settle
      return { rows: [], commit: () => Effect.void, commitLater: (onCommitted) => onCommitted } satisfies ClaimedBatch
    }
    const open = { done: false }
    // Whatever the last batch left open, BEGIN and the claim go in one message: one round trip,
    // one reply to parse. The claim is prepared once per connection (PREPARE in the first message)
    // and run with EXECUTE, its parameters written in (all numbers of our own): one protocol exchange
    // instead of one per statement (docs/benchmarks.md, claim message).
    // The claim takes rows only on the session holding the leases (its pid filter). On a new session
    // (postgres.js reconnects silently) EXECUTE finds no prepared statement and fails: the
    // connection is replaced and the next rebalance leases again.
    const rows = yield* Effect.acquireRelease(
      run("claim", (sql) => {
        const prepare = preparedOn === sql ? "" : `PREPARE ${claimStatement}(int, text, text) AS ${claimSql}; `
        return sql.unsafe(
          `${closingSql()}${prepare}BEGIN; EXECUTE ${claimStatement}(${limit}, '${mask()}', '${sessionPid}')`
        ).then((results) => {
          preparedOn = sql
          return lastResult(results) as unknown as Array<OutboxRow>
        })
      }).pipe(Effect.tap(() => closed)),
      () => open.done ? Effect.void : run("rollback", (sql) => sql.unsafe("ROLLBACK")).pipe(Effect.ignore)
    )
    if (rows.length === 0) {
      // Nothing deleted: leave the transaction for the next round trip to end.
      open.done = true
      emptyOpen = true
    }
    // RETURNING does not promise an order; publishing relies on it.
    const sorted = [...rows].sort((a, b) => compareIds(a.id, b.id))
    const commit = (dead: ReadonlyArray<DeadLetter>) =>
      run("commit", (sql) =>
        Promise.all([
          // Fails (division by zero) on any session but the one that claimed: a COMMIT there would
          // only draw a warning, and the rows it thinks it deletes were already rolled back.
          sql.unsafe(assertBackendPidSql(sessionPid!)),
          ...dead.map(({ reason, row }) =>
            retaining
              ? sql.unsafe(sqlText.markDeadRetaining, [row.event_id, reason, String(row.attempts + 1)], {
                prepare: true
              })
              : sql.unsafe(sqlText.insertDead, [
                row.id,
                row.event_id,
                row.topic,
                row.event_type,
                row.aggregate_type,
                row.aggregate_id,
                row.tenant_id,
                row.payload,
                row.headers,
                String(row.schema_version),
                row.occurred_at,
                row.created_at,
                String(row.attempts + 1),
                reason
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

  const liveRelays = (windowMs: number) =>
    Effect.gen(function*() {
      yield* settle
      const [{ live, pid }] = yield* run("rebalance", (sql) =>
        sql.unsafe<[{ live: number; pid: number }]>(sqlText.liveRelays, [windowMs], { prepare: true }))
      if (pid !== sessionPid) {
        // A session we have not leased on (the first, or a silent reconnect): it owns nothing yet.
        if (sessionPid !== undefined) {
          yield* Effect.logWarning("claim session replaced; taking slot leases again").pipe(
            Effect.annotateLogs({ previousBackend: sessionPid, backend: pid, slots: owned.size })
          )
        }
        owned = new Set()
        epochs = new Map()
        slotsVersion++
        sessionPid = pid
        // A new session has no prepared claim either: the next claim prepares it again.
        preparedOn = undefined
      }
      return live
    })

  const release = (slots: ReadonlyArray<number>) =>
    slots.length === 0
      ? Effect.void
      : run("release", (sql) => sql.unsafe(sqlText.releaseSlots, [arrayParam(slots)], { prepare: true })).pipe(
        Effect.tap(() =>
          Effect.sync(() =>
            slots.forEach((slot) => {
              owned.delete(slot)
              epochs.delete(slot)
              slotsVersion++
            })
          )
        ),
        Effect.asVoid
      )

  const lease = (candidates: ReadonlyArray<number>, wanted: number) =>
    Effect.gen(function*() {
      const [{ slots: leased }] = yield* run("rebalance", (sql) =>
        sql.unsafe<[{ slots: string }]>(sqlText.tryLeaseSlots, [arrayParam(candidates)], { prepare: true }))
      const slots = leased === "" ? [] : leased.split(",").map(Number)
      // Each lock is tried in turn, so more may be held than wanted: give the rest back at once.
      yield* release(slots.slice(wanted))
      const kept = slots.slice(0, wanted)
      if (kept.length === 0) {
        return
      }
      const [{ epochs: bumped }] = yield* run("rebalance", (sql) =>
        sql.unsafe<[{ epochs: string }]>(sqlText.bumpEpochs, [arrayParam(kept)], { prepare: true }))
      // A slot missing from the table (not possible after migration 0007) stays unleased in our view.
      for (const pair of bumped === "" ? [] : bumped.split(",")) {
        const [slot, epoch] = pair.split(":")
        owned.add(Number(slot))
        epochs.set(Number(slot), epoch!)
        slotsVersion++
      }
    })

  return ClaimSession.of({
    claimBatch,
    settle,
    owned: () => owned,
    slotsVersion: () => slotsVersion,
    epochs: () => epochs,
    dropLeases: discardConnection,
    liveRelays,
    lease,
    release: (slots) => Effect.andThen(settle, release(slots))
  })
})

export class ClaimSession extends Context.Service<ClaimSession, {
  /**
   * Claims up to `limit` pending rows of the slots this session leases; rolls back when the scope
   * closes before `commit`.
   */
  readonly claimBatch: (limit: number) => Effect.Effect<ClaimedBatch, DatabaseUnavailable, Scope.Scope>
  /**
   * Ends whatever the lane left open: a COMMIT deferred with `commitLater`, or the transaction of an
   * empty claim. Runs before the lane goes idle, before a rebalance, and at shutdown.
   */
  readonly settle: Effect.Effect<void, DatabaseUnavailable>
  /** The slots this session leases now (empty after the connection was replaced). */
  readonly owned: () => ReadonlySet<number>
  /** Changes whenever the owned slots change (leased, released, lost with the session). */
  readonly slotsVersion: () => number
  /** The epoch each owned slot was leased with (its fencing token in Redis). */
  readonly epochs: () => ReadonlyMap<number, string>
  /**
   * Drops the connection and so every lease and the open claim (rolled back by Postgres): for a lane
   * Redis fenced off, whose leases another relay has taken over since.
   */
  readonly dropLeases: Effect.Effect<void>
  /**
   * Settles, then counts the relays (lanes) whose heartbeat is younger than `windowMs`. Notices a new
   * session (first use, or a silent reconnect): it owns no slots until it leases again.
   */
  readonly liveRelays: (windowMs: number) => Effect.Effect<number, DatabaseUnavailable>
  /** Tries to lease `candidates` in order until `wanted` are held by this session. */
  readonly lease: (candidates: ReadonlyArray<number>, wanted: number) => Effect.Effect<void, DatabaseUnavailable>
  /** Settles, then gives `slots` back. */
  readonly release: (slots: ReadonlyArray<number>) => Effect.Effect<void, DatabaseUnavailable>
}>()("outbox-relay/relay/ClaimSession") {
  static readonly layer = Layer.effect(this, make)
}

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
