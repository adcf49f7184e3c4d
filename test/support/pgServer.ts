/**
 * Throwaway Postgres servers: one for the whole test run (globalSetup), extra ones for tests that stop,
 * crash and restart the database under the relay, and bench/'s durable one. Spawned from local binaries
 * in a temp dir (as the `postgres` user when we are root: Postgres refuses to run as root), or, without
 * binaries, a testcontainers `postgres:16-alpine`. Either way the port survives stop/start.
 */
import { execFile, spawn } from "node:child_process"
import {
  chmodSync,
  chownSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync
} from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import postgres from "postgres"
import { startFixedPortContainer } from "./containers.ts"
import { freePort } from "./ports.ts"
import { findBinary, isRunning, lookupUser, superviseServer } from "./processes.ts"
import { pollUntil } from "./wait.ts"

export type PgStopMode = "fast" | "immediate"

export interface PgServerOptions {
  /**
   * Keep Postgres's own durability (fsync, full_page_writes, a synced initdb), as bench/ measures it.
   * Default false: a test server trades crash safety for speed.
   */
  readonly durable?: boolean
  /** Extra `-c name=value` settings, applied after the defaults. */
  readonly settings?: Readonly<Record<string, string>>
  /**
   * Serve TLS with this certificate and key (PEM files, copied into the server's dir) and accept only
   * TLS connections over TCP (`hostssl` in pg_hba.conf): `url` then carries `sslmode=require`. Local
   * binaries only.
   */
  readonly tls?: { readonly cert: string; readonly key: string }
}

export interface PgServerHandle {
  readonly kind: "spawned" | "container"
  /** URL of the `postgres` database, user `postgres`, trust auth. */
  readonly url: string
  readonly port: number
  /** fast: roll back and disconnect clients, then shut down; immediate: crash-like, recovery on start. */
  readonly stop: (mode?: PgStopMode) => Promise<void>
  /** Starts it again on the same port with the same data; resolves once it accepts connections. */
  readonly start: () => Promise<void>
  /** Stops it and removes its data. Idempotent. */
  readonly dispose: () => Promise<void>
  /** The postmaster's process id while it runs; undefined in a container. */
  readonly pid: () => number | undefined
}

/** `url` with its path (the database name) replaced. */
export const databaseUrl = (url: string, database: string): string => {
  const parsed = new URL(url)
  parsed.pathname = `/${encodeURIComponent(database)}`
  return parsed.toString()
}

/** Resolves once `url` accepts a connection and answers `select 1`. */
export const waitForPostgres = (url: string, timeoutMs: number, abort?: () => Error | undefined): Promise<void> =>
  pollUntil(`postgres at ${url}`, async () => {
    const sql = postgres(url, { max: 1, connect_timeout: 2, idle_timeout: 1, onnotice: () => {} })
    try {
      await sql`select 1`
    } finally {
      await sql.end({ timeout: 1 })
    }
  }, { timeoutMs, intervalMs: 100, ...(abort ? { abort } : {}) })

interface LocalPostgres {
  readonly initdb: string
  readonly postgres: string
  /** Set when we are root: the user the server runs as. */
  readonly owner: { readonly uid: number; readonly gid: number } | undefined
}

/** The local binaries (and, as root, the `postgres` user), or undefined when Postgres cannot be spawned. */
export const localPostgres = (): LocalPostgres | undefined => {
  const initdb = findBinary("initdb")
  const server = findBinary("postgres")
  if (!initdb || !server) return undefined
  if (process.getuid?.() !== 0) return { initdb, postgres: server, owner: undefined }
  const owner = lookupUser("postgres")
  return owner ? { initdb, postgres: server, owner } : undefined
}

const tail = (file: string): string =>
  existsSync(file) ? readFileSync(file, "utf8").split("\n").slice(-20).join("\n") : "(no log)"

/** `-c` settings: the speed-over-safety defaults of a test server unless durable, then `options.settings`. */
const serverSettings = (options: PgServerOptions): Array<string> => {
  const settings: Record<string, string> = {
    ...(options.durable ? {} : { fsync: "off", full_page_writes: "off" }),
    max_connections: "300",
    ...options.settings
  }
  return Object.entries(settings).flatMap(([name, value]) => ["-c", `${name}=${value}`])
}

