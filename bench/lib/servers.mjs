/**
 * The benchmark's throwaway Postgres and Redis, on free ports, never the shared 5432/6379: the test
 * suite's own servers (test/support, loaded through Node's type stripping), with bench settings.
 * Postgres keeps its durability (fsync, synchronous_commit and full_page_writes on, as producers run
 * it), everything else default except max_connections and pg_stat_statements (loaded; its tracking
 * is switched off with ALTER SYSTEM right after start, because a -c option would win over ALTER
 * SYSTEM, and switched on only by the soak scenario). Plus what the bench measures with: /proc
 * samples of a process tree, and pgbench.
 */
import { execFileSync } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, realpathSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import postgres from "postgres"
import { localPostgres, startPostgresServer } from "../../test/support/pgServer.ts"
import { freePort } from "../../test/support/ports.ts"
import { findBinary } from "../../test/support/processes.ts"
import { startRedisServer } from "../../test/support/redisServer.ts"
import { sleep } from "../../test/support/wait.ts"

export { findBinary, freePort, sleep }

export const pgSettings = {
  fsync: "on",
  synchronous_commit: "on",
  full_page_writes: "on",
  max_connections: "200",
  shared_preload_libraries: "pg_stat_statements",
  "pg_stat_statements.max": "1000"
}

/** A durable throwaway Postgres from the local binaries (the bench samples its processes' CPU). */
export const startPostgres = async () => {
  const local = localPostgres()
  if (!local) throw new Error("no local Postgres binaries (initdb, postgres; as root also a `postgres` user)")
  const server = await startPostgresServer({ durable: true, settings: pgSettings })
  const boot = postgres(server.url, { max: 1, onnotice: () => {} })
  try {
    await boot.unsafe("ALTER SYSTEM SET pg_stat_statements.track = 'none'")
    await boot.unsafe("SELECT pg_reload_conf()")
  } catch (error) {
    await server.dispose()
    throw error
  } finally {
    await boot.end({ timeout: 1 })
  }
  return {
    url: server.url,
    port: server.port,
    // Where pgbench lives too (a postgres on PATH may be a lone symlink to it).
    bin: dirname(realpathSync(local.postgres)),
    version: execFileSync(local.postgres, ["--version"], { encoding: "utf8" }).trim(),
    pid: server.pid(),
    urlFor: (db) => `postgres://postgres@127.0.0.1:${server.port}/${db}`,
    stop: server.dispose
  }
}

/** A throwaway Redis without persistence, from the local `redis-server`. */
export const startRedis = async () => {
  const binary = findBinary("redis-server")
  if (!binary) throw new Error("no redis-server binary on PATH")
  const server = await startRedisServer()
  return {
    url: server.url,
    port: server.port,
    version: execFileSync(binary, ["--version"], { encoding: "utf8" }).trim(),
    pid: server.pid(),
    stop: server.dispose
  }
}

/** VmRSS (KiB) and cumulative CPU ticks of a pid, or undefined when it is gone. */
export const procSample = (pid) => {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8")
    const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN)
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    const ticks = Number(fields[11]) + Number(fields[12])
    return { rssKiB: rss, cpuTicks: ticks, userTicks: Number(fields[11]), sysTicks: Number(fields[12]) }
  } catch {
    return undefined
  }
}

/** Cumulative CPU ticks of `rootPids` and their direct children (Postgres backends), read from /proc. */
export const treeTicks = (rootPids) => {
  let ticks = 0
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      const pid = Number(entry)
      const ppid = Number(fields[1])
      if (rootPids.includes(pid) || rootPids.includes(ppid)) ticks += Number(fields[11]) + Number(fields[12])
    } catch {}
  }
  return ticks
}

/**
 * pgbench's arguments as the bench runs it against database `db` of `pg` (a server from
 * `startPostgres`): script `file`, prepared statements, `clients` clients on at most 2 threads,
 * `seconds` seconds; `extra` (e.g. `-R 1000`) before the database name.
 */
export const pgbenchArgs = (pg, { clients, db, extra = [], file, seconds }) => [
  "-n",
  "-M",
  "prepared",
  "-f",
  file,
  "-c",
  String(clients),
  "-j",
  String(Math.min(clients, 2)),
  "-T",
  String(seconds),
  "-h",
  "127.0.0.1",
  "-p",
  String(pg.port),
  "-U",
  "postgres",
  ...extra,
  db
]

/**
 * Runs pgbench with `script` (single-row INSERTs etc.) against database `db` of a server from
 * `startPostgres`: prepared statements, `clients` clients (at most 2 threads), `seconds` seconds.
 * Returns commits/s and the number of transactions.
 */
export const pgbenchTps = (pg, db, script, clients, seconds) => {
  const file = join(mkdtempSync(join(tmpdir(), "pgbench-")), "script.sql")
  writeFileSync(file, script)
  const out = execFileSync(pg.bin + "/pgbench", pgbenchArgs(pg, { clients, db, file, seconds }), { encoding: "utf8" })
  return {
    tps: Number(/tps = ([\d.]+)/.exec(out)[1]),
    transactions: Number(/number of transactions actually processed: (\d+)/.exec(out)[1])
  }
}
