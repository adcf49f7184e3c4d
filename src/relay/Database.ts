/**
 * The Postgres side of the relay (postgres.js): the row types, the one client factory with the
 * relay's session settings, and the pooled statements (health, stats, purge, vacuum, dead letters).
 * Claiming lives in `ClaimSession` (one per lane, each with its own connection).
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import postgres from "postgres"
import { DatabaseUnavailable, describe } from "../shared/Errors.js"
import { postgresTarget } from "../shared/Tls.js"
import { RelayConfig } from "./RelayConfig.js"
import { arrayParam, statements } from "./Statements.js"

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
  /** The row's slot (sql/0004_slots.sql), whose lease epoch fences its publish. */
  readonly slot: number
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
  /**
   * Leaves the COMMIT for later: it goes out in front of the lane's next claim, in the same round
   * trip, or with `ClaimSession.settle`; `onCommitted` runs once it succeeded. If it fails, the rows are
   * rolled back (or were deleted: the outcome of a failed COMMIT is unknown), exactly as when
   * `commit` fails, and the error surfaces from that next claim or settle.
   */
  readonly commitLater: (onCommitted: Effect.Effect<void>) => Effect.Effect<void>
}

export interface OutboxStats {
  readonly pending: number
  /** Highest `attempts` among pending rows (0 when none). */
  readonly pendingMaxAttempts: number
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

/** A postgres.js client. */
export type Client = postgres.Sql<{}>

/** Opens a postgres.js client with the relay's session settings. */
export const makePostgresClient = (
  url: Redacted.Redacted<string>,
  options: {
    readonly max: number
    readonly applicationName: string
    readonly timeout: Duration.Duration
    readonly synchronousCommit?: boolean
    /** Let the server drop this session (and its leases) when the client is gone for this long. */
    readonly deadClientTimeout?: Duration.Duration
    /**
     * Pin the claim's plan to the ordered scan of `outbox_events_pending` (see `claimPlanSettings`).
     */
    readonly claimPlan?: boolean
    /** CA to verify the server with (RELAY_DATABASE_TLS_CA_FILE or the URL's `sslrootcert`, read at start). */
    readonly ca: Buffer | undefined
  }
): Client => {
  const target = postgresTarget(Redacted.value(url), options.ca)
  return postgres(target.url, {
    ...(target.ssl === undefined ? {} : { ssl: target.ssl }),
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
      ...(options.deadClientTimeout ? deadClientSettings(options.deadClientTimeout) : {}),
      ...(options.claimPlan ? claimPlanSettings : {})
    }
  })
}

/**
 * Session settings of the claim connections. The claim wants the first N pending rows in id order:
 * an ordered scan of the partial index `outbox_events_pending` that stops after N rows, whatever the
 * backlog. On a table whose statistics lag behind (new, or growing faster than autoanalyze runs) the
 * planner estimates a handful of pending rows and picks a bitmap scan of ALL of them plus a sort,
 * so each claim costs O(backlog) and a relay that falls behind falls further behind (docs/benchmarks.md,
 * claim plan).
 * Without bitmap scans and sorts the only plan left is the ordered one.
 * These connections run nothing but the relay's own small statements.
 */
const claimPlanSettings = { enable_bitmapscan: "off", enable_sort: "off" } as const

/** Runs a driver call as an Effect: failures and timeouts become `DatabaseUnavailable`. */
export const runQuery = <A>(
  operation: string,
  timeout: Duration.Duration,
  run: () => Promise<A>
): Effect.Effect<A, DatabaseUnavailable> =>
  Effect.tryPromise({
    try: () => withTimeout(run(), Duration.toMillis(timeout)),
    catch: (cause) =>
      new DatabaseUnavailable({
        operation,
        message: cause === timedOut ? `no answer within ${Duration.format(timeout)}` : describe(cause)
      })
  })

const timedOut = Symbol("timed out")

/**
 * Rejects with `timedOut` when `promise` has not settled within `ms`. A timer on the promise instead
 * of `Effect.timeout`, which races two forked fibers: this runs on every statement, and the relay's
 * CPU per batch is what producers on the same cores pay for (`npm run bench`, overhead).
 */
