/**
 * The Postgres side of the relay (postgres.js): claim a batch inside a transaction, commit it with its
 * dead letters, read stats, list and replay dead letters.
 *
 * The relay loop has its own single-connection client: its transaction spans the Redis round trip,
 * and a connection that failed mid-transaction is thrown away whole (`end`) and replaced, so a
 * half-finished transaction can never be reused. Everything else shares a small pool.
 */
import { Context, Duration, Effect, Layer, Redacted, Scope } from "effect"
import postgres from "postgres"
import { DatabaseUnavailable, describe } from "./Errors.js"
import { RelayConfig } from "./RelayConfig.js"
import { arrayParam, slotCount, statements } from "./Statements.js"

/** One claimed outbox row, with JSON columns kept as text (published as-is, never re-serialised). */
export interface OutboxRow {
  readonly id: string
  readonly event_id: string
  readonly topic: string
  readonly event_type: string
  readonly aggregate_type: string
  readonly aggregate_id: string
  readonly tenant_id: string
  readonly payload: string
  readonly headers: string
  readonly schema_version: number
  readonly occurred_at: string
  readonly created_at: string
  readonly attempts: number
}

/** A row that can never be published, with the reason. */
export interface DeadLetter {
  readonly row: OutboxRow
  readonly reason: string
}

/** A claimed batch: its rows (in id order) are deleted in a transaction that is still open. */
export interface ClaimedBatch {
  readonly rows: ReadonlyArray<OutboxRow>
  /** Marks `dead` rows dead (kept in the table) and commits: the published rows are gone for good. */
  readonly commit: (dead: ReadonlyArray<DeadLetter>) => Effect.Effect<void, DatabaseUnavailable>
}

export interface OutboxStats {
  readonly pending: number
  readonly oldestPendingSeconds: number
  readonly dead: number
}

export interface DeadRow {
  readonly id: string
  readonly event_id: string
  readonly topic: string
  readonly event_type: string
  readonly aggregate_id: string
  readonly attempts: number
  readonly last_error: string | null
  readonly dead_at: string
}

type Client = postgres.Sql<{}>

/** Opens a postgres.js client with the relay's session settings. */
export const makeClient = (
  url: Redacted.Redacted<string>,
  options: {
    readonly max: number
    readonly applicationName: string
    readonly timeout: Duration.Duration
    readonly synchronousCommit?: boolean
    /** Let the server drop this session (and its leases) when the client is gone for this long. */
    readonly deadClientTimeout?: Duration.Duration
  }
): Client =>
  postgres(Redacted.value(url), {
    max: options.max,
    connect_timeout: Math.max(1, Math.ceil(Duration.toSeconds(options.timeout))),
    idle_timeout: 0,
    fetch_types: false,
    onnotice: () => {},
    connection: {
      application_name: options.applicationName,
      // A relay that stalls mid-batch must not hold its row locks for ever.
      idle_in_transaction_session_timeout: Math.ceil(Duration.toMillis(options.timeout)),
      statement_timeout: Math.ceil(Duration.toMillis(options.timeout)),
      ...(options.synchronousCommit === false ? { synchronous_commit: "off" } : {}),
      ...(options.deadClientTimeout ? deadClientSettings(options.deadClientTimeout) : {})
    }
  })

/** Server-side keepalive so a vanished relay's session, and so its slot leases, end in time. */
const deadClientSettings = (timeout: Duration.Duration) => {
  const seconds = Math.max(3, Math.floor(Duration.toSeconds(timeout)))
  const idle = Math.max(1, Math.floor(seconds / 3))
  return {
    tcp_keepalives_idle: idle,
    tcp_keepalives_interval: 1,
    tcp_keepalives_count: Math.max(1, seconds - idle - 1),
    tcp_user_timeout: (seconds - 1) * 1000
  }
}

/** Who owns what: this relay's slots and how many relays share them. */
export interface SlotLease {
  readonly owned: ReadonlyArray<number>
  readonly liveRelays: number
  readonly target: number
}

