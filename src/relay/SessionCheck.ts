/**
 * The check `run` and `migrate` make once at start, before any session lock: every database URL of the
 * relay must give each connection a server session of its own. The slot leases are session advisory locks,
 * the claim is a prepared statement guarded by the session's backend pid, and LISTEN hears nothing once
 * a pooler hands its server connection to another client. A transaction-mode pooler (PgBouncer's
 * `pool_mode = transaction`) breaks all three, mostly without an error, so the relay refuses it.
 *
 * How: two connections (A and B) take turns asking `pg_backend_pid()`. Directly or through a
 * session-mode pooler, A answers with one pid every time and B with another. A transaction-mode pooler
 * returns A's server connection to its pool after each statement, so B is served by it (PgBouncer
 * reuses the connection released last) or A moves to another one. Any of that is proof: the check
 * cannot refuse a real session, whatever the load (docs/production.md#pgbouncer).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import pg from "pg"
import { DatabaseUnavailable, describe } from "../shared/Errors.js"
import { retryMigration } from "../shared/Retry.js"
import { postgresTarget } from "../shared/Tls.js"
import { withTimeout } from "./Database.js"
import { ConfigInvalid, type RelaySettings } from "./RelayConfig.js"

/** Turns of A then B then A; more turns only lower the odds that an unusual pool order hides a pooler. */
const rounds = 3

/** Why `url` shares server sessions between connections, or undefined when each has its own. */
export const sharedSessions = (
  url: Redacted.Redacted<string>,
  timeout: Duration.Duration,
  ca?: Buffer
): Effect.Effect<string | undefined, DatabaseUnavailable> => {
  // The same TLS as the relay's own connections (RELAY_DATABASE_TLS_CA_FILE, sslmode, sslrootcert).
  const target = postgresTarget(Redacted.value(url), ca)
  const open = () =>
    new pg.Client({
      connectionString: target.url,
      ...(target.ssl === undefined ? {} : { ssl: target.ssl }),
      application_name: "outbox-relay-check",
      connectionTimeoutMillis: Duration.toMillis(timeout)
    })
  // pg's Client never reconnects by itself: a changed pid is a pooler, not a silent reconnect.
  return Effect.tryPromise({
    try: () =>
      withTimeout(
        (async () => {
          const a = open()
          const b = open()
          // An error event between queries (the server went away) must not crash the process.
          a.on("error", () => {})
          b.on("error", () => {})
          try {
            await Promise.all([a.connect(), b.connect()])
            const pid = async (client: pg.Client) =>
              (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid
            const first = await pid(a)
            for (let round = 0; round < rounds; round++) {
              const other = await pid(b)
              if (other === first) return "a second connection was served by the first one's server session"
              const again = await pid(a)
              if (again !== first) return "one connection was served by different server sessions"
            }
            return undefined
          } finally {
            await Promise.allSettled([a.end(), b.end()])
          }
        })(),
        Duration.toMillis(timeout)
      ),
    catch: (cause) =>
      new DatabaseUnavailable({
        operation: "sessionCheck",
        message: typeof cause === "symbol" ? `no answer within ${Duration.format(timeout)}` : describe(cause)
      })
  })
}

/**
 * Fails with one line naming the setting to change when `RELAY_DATABASE_URL` (or, with `listen`,
 * `RELAY_LISTEN_DATABASE_URL`) reaches Postgres through a transaction-mode pooler. While Postgres cannot
 * be reached it retries, as the migrations at start do (`run`), or gives up the check and leaves the
 * error to the next step (`migrate`, which reports it and exits).
 */
export const requireSessions = (
  settings: RelaySettings,
  options: { readonly listen: boolean; readonly whenUnreachable: "retry" | "skip" }
): Effect.Effect<void, ConfigInvalid> => {
  const separateListen = options.listen &&
    Redacted.value(settings.listenDatabaseUrl) !== Redacted.value(settings.databaseUrl)
  const urls = [
    { variable: "RELAY_DATABASE_URL", url: settings.databaseUrl },
    ...(separateListen ? [{ variable: "RELAY_LISTEN_DATABASE_URL", url: settings.listenDatabaseUrl }] : [])
  ]
  const onUnreachable =
    (variable: string) => <A>(check: Effect.Effect<A, DatabaseUnavailable>): Effect.Effect<A | undefined> =>
      options.whenUnreachable === "skip"
        ? Effect.catch(check, () => Effect.succeed(undefined))
        : check.pipe(
          Effect.tapError((error) =>
            Effect.logWarning("session check failed; retrying").pipe(
              Effect.annotateLogs({ variable, reason: error.message })
            )
          ),
          Effect.retry({ schedule: retryMigration }),
          // A schedule without end: never reached.
          Effect.orDie
        )
  return Effect.forEach(
    urls,
    ({ url, variable }) =>
      sharedSessions(url, settings.databaseTimeout, settings.databaseCa).pipe(
        onUnreachable(variable),
        Effect.flatMap((reason) =>
          reason === undefined ? Effect.void : Effect.fail(
            new ConfigInvalid({
              variable,
              message: `Invalid ${variable}: it reaches Postgres through a transaction-mode pooler (${reason}); ` +
                `the relay needs a session per connection: point ${variable} at Postgres directly or at a ` +
                "session-mode pooler (producers may keep using the transaction-mode one)"
            })
          )
        )
      ),
    { discard: true }
  )
}
