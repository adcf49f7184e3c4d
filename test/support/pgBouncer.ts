/**
 * A throwaway PgBouncer (Debian's `pgbouncer`) in front of a test's Postgres: config in a temp dir,
 * trust auth, on a free port, run as the `postgres` user when we are root (PgBouncer refuses root).
 */
import { spawn } from "node:child_process"
import { chownSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { waitForPostgres } from "./pgServer.ts"
import { freePort } from "./ports.ts"
import { findBinary, isRunning, lookupUser, superviseServer } from "./processes.ts"

export interface PgBouncerHandle {
  /** `databaseUrl` with host and port replaced by the pooler's. */
  readonly url: (databaseUrl: string) => string
  readonly dispose: () => Promise<void>
}

/**
 * Startup parameters the relay's connections send that PgBouncer 1.18 would refuse ("unsupported startup
 * parameter"); ignored, they do not reach Postgres (docs/production.md#pgbouncer).
 */
export const relayStartupParameters = [
  "idle_in_transaction_session_timeout",
  "statement_timeout",
  "enable_bitmapscan",
  "enable_sort",
  "tcp_keepalives_idle",
  "tcp_keepalives_interval",
  "tcp_keepalives_count",
  "tcp_user_timeout",
  "synchronous_commit"
]

/** The binary: on PATH, else where Debian puts it. */
export const pgBouncerBinary = (): string | undefined =>
  findBinary("pgbouncer") ?? (existsSync("/usr/sbin/pgbouncer") ? "/usr/sbin/pgbouncer" : undefined)

/** Starts PgBouncer in `poolMode` in front of the Postgres at `target` (any of its databases). */
export const startPgBouncer = async (options: {
  readonly target: string
  readonly poolMode: "session" | "transaction"
  /** Server connections per database/user pair (PgBouncer's default_pool_size). */
  readonly poolSize?: number
  /** Hand out idle server connections in turn instead of the one released last (server_round_robin). */
  readonly roundRobin?: boolean
}): Promise<PgBouncerHandle> => {
  const binary = pgBouncerBinary()
  if (!binary) throw new Error("pgbouncer not found: apt-get install pgbouncer")
  const owner = process.getuid?.() === 0 ? lookupUser("postgres") : undefined
  const asOwner = owner ? { uid: owner.uid, gid: owner.gid } : {}
  const dir = mkdtempSync(join(tmpdir(), "outbox-pgbouncer-"))
  const target = new URL(options.target)
  const port = await freePort()
  const logFile = join(dir, "pgbouncer.log")
  writeFileSync(join(dir, "users.txt"), `"${decodeURIComponent(target.username)}" ""\n`)
  writeFileSync(
    join(dir, "pgbouncer.ini"),
    [
      "[databases]",
      `* = host=${target.hostname} port=${target.port}`,
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${port}`,
      "unix_socket_dir =",
      "auth_type = trust",
      `auth_file = ${join(dir, "users.txt")}`,
      `pool_mode = ${options.poolMode}`,
      `default_pool_size = ${options.poolSize ?? 20}`,
      "max_client_conn = 500",
      `server_round_robin = ${options.roundRobin ? 1 : 0}`,
      `logfile = ${logFile}`,
      `ignore_startup_parameters = ${relayStartupParameters.join(",")}`
    ].join("\n") + "\n"
  )
  if (owner) {
    for (const file of ["", "users.txt", "pgbouncer.ini"]) chownSync(join(dir, file), owner.uid, owner.gid)
  }
  const url = (databaseUrl: string) => {
    const parsed = new URL(databaseUrl)
    parsed.hostname = "127.0.0.1"
    parsed.port = String(port)
    return parsed.toString()
  }
  const tail = () => (existsSync(logFile) ? readFileSync(logFile, "utf8").split("\n").slice(-20).join("\n") : "")
  const server = await superviseServer({
    spawn: () => {
      const log = openSync(join(dir, "stdout.log"), "a")
      const child = spawn(binary, [join(dir, "pgbouncer.ini")], { ...asOwner, cwd: dir, stdio: ["ignore", log, log] })
      closeSync(log)
      return child
    },
    ready: (child) =>
      waitForPostgres(
        url(options.target),
        20_000,
        () =>
          isRunning(child)
            ? undefined
            : new Error(`pgbouncer exited (${child.exitCode ?? child.signalCode}):\n${tail()}`)
      ),
    exitSignal: "SIGTERM",
    disposeSignal: "SIGINT",
    removeFiles: () => rmSync(dir, { recursive: true, force: true, maxRetries: 3 })
  })
  return { url, dispose: server.dispose }
}