const spawnLocal = async (bins: LocalPostgres, options: PgServerOptions): Promise<PgServerHandle> => {
  const dir = mkdtempSync(join(tmpdir(), "outbox-pg-"))
  const removeDir = () => rmSync(dir, { recursive: true, force: true, maxRetries: 3 })
  const asOwner = bins.owner ? { uid: bins.owner.uid, gid: bins.owner.gid } : {}
  if (bins.owner) chownSync(dir, bins.owner.uid, bins.owner.gid)
  const dataDir = join(dir, "data")
  const logFile = join(dir, "postgres.log")
  try {
    await promisify(execFile)(
      bins.initdb,
      [
        "-D",
        dataDir,
        "--auth=trust",
        "-U",
        "postgres",
        "-E",
        "UTF8",
        "--locale=C",
        ...(options.durable ? [] : ["--no-sync"])
      ],
      { ...asOwner, cwd: dir }
    )
  } catch (error) {
    removeDir()
    const stderr = (error as { stderr?: string }).stderr ?? ""
    throw new Error(`initdb failed: ${(error as Error).message}\n${stderr}`)
  }
  const tlsSettings: Array<string> = []
  if (options.tls) {
    // Postgres wants its key owned by the server's user and readable by no one else.
    for (const [from, to] of [[options.tls.cert, "server.crt"], [options.tls.key, "server.key"]] as const) {
      copyFileSync(from, join(dataDir, to))
      chmodSync(join(dataDir, to), 0o600)
      if (bins.owner) chownSync(join(dataDir, to), bins.owner.uid, bins.owner.gid)
    }
    writeFileSync(join(dataDir, "pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 trust\n")
    tlsSettings.push("-c", "ssl=on", "-c", "ssl_cert_file=server.crt", "-c", "ssl_key_file=server.key")
  }
  const port = await freePort()
  const url = `postgres://postgres@127.0.0.1:${port}/postgres${options.tls ? "?sslmode=require" : ""}`
  const args = [
    "-D",
    dataDir,
    "-p",
    String(port),
    "-k",
    dir,
    "-c",
    "listen_addresses=127.0.0.1",
    ...tlsSettings,
    ...serverSettings(options)
  ]
  const server = await superviseServer({
    spawn: () => {
      const log = openSync(logFile, "a")
      const child = spawn(bins.postgres, args, { ...asOwner, cwd: dir, stdio: ["ignore", log, log] })
      closeSync(log)
      return child
    },
    ready: (child) =>
      waitForPostgres(url, 60_000, () =>
        isRunning(child)
          ? undefined
          : new Error(`postgres exited (${child.exitCode ?? child.signalCode}) on port ${port}:\n${tail(logFile)}`)),
    exitSignal: "SIGQUIT",
    disposeSignal: "SIGQUIT",
    removeFiles: removeDir
  })
  const stop = (mode: PgStopMode = "fast") => server.signal(mode === "fast" ? "SIGINT" : "SIGQUIT")
  return { kind: "spawned", url, port, stop, start: server.start, dispose: server.dispose, pid: server.pid }
}

const startContainer = async (options: PgServerOptions): Promise<PgServerHandle> => {
  if (options.tls) throw new Error("a TLS Postgres needs the local binaries (apt-get install postgresql)")
  const container = await startFixedPortContainer({
    image: "postgres:16-alpine",
    containerPort: 5432,
    environment: { POSTGRES_HOST_AUTH_METHOD: "trust", POSTGRES_USER: "postgres" },
    command: ["postgres", ...serverSettings(options)],
    // The image's entrypoint runs a temporary server first: the second "ready" is the real one.
    readyLog: /database system is ready to accept connections/,
    readyLogTimes: 2
  })
  const url = `postgres://postgres@${container.host}:${container.port}/postgres`
  try {
    await waitForPostgres(url, 60_000)
  } catch (error) {
    await container.dispose()
    throw error
  }
  return {
    kind: "container",
    url,
    port: container.port,
    stop: (mode = "fast") => container.signal(mode === "fast" ? "SIGINT" : "SIGQUIT"),
    start: async () => {
      await container.start()
      await waitForPostgres(url, 60_000)
    },
    dispose: container.dispose,
    pid: () => undefined
  }
}

/** A throwaway Postgres, from local binaries when there are any, else from Docker. */
export const startPostgresServer = async (options: PgServerOptions = {}): Promise<PgServerHandle> => {
  const bins = localPostgres()
  return bins ? spawnLocal(bins, options) : startContainer(options)
}