export const withTimeout = <A>(promise: Promise<A>, ms: number): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    const timer = setTimeout(() => reject(timedOut), ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error) => {
        clearTimeout(timer)
        reject(error)
      }
    )
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

/** The pool (three connections, closed with the scope) and its statements. */
const make = Effect.gen(function*() {
  const config = yield* RelayConfig
  const sqlText = statements(config.schema)
  const timeout = config.databaseTimeout
  const query = <A>(operation: string, run: () => Promise<A>) => runQuery(operation, timeout, run)

  const pool = yield* Effect.acquireRelease(
    Effect.sync(() =>
      makePostgresClient(config.databaseUrl, {
        max: 3,
        applicationName: "outbox-relay",
        timeout,
        ca: config.databaseCa
      })
    ),
    (client) => Effect.promise(() => client.end({ timeout: 2 })).pipe(Effect.ignore)
  )

  const purgePublished = Effect.gen(function*() {
    let total = 0
    while (true) {
      const [{ purged }] = yield* query(
        "purge",
        () =>
          pool.unsafe<[{ purged: number }]>(sqlText.purgePublished, [Duration.toMillis(config.retention), 5000], {
            prepare: true
          })
      )
      total += purged
      if (purged < 5000) return total
    }
  })

  const vacuumIfNeeded = Effect.gen(function*() {
    if (config.vacuumThreshold === 0) return "not-needed" as const
    const [{ allowed, dead }] = yield* query(
      "deadTuples",
      () => pool.unsafe<[{ dead: number; allowed: boolean }]>(sqlText.deadTuples)
    )
    if (dead <= config.vacuumThreshold) return "not-needed" as const
    if (!allowed) return "not-allowed" as const
    // VACUUM cannot run in a transaction: a plain simple-protocol statement on the pool.
    yield* query("vacuum", () => pool.unsafe(sqlText.vacuum))
    return "vacuumed" as const
  })

  const ping = query("ping", () => pool.unsafe("SELECT 1")).pipe(Effect.asVoid)

  const stats = query("stats", () => pool.unsafe<Array<Record<string, number>>>(sqlText.stats)).pipe(
    Effect.map(([row]) => ({
      pending: row!.pending!,
      pendingMaxAttempts: row!.max_attempts!,
      oldestPendingSeconds: row!.oldest_pending_seconds!,
      dead: row!.dead!
    }))
  )

  const listDead = (limit: number) => query("listDead", () => pool.unsafe<Array<DeadRow>>(sqlText.listDead, [limit]))

  const replayDead = (eventIds?: ReadonlyArray<string>) =>
    query(
      "replayDead",
      () =>
        pool.unsafe<Array<{ event_id: string }>>(
          sqlText.replayDead,
          [eventIds ? arrayParam(eventIds) : null, null] as never
        )
    )
      .pipe(Effect.map((rows) => rows.map((r) => r.event_id)))

  return Database.of({
    ping,
    purgePublished,
    vacuumIfNeeded,
    stats,
    listDead,
    replayDead
  })
})

export class Database extends Context.Service<Database, {
  readonly ping: Effect.Effect<void, DatabaseUnavailable>
  /** Deletes published rows older than RELAY_RETENTION (all of them when it is 0); returns how many. */
  readonly purgePublished: Effect.Effect<number, DatabaseUnavailable>
  /**
   * Vacuums the outbox table when it holds more dead tuples than RELAY_VACUUM_THRESHOLD (never when
   * that is 0). "not-allowed": this role may not vacuum it (VACUUM would only warn and skip it).
   */
  readonly vacuumIfNeeded: Effect.Effect<"vacuumed" | "not-needed" | "not-allowed", DatabaseUnavailable>
  readonly stats: Effect.Effect<OutboxStats, DatabaseUnavailable>
  readonly listDead: (limit: number) => Effect.Effect<ReadonlyArray<DeadRow>, DatabaseUnavailable>
  /** Moves dead rows (all, or the given event ids) back to pending; returns their event ids. */
  readonly replayDead: (eventIds?: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<string>, DatabaseUnavailable>
}>()("outbox-relay/relay/Database") {
  static readonly layer = Layer.effect(this, make)
}

/** Numeric comparison of bigint ids held as decimal strings. */
export const compareIds = (a: string, b: string): number =>
  a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0
