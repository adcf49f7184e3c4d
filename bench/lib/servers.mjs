/**
 * Throwaway Postgres and Redis for the benchmark, on free ports, never the shared 5432/6379.
 *
 * Same approach as test/support/pgServer.ts (initdb + postgres from /usr/lib/postgresql/<v>/bin, run
 * as the `postgres` user when we are root), but with durable settings: fsync on, synchronous_commit on,
 * full_page_writes on, everything else default except max_connections and pg_stat_statements (loaded;
 * its tracking is switched off with ALTER SYSTEM right after start, because a -c option would win over
 * ALTER SYSTEM, and switched on only by the soak scenario). Plain .mjs: the test helpers import "./x.js" paths that
 * only exist as .ts, so Node's type stripping cannot load them directly.
 */
import { execFile, execFileSync, spawn } from "node:child_process"
import { chownSync, closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer, connect } from "node:net"
import { tmpdir } from "node:os"
import { delimiter, join } from "node:path"
import { promisify } from "node:util"
import postgres from "postgres"

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

export const freePort = () =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address()
      server.close((e) => (e ? reject(e) : resolve(port)))
    })
  })

const pgBinDir = () => {
  const root = "/usr/lib/postgresql"
  if (!existsSync(root)) return undefined
  const v = readdirSync(root).filter((d) => /^\d+$/.test(d)).sort((a, b) => Number(b) - Number(a))[0]
  return v ? join(root, v, "bin") : undefined
}

export const findBinary = (name) => {
  for (const dir of [...(process.env.PATH ?? "").split(delimiter).filter(Boolean), pgBinDir()].filter(Boolean)) {
    const c = join(dir, name)
    if (existsSync(c)) return c
  }
  return undefined
}

const lookupUser = (user) => {
  try {
    const uid = Number(execFileSync("id", ["-u", user], { encoding: "utf8" }))
    const gid = Number(execFileSync("id", ["-g", user], { encoding: "utf8" }))
    return { uid, gid }
  } catch {
    return undefined
  }
}

const running = new Set()
const killAll = () => {
  for (const child of running) {
    try {
      child.kill("SIGKILL")
    } catch {}
  }
}
process.on("exit", killAll)

const waitExit = (child, ms) =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    const t = setTimeout(() => child.kill("SIGKILL"), ms)
    child.once("exit", () => {
      clearTimeout(t)
      resolve()
    })
  })

export const pollUntil = async (what, fn, timeoutMs, intervalMs = 100, abort) => {
  const deadline = Date.now() + timeoutMs
  let last
  for (;;) {
    const a = abort?.()
    if (a) throw a
    try {
      return await fn()
    } catch (e) {
      last = e
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${last?.message ?? last}`)
    await sleep(intervalMs)
  }
}

export const pgSettings = {
  fsync: "on",
  synchronous_commit: "on",
  full_page_writes: "on",
  max_connections: "200",
  shared_preload_libraries: "pg_stat_statements",
  "pg_stat_statements.max": "1000"
}

export const startPostgres = async () => {
  const bin = pgBinDir()
  if (!bin) throw new Error("no Postgres binaries under /usr/lib/postgresql/<version>/bin")
  const owner = process.getuid?.() === 0 ? lookupUser("postgres") : undefined
  if (process.getuid?.() === 0 && !owner) throw new Error("running as root and there is no `postgres` user")
  const as = owner ? { uid: owner.uid, gid: owner.gid } : {}
  const dir = mkdtempSync(join(tmpdir(), "outbox-bench-pg-"))
  if (owner) chownSync(dir, owner.uid, owner.gid)
  const dataDir = join(dir, "data")
  const logFile = join(dir, "postgres.log")
  await promisify(execFile)(join(bin, "initdb"), ["-D", dataDir, "--auth=trust", "-U", "postgres", "-E", "UTF8", "--locale=C"], { ...as, cwd: dir })
  const port = await freePort()
  const args = ["-D", dataDir, "-p", String(port), "-k", dir, "-c", "listen_addresses=127.0.0.1"]
  for (const [k, v] of Object.entries(pgSettings)) args.push("-c", `${k}=${v}`)
  const log = openSync(logFile, "a")
  const child = spawn(join(bin, "postgres"), args, { ...as, cwd: dir, stdio: ["ignore", log, log] })
  closeSync(log)
  running.add(child)
  child.once("exit", () => running.delete(child))
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`
  const tail = () => (existsSync(logFile) ? readFileSync(logFile, "utf8").split("\n").slice(-20).join("\n") : "")
  await pollUntil("postgres", async () => {
    const sql = postgres(url, { max: 1, connect_timeout: 2, onnotice: () => {} })
    try {
      await sql`select 1`
    } finally {
      await sql.end({ timeout: 1 })
    }
  }, 60_000, 100, () => (child.exitCode !== null ? new Error(`postgres exited:\n${tail()}`) : undefined))
  const version = execFileSync(join(bin, "postgres"), ["--version"], { encoding: "utf8" }).trim()
  const boot = postgres(url, { max: 1, onnotice: () => {} })
  try {
    await boot.unsafe("ALTER SYSTEM SET pg_stat_statements.track = 'none'")
    await boot.unsafe("SELECT pg_reload_conf()")
  } finally {
    await boot.end({ timeout: 1 })
  }
  return {
    url,
    port,
    bin,
    version,
    pid: child.pid,
    logFile,
    urlFor: (db) => `postgres://postgres@127.0.0.1:${port}/${db}`,
    stop: async () => {
      child.kill("SIGINT")
      await waitExit(child, 30_000)
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 })
    }
  }
}

