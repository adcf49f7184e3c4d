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
import { statements } from "./Statements.js"

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
      ...(options.synchronousCommit === false ? { synchronous_commit: "off" } : {})
    }
  })

export class Database extends Context.Service<Database, {
  /** Claims up to `limit` pending rows; rolls back when the scope closes before `commit`. */
  readonly claimBatch: (limit: number) => Effect.Effect<ClaimedBatch, DatabaseUnavailable, Scope.Scope>
  readonly ping: Effect.Effect<void, DatabaseUnavailable>
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

      const pool = yield* Effect.acquireRelease(
        Effect.sync(() => makeClient(config.databaseUrl, { max: 3, applicationName: "outbox-relay", timeout })),
        (client) => Effect.promise(() => client.end({ timeout: 2 })).pipe(Effect.ignore)
      )

      // The relay loop's own connection; replaced after any failure.
      let relayClient: Client | undefined
      const relayConnection = () =>
        relayClient ??= makeClient(config.databaseUrl, { max: 1, applicationName: "outbox-relay-claim", timeout })
      const discardRelayConnection = Effect.suspend(() => {
        const client = relayClient
        relayClient = undefined
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
        const open = { done: false }
        // BEGIN and the claim are pipelined: one round trip.
        const rows = yield* Effect.acquireRelease(
          onRelayConnection("claim", (sql) =>
            Promise.all([
              sql.unsafe("BEGIN"),
              sql.unsafe<Array<OutboxRow>>(sqlText.claimBatch, [limit], { prepare: true })
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
                sql.unsafe(sqlText.insertDead, [
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
          pool.unsafe<Array<{ event_id: string }>>(sqlText.replayDead, [eventIds ? [...eventIds] : null] as never))
          .pipe(Effect.map((rows) => rows.map((r) => r.event_id)))

      return Database.of({ claimBatch, ping, stats, listDead, replayDead })
    })
  )
}

/** Numeric comparison of bigint ids held as decimal strings. */
export const compareIds = (a: string, b: string): number =>
  a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0