export class Database extends Context.Service<Database, {
  /**
   * Claims up to `limit` pending rows of the slots this relay leases; rolls back when the scope
   * closes before `commit`.
   */
  readonly claimBatch: (limit: number) => Effect.Effect<ClaimedBatch, DatabaseUnavailable, Scope.Scope>
  /**
   * Takes or gives back slots so that every live relay owns its share. Runs between batches only, on
   * the claim connection (so a lease never outlives the claims made under it).
   */
  readonly rebalance: Effect.Effect<SlotLease, DatabaseUnavailable>
  readonly lease: Effect.Effect<SlotLease>
  readonly ping: Effect.Effect<void, DatabaseUnavailable>
  /** Deletes published rows older than RELAY_RETENTION (all of them when it is 0); returns how many. */
  readonly purgePublished: Effect.Effect<number, DatabaseUnavailable>
  readonly stats: Effect.Effect<OutboxStats, DatabaseUnavailable>
  readonly listDead: (limit: number) => Effect.Effect<ReadonlyArray<DeadRow>, DatabaseUnavailable>
  /** Moves dead rows (all, or the given event ids) back to pending; returns their event ids. */
  readonly replayDead: (eventIds?: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<string>, DatabaseUnavailable>
}>()("outbox-relay/Database") {
  static readonly layer = Layer.effect(
    Database,
    Effect.gen(function*() {
      const config = yield* RelayConfig
      const sqlText = statements(config.schema)
      const timeout = config.databaseTimeout
      const retaining = Duration.toMillis(config.retention) > 0

      const pool = yield* Effect.acquireRelease(
        Effect.sync(() => makeClient(config.databaseUrl, { max: 3, applicationName: "outbox-relay", timeout })),
        (client) => Effect.promise(() => client.end({ timeout: 2 })).pipe(Effect.ignore)
      )

      // The relay loop's own connection; replaced after any failure.
      let relayClient: Client | undefined
      // Slots leased by the relay connection's session; gone with it.
      let owned = new Set<number>()
      let lease: SlotLease = { owned: [], liveRelays: 1, target: slotCount }
      const relayConnection = () =>
        relayClient ??= makeClient(config.databaseUrl, {
          max: 1,
          applicationName: "outbox-relay-claim",
          timeout,
          deadClientTimeout: config.leaseTimeout
        })
      const discardRelayConnection = Effect.suspend(() => {
        const client = relayClient
        relayClient = undefined
        owned = new Set()
        lease = { ...lease, owned: [] }
        return client ? Effect.promise(() => client.end({ timeout: 0 })).pipe(Effect.ignore) : Effect.void
      })
      yield* Effect.addFinalizer(() => discardRelayConnection)

      const query = <A>(operation: string, run: () => Promise<A>): Effect.Effect<A, DatabaseUnavailable> =>
        Effect.tryPromise({
          try: run,
          catch: (cause) => new DatabaseUnavailable({ operation, message: describe(cause) })
        }).pipe(Effect.timeoutOrElse({
          duration: timeout,
          orElse: () =>
            Effect.fail(
              new DatabaseUnavailable({ operation, message: `no answer within ${Duration.format(timeout)}` })
            )
        }))

      /** A failed statement on the relay connection: drop the connection, report the failure. */
      const onRelayConnection = <A>(operation: string, run: (sql: Client) => Promise<A>) =>
        query(operation, () => run(relayConnection())).pipe(Effect.tapError(() => discardRelayConnection))

      const claimBatch = Effect.fnUntraced(function*(limit: number) {
        if (owned.size === 0) {
          return { rows: [], commit: () => Effect.void } satisfies ClaimedBatch
        }
        const slots = [...owned]
        const open = { done: false }
        // BEGIN and the claim are pipelined: one round trip.
        const rows = yield* Effect.acquireRelease(
          onRelayConnection("claim", (sql) =>
            Promise.all([
              sql.unsafe("BEGIN"),
              sql.unsafe<Array<OutboxRow>>(retaining ? sqlText.claimBatchRetaining : sqlText.claimBatch, [
                limit,
                arrayParam(slots)
              ], { prepare: true })
            ]).then(([, rows]) => rows)),
          () =>
            open.done ? Effect.void : onRelayConnection("rollback", (sql) => sql.unsafe("ROLLBACK")).pipe(Effect.ignore)
        )
        // RETURNING does not promise an order; publishing relies on it.
        const sorted = [...rows].sort((a, b) => compareIds(a.id, b.id))
        const commit = (dead: ReadonlyArray<DeadLetter>) =>
          onRelayConnection("commit", (sql) =>
            Promise.all([
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
              })),
              Effect.asVoid
            )
        return { rows: sorted, commit } satisfies ClaimedBatch
      })

      // A relay is live when its heartbeat (every second, see WakeState) is this recent.
      const liveWindowMs = Math.min(5000, Math.max(2000, Duration.toMillis(config.leaseTimeout) / 2))
      const rebalance = Effect.gen(function*() {
        const [{ live }] = yield* onRelayConnection("rebalance", (sql) =>
          sql.unsafe<[{ live: number }]>(sqlText.liveRelays, [liveWindowMs], { prepare: true }))
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
        return lease
      })

      const purgePublished = Effect.gen(function*() {
        let total = 0
        while (true) {
          const [{ purged }] = yield* query("purge", () =>
            pool.unsafe<[{ purged: number }]>(sqlText.purgePublished, [Duration.toMillis(config.retention), 5000], {
              prepare: true
            }))
          total += purged
          if (purged < 5000) return total
        }
      })

      const ping = query("ping", () => pool.unsafe("SELECT 1")).pipe(Effect.asVoid)

      const stats = query("stats", () => pool.unsafe<Array<Record<string, number>>>(sqlText.stats)).pipe(
        Effect.map(([row]) => ({
          pending: row!.pending!,
          oldestPendingSeconds: row!.oldest_pending_seconds!,
          dead: row!.dead!
        }))
      )

      const listDead = (limit: number) =>
        query("listDead", () => pool.unsafe<Array<DeadRow>>(sqlText.listDead, [limit]))

      const replayDead = (eventIds?: ReadonlyArray<string>) =>
        query("replayDead", () =>
          pool.unsafe<Array<{ event_id: string }>>(sqlText.replayDead, [eventIds ? arrayParam(eventIds) : null] as never))
          .pipe(Effect.map((rows) => rows.map((r) => r.event_id)))

      return Database.of({
        claimBatch,
        rebalance,
        lease: Effect.sync(() => lease),
        ping,
        purgePublished,
        stats,
        listDead,
        replayDead
      })
    })
  )
}

/** Numeric comparison of bigint ids held as decimal strings. */
export const compareIds = (a: string, b: string): number =>
  a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0

const shuffle = <A>(items: Array<A>): Array<A> => {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[items[i], items[j]] = [items[j]!, items[i]!]
  }
  return items
}