export const pingRedis = (port) =>
  new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port })
    let buf = ""
    const done = (e) => {
      s.destroy()
      e ? reject(e) : resolve()
    }
    s.setTimeout(1000, () => done(new Error("no PONG")))
    s.once("error", done)
    s.once("connect", () => s.write("PING\r\n"))
    s.on("data", (c) => {
      buf += c
      if (buf.includes("\r\n")) buf.startsWith("+PONG") ? done() : done(new Error(buf.trim()))
    })
  })

export const startRedis = async () => {
  const binary = findBinary("redis-server")
  if (!binary) throw new Error("no redis-server binary on PATH")
  const dir = mkdtempSync(join(tmpdir(), "outbox-bench-redis-"))
  const port = await freePort()
  const child = spawn(binary, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
    "--dir", dir, "--daemonize", "no", "--logfile", ""], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] })
  let out = ""
  child.stdout.on("data", (c) => (out = (out + c).slice(-4000)))
  child.stderr.on("data", (c) => (out = (out + c).slice(-4000)))
  running.add(child)
  child.once("exit", () => running.delete(child))
  await pollUntil("redis", () => pingRedis(port), 30_000, 50, () => (child.exitCode !== null ? new Error(`redis exited:\n${out}`) : undefined))
  const version = execFileSync(binary, ["--version"], { encoding: "utf8" }).trim()
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    version,
    pid: child.pid,
    stop: async () => {
      child.kill("SIGTERM")
      await waitExit(child, 10_000)
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 })
    }
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
 * Runs pgbench with `script` (single-row INSERTs etc.) against database `db` of a server from
 * `startPostgres`: prepared statements, `clients` clients (at most 2 threads), `seconds` seconds.
 * Returns commits/s and the number of transactions.
 */
export const pgbenchTps = (pg, db, script, clients, seconds) => {
  const file = join(mkdtempSync(join(tmpdir(), "pgbench-")), "script.sql")
  writeFileSync(file, script)
  const out = execFileSync(pg.bin + "/pgbench", [
    "-n", "-M", "prepared", "-f", file, "-c", String(clients), "-j", String(Math.min(clients, 2)), "-T", String(seconds),
    "-h", "127.0.0.1", "-p", String(pg.port), "-U", "postgres", db
  ], { encoding: "utf8" })
  return {
    tps: Number(/tps = ([\d.]+)/.exec(out)[1]),
    transactions: Number(/number of transactions actually processed: (\d+)/.exec(out)[1])
  }
}
