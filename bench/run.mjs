#!/usr/bin/env node
/**
 * `npm run bench`: outbox-relay against graphile-worker (tuned and default) and a classic polling
 * relay, on ONE throwaway Postgres (fsync and synchronous_commit on) and ONE throwaway Redis
 * (no persistence), each competitor in its own database and its own stream.
 *
 *   npm run bench                          full run (half an hour or more on 2 cores)
 *   npm run bench -- --quick               smoke run (20k backlog, 5 s latency runs, 1 repetition)
 *   npm run bench -- --only relay,classic  competitors: relay | graphile (tuned + defaults) | classic | floor
 *                                          (floor, the least-work relay, takes turns with the relay round by
 *                                          round in drain and latency; tuned graphile in drain)
 *   npm run bench -- --scenario drain      scenarios: drain | latency | overhead | soak | profile | enqueue |
 *                                          consumer | cluster | steady (comma-separated; enqueue: the typed
 *                                          producer helper enqueueMany against a hand-written multi-row INSERT;
 *                                          consumer: startConsumer against a least-work consumer,
 *                                          bench/consumer.mjs; cluster: the relay draining into a 3-master
 *                                          Redis Cluster against one Redis, bench/cluster.mjs; steady: relay
 *                                          and server CPU per event at 1,000 and 4,000 events/s from pgbench
 *                                          -R, relay, baseline and floor taking turns, --rounds n (default 3),
 *                                          bench/steady.mjs; off with --quick unless asked for)
 *   npm run bench -- --cpu-prof            steady only: the relay's 4,000/s turns of the first round run under
 *                                          node --cpu-prof (left out of medians and ratios); top functions by
 *                                          self time in bench/results/steady-profile-4000.txt
 *   npm run bench -- --soak 600            table-health soak for 600 s (default: 60 s in the full run,
 *                                          off with --quick); the relay soaks twice: deleting on publish,
 *                                          and with RELAY_RETENTION
 *   npm run bench -- --soak-only relay     soak only these competitors (the other scenarios still run all)
 *   npm run bench -- --drain-sizes 100000  drain only these backlog sizes (comma-separated)
 *   npm run bench -- --no-build            do not run `npm run build` first
 *   npm run bench -- --no-report           do not regenerate docs/benchmarks.md
 *   npm run bench -- --baseline <dir>      A/B: another build of the project in <dir> (dist/, sql/, lua/,
 *                                          node_modules) runs as "relay-baseline"; in drain and latency it
 *                                          takes turns with the relay, round by round (--rounds n, default
 *                                          3 with --quick, else 5; a 1M drain 3 unless --rounds), and the
 *                                          summary prints per-round ratios; in consumer its startConsumer
 *                                          runs as two more rows
 *
 * Writes bench/results/latest.json and bench/results/<timestamp>[-quick][-ab].json (git-ignored); a full
 * run also regenerates docs/benchmarks.md and docs/bench-*.svg through bench/report.mjs.
 */
import Redis from "ioredis"
import { execFile, execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { cpus, loadavg, tmpdir, totalmem } from "node:os"
import { join, resolve } from "node:path"
import { promisify } from "node:util"
import postgres from "postgres"
import { competitors, PAD, relayBaseline, root, streamOf } from "./lib/competitors.mjs"
import {
  findBinary,
  freePort,
  pgbenchArgs,
  pgSettings,
  procSample,
  sleep,
  startPostgres,
  startRedis,
  treeTicks
} from "./lib/servers.mjs"
import {
  cdfPoints,
  fmtMs,
  fmtNum,
  histogramQuantile,
  median,
  pairedRatios,
  parseHistogram,
  percentile,
  round
} from "./lib/stats.mjs"
import { latencyValue, summaryTable } from "./lib/summary.mjs"

// ---------------------------------------------------------------------------------------------- flags
const argv = process.argv.slice(2)
const flag = (name) => argv.includes(`--${name}`)
const option = (name) => {
  const i = argv.indexOf(`--${name}`)
  if (i < 0) return undefined
  const v = argv[i + 1]
  if (v === undefined || v.startsWith("--")) throw new Error(`--${name} needs a value`)
  return v
}
const known = new Set([
  "quick",
  "only",
  "scenario",
  "soak",
  "soak-only",
  "no-build",
  "no-report",
  "baseline",
  "rounds",
  "drain-sizes",
  "cpu-prof",
  "help"
])
for (const a of argv) {
  if (a.startsWith("--") && !known.has(a.slice(2))) throw new Error(`unknown flag ${a}`)
}
if (flag("help")) {
  const header = readFileSync(new URL(import.meta.url), "utf8").split("\n")
  console.log(header.slice(2, header.findIndex((line) => line.startsWith(" * Writes bench/results")) - 1).join("\n"))
  process.exit(0)
}
const quick = flag("quick")
const onlyArg = option("only")
const scenarioArg = option("scenario")
const soakArg = option("soak")
const soakOnly = option("soak-only")?.split(",")
const baselineArg = option("baseline")
const allNames = ["relay", "graphile", "graphile-default", "classic", "floor"]
const picked = onlyArg
  ? [
    ...new Set(
      onlyArg.split(",").flatMap((n) => {
        if (n === "graphile") return ["graphile", "graphile-default"]
        if (!allNames.includes(n)) {
          throw new Error(`--only: unknown competitor ${n} (relay, graphile, graphile-default, classic, floor)`)
        }
        return [n]
      })
    )
  ]
  : allNames

// ---------------------------------------------------------------------------------------------- A/B
/** The other build an A/B run compares with: it runs right after the relay, as "relay-baseline". */
const baselineDir = baselineArg === undefined ? undefined : resolve(baselineArg)
if (baselineDir !== undefined) {
  for (const part of ["dist/main.js", "sql", "lua", "node_modules"]) {
    const path = join(baselineDir, part)
    if (!existsSync(path)) throw new Error(`--baseline: ${path} is missing (a built copy of the project)`)
  }
  if (!picked.includes("relay")) throw new Error("--baseline compares with the relay: keep relay in --only")
  competitors["relay-baseline"] = relayBaseline(baselineDir)
}
const selected = picked.flatMap((n) => (n === "relay" && baselineDir ? ["relay", "relay-baseline"] : [n]))
/**
 * Names that take turns round by round: the relay with its baseline and the least-work relay (its
 * yardstick), and in drain tuned graphile-worker (the ratio to it is a target), when they run; those
 * get no turns of their own.
 */
const turnGroup = (name, scenario) => {
  const partners = ["relay-baseline", "floor", ...(scenario === "drain" ? ["graphile"] : [])]
  if (name === "relay") return ["relay", ...partners.filter((n) => selected.includes(n))]
  return partners.includes(name) && selected.includes("relay") ? [] : [name]
}
const roundsArg = option("rounds")
const abRounds = Number(roundsArg ?? (quick ? 3 : 5))
if (!Number.isInteger(abRounds) || abRounds < 1 || abRounds > 50) {
  throw new Error("--rounds: a whole number from 1 to 50")
}
const scenarios = scenarioArg
  ? scenarioArg.split(",").map((s) => {
    if (!["drain", "latency", "overhead", "soak", "profile", "enqueue", "consumer", "cluster", "steady"].includes(s)) {
      throw new Error(`--scenario: unknown ${s}`)
    }
    return s
  })
  : [
    "drain",
    "latency",
    "overhead",
    ...(soakArg || !quick ? ["soak"] : []),
    "profile",
    "enqueue",
    "consumer",
    "cluster",
    ...(quick ? [] : ["steady"])
  ]
if (
  roundsArg !== undefined && !baselineDir && !selected.includes("floor") && !scenarios.includes("consumer") &&
  !scenarios.includes("steady")
) {
  throw new Error("--rounds goes with --baseline, the least-work relay (floor), or the consumer or steady scenario")
}
if (flag("cpu-prof") && !scenarios.includes("steady")) throw new Error("--cpu-prof goes with the steady scenario")

const config = quick
  ? {
    drainSizes: [20_000],
    drainReps: 1,
    drainCapSec: 60,
    classicBacklog: 20_000,
    classicWindowSec: 15,
    defaultGraphileSizes: [20_000],
    defaultGraphileCapSec: 30,
    latencyRates: [100, 1000],
    latencySec: 5,
    latencyDrainWaitSec: 5,
    overheadWriters: [1, 8, 32],
    overheadSec: 2,
    overheadReps: 1,
    soakSec: Number(soakArg ?? 20),
    soakRate: 5000
  }
  : {
    drainSizes: [100_000, 1_000_000],
    drainReps: 3,
    drainCapSec: 300,
    classicBacklog: 20_000,
    classicWindowSec: 20,
    defaultGraphileSizes: [100_000],
    defaultGraphileCapSec: 30,
    latencyRates: [100, 1000],
    latencySec: 10,
    latencyDrainWaitSec: 5,
    overheadWriters: [1, 8, 32],
    overheadSec: 4,
    overheadReps: 5,
    soakSec: Number(soakArg ?? 60),
    soakRate: 5000
  }
const drainSizesArg = option("drain-sizes")
if (drainSizesArg !== undefined) {
  config.drainSizes = drainSizesArg.split(",").map(Number)
  if (config.drainSizes.some((n) => !Number.isInteger(n) || n < 1_000)) {
    throw new Error("--drain-sizes: backlog sizes of at least 1,000, comma-separated")
  }
}
if (!Number.isFinite(config.soakSec) || config.soakSec < 5 || config.soakSec > 7200) {
  throw new Error("--soak: seconds from 5 to 7200")
}

const log = (...a) => console.log(`[${new Date().toISOString().slice(11, 19)}]`, ...a)
const started = Date.now()

// ---------------------------------------------------------------------------------------------- build
const results = {
  meta: {},
  competitors: {},
  drain: [],
  latency: [],
  overhead: [],
  soak: [],
  profile: null,
  /** Events/s written by enqueueMany and by a hand-written multi-row INSERT (bench/enqueue.mjs). */
  enqueue: null,
  /** startConsumer (defaults, best settings) against a least-work consumer, per round (bench/consumer.mjs). */
  consumer: null,
  /** CPU per event at steady producer rates, relay / floor / baseline taking turns (bench/steady.mjs). */
  steady: null,
  /** The relay against the least-work relay, taking turns: per-round ratios and their median. */
  yardstick: { drain: [], drainVsGraphile: [], floorVsGraphile: [], latency: [] },
  /** A/B runs (--baseline): the relay and the baseline per round, their ratios and the median ratio. */
  ab: baselineDir ? { drain: [], latency: [] } : null,
  errors: []
}
const noteError = (where, error) => {
  const message = error instanceof Error ? error.message : String(error)
  log(`ERROR in ${where}: ${message}`)
  results.errors.push({ where, message: message.slice(0, 2000) })
}

if (!flag("no-build") && selected.includes("relay")) {
  log("npm run build")
  try {
    execFileSync("npm", ["run", "build"], { cwd: root, stdio: ["ignore", "pipe", "pipe"], timeout: 300_000 })
  } catch (error) {
    noteError("npm run build", `${error.message}\n${error.stdout ?? ""}${error.stderr ?? ""}`)
  }
}

/** Content hash of `dirs` under `base`: which code was measured, committed or not. */
const contentHash = (base, dirs) => {
  const h = createHash("sha256")
  const walk = (dir) => {
    const entries = readdirSync(join(base, dir), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))
    for (const e of entries) {
      const rel = join(dir, e.name)
      if (e.isDirectory()) walk(rel)
      else h.update(rel).update(readFileSync(join(base, rel)))
    }
  }
  for (const dir of dirs) walk(dir)
  return h.digest("hex").slice(0, 12)
}
const sourceHash = contentHash(root, ["src", "sql", "lua"])
const git = (...args) => {
  try {
    return execFileSync("git", args, { cwd: root, encoding: "utf8" }).trim()
  } catch {
    return ""
  }
}

// ---------------------------------------------------------------------------------------------- servers
log("starting throwaway Postgres and Redis")
const pg = await startPostgres()
const redisServer = await startRedis()
log(`postgres ${pg.url} (${pg.version}); redis ${redisServer.url}`)
const admin = postgres(pg.url, { max: 2, onnotice: () => {}, fetch_types: false })
await admin.unsafe("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
const redis = new Redis(redisServer.url)
redis.on("error", () => {})
const pgbench = findBinary("pgbench")

let cleaningUp = false
const cleanup = async () => {
  if (cleaningUp) return
  cleaningUp = true
  for (const p of live) await p.stop(5_000).catch(() => {})
  await admin.end({ timeout: 2 }).catch(() => {})
  redis.disconnect()
  await pg.stop().catch(() => {})
  await redisServer.stop().catch(() => {})
}
const live = new Set()
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.once(sig, async () => {
    log(`${sig}: stopping servers`)
    await cleanup()
    process.exit(130)
  })
}

const versions = {
  node: process.version,
  postgres: pg.version,
  redis: redisServer.version,
  graphileWorker: JSON.parse(readFileSync(join(root, "node_modules/graphile-worker/package.json"), "utf8")).version,
  effect: JSON.parse(readFileSync(join(root, "node_modules/effect/package.json"), "utf8")).version,
  postgresJs: JSON.parse(readFileSync(join(root, "node_modules/postgres/package.json"), "utf8")).version,
  ioredis: JSON.parse(readFileSync(join(root, "node_modules/ioredis/package.json"), "utf8")).version,
  pgbench: pgbench ? execFileSync(pgbench, ["--version"], { encoding: "utf8" }).trim() : null
}
const cpuModel =
  (/model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? cpus()[0]?.model ?? "unknown").trim()
results.meta = {
  startedAt: new Date(started).toISOString(),
  command: `npm run bench${argv.length ? ` -- ${argv.join(" ")}` : ""}`,
  // RELAY_* variables set for the run (they reach the relay process): part of what was measured.
  relayEnv: Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("RELAY_")).sort()),
  quick,
  selected,
  scenarios,
  config,
  machine: {
    nproc: Number(execFileSync("nproc", { encoding: "utf8" }).trim()),
    memoryMiB: Math.round(totalmem() / 2 ** 20),
    cpuModel,
    loadavgAtStart: loadavg().map((x) => round(x, 2))
  },
  versions,
  postgresSettings: pgSettings,
  redisSettings: { save: "", appendonly: "no" },
  relaySource: {
    gitHead: git("rev-parse", "--short", "HEAD"),
    dirtyFiles: git("status", "--porcelain", "src", "sql", "lua").split("\n").filter(Boolean).length,
    sourceHash
  },
  ...(baselineDir
    ? { baseline: { dir: baselineDir, buildHash: contentHash(baselineDir, ["dist", "sql", "lua"]), rounds: abRounds } }
    : {})
}
for (const name of selected) {
  const c = competitors[name]
  results.competitors[name] = { label: c.label, settings: c.settings }
}

// ---------------------------------------------------------------------------------------------- helpers
const dbName = (c, scenario) => `bench_${c.name.replace(/-/g, "_")}_${scenario}`

/** A fresh database laid out for the competitor; returns a client for it. */
const freshDb = async (c, scenario) => {
  const db = dbName(c, scenario)
  await admin.unsafe(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`)
  await admin.unsafe(`CREATE DATABASE "${db}"`)
  const url = pg.urlFor(db)
  const sql = postgres(url, { max: 10, onnotice: () => {}, fetch_types: false })
  await c.setup(url, redisServer.url, sql)
  return { db, url, sql }
}
const dropDb = async ({ db, sql }) => {
  await sql.end({ timeout: 2 }).catch(() => {})
  await admin.unsafe(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`).catch((e) => noteError(`drop ${db}`, e))
}

const startCompetitor = (c, url, env, nodeArgs) => {
  const p = c.start(url, redisServer.url, env, nodeArgs)
  live.add(p)
  p.exited.then(() => live.delete(p))
  return p
}
const stopCompetitor = async (p) => {
  const r = await p.stop()
  live.delete(p)
  return r
}

/** Samples RSS and CPU of a pid every 200 ms until stopped. */
const sampler = (pid) => {
  const samples = []
  const first = procSample(pid)
  const timer = setInterval(() => {
    const s = procSample(pid)
    // Postgres (postmaster and its backends) and Redis: the work a relay pushes into the servers.
    if (s) samples.push({ t: Date.now(), ...s, serverTicks: treeTicks([pg.pid, redisServer.pid]) })
  }, 200)
  return {
    /** Usage over the whole run, and CPU between two wall-clock instants (e.g. first and last entry). */
    stop: (fromMs, toMs) => {
      clearInterval(timer)
      const rss = samples.map((s) => s.rssKiB / 1024)
      const last = samples.at(-1)
      const at = (ms, key = "cpuTicks") => {
        // Linear interpolation of cumulative CPU ticks at `ms`.
        const i = samples.findIndex((s) => s.t >= ms)
        if (i <= 0) return i === 0 ? samples[0][key] : last?.[key]
        const a = samples[i - 1]
        const b = samples[i]
        return a[key] + ((b[key] - a[key]) * (ms - a.t)) / Math.max(1, b.t - a.t)
      }
      return {
        rssMaxMiB: rss.length ? round(Math.max(...rss), 1) : null,
        rssMedianMiB: round(median(rss), 1),
        cpuSeconds: first && last ? round((last.cpuTicks - first.cpuTicks) / 100, 2) : null,
        windowCpuSeconds: fromMs && toMs && samples.length > 1 ? round((at(toMs) - at(fromMs)) / 100, 3) : null,
        windowServerCpuSeconds: fromMs && toMs && samples.length > 1
          ? round((at(toMs, "serverTicks") - at(fromMs, "serverTicks")) / 100, 3)
          : null
      }
    }
  }
}

const pending = async (c, sql) => (await sql.unsafe(c.pendingSql))[0].n

const insertBacklog = async (c, sql, n) => {
  const chunk = c.name.startsWith("graphile") ? 50_000 : 100_000
  const t0 = performance.now()
  for (let from = 1; from <= n; from += chunk) {
    await sql.unsafe(c.backlogSql(from, Math.min(n, from + chunk - 1)))
  }
  const seconds = (performance.now() - t0) / 1000
  await sql.unsafe(`VACUUM ANALYZE ${c.table}`)
  await sql.unsafe("CHECKPOINT")
  return seconds
}

const streamSpan = async (stream) => {
  const [first] = await redis.xrange(stream, "-", "+", "COUNT", 1)
  const [last] = await redis.xrevrange(stream, "+", "-", "COUNT", 1)
  if (!first || !last) return null
  return { firstMs: Number(first[0].split("-")[0]), lastMs: Number(last[0].split("-")[0]) }
}

// ---------------------------------------------------------------------------------------------- drain
/**
 * Inserts `n` events while the competitor is stopped, starts it, and waits (polling XLEN every 50 ms)
 * until the stream has n entries, the process dies, or `capSec` passes.
 */
const drainOnce = async (c, n, capSec) => {
  const handle = await freshDb(c, "drain")
  const stream = streamOf(c)
  await redis.unlink(stream)
  const row = { competitor: c.name, backlog: n, capSec }
  try {
    log(`  ${c.name}: inserting ${fmtNum(n)} events`)
    row.insertSeconds = round(await insertBacklog(c, handle.sql, n), 2)
    const t0 = Date.now()
    const p = startCompetitor(c, handle.url)
    const s = sampler(p.pid)
    const deadline = t0 + capSec * 1000
    let len = 0
    for (let i = 0; i < capSec * 20 + 100; i++) {
      len = await redis.xlen(stream)
      if (len >= n || Date.now() > deadline || !p.isRunning()) break
      await sleep(50)
    }
    const tEnd = Date.now()
    const span = await streamSpan(stream)
    const usage = s.stop(span?.firstMs, span?.lastMs)
    const exitedEarly = !p.isRunning()
    await sleep(300)
    row.leftInTable = await pending(c, handle.sql)
    await stopCompetitor(p)
    row.delivered = len
    row.complete = len >= n
    row.wallSeconds = round((tEnd - t0) / 1000, 3)
    row.startupSeconds = span ? round((span.firstMs - t0) / 1000, 3) : null
    row.drainSeconds = span ? round((span.lastMs - span.firstMs) / 1000, 3) : null
    row.rate = span && span.lastMs > span.firstMs ? Math.round((len - 1) / ((span.lastMs - span.firstMs) / 1000)) : null
    row.wallRate = Math.round(len / ((tEnd - t0) / 1000))
    Object.assign(row, usage)
    // CPU of the competitor's process between the first and the last stream entry (sampled every 200 ms).
    row.cpuMicrosPerEvent = usage.windowCpuSeconds && len > 1
      ? round((usage.windowCpuSeconds * 1e6) / (len - 1), 1)
      : null
    // Same window, Postgres + Redis processes (a lower bound: backends that exit inside it are not counted).
    row.serverCpuMicrosPerEvent = usage.windowServerCpuSeconds && len > 1
      ? round((usage.windowServerCpuSeconds * 1e6) / (len - 1), 1)
      : null
    if (exitedEarly) row.error = `process exited during the drain:\n${p.logTail()}`
    log(
      `  ${c.name}: ${fmtNum(len)}/${fmtNum(n)} in ${row.drainSeconds}s → ${fmtNum(row.rate)} ev/s` +
        ` (startup ${row.startupSeconds}s, RSS max ${row.rssMaxMiB} MiB,` +
        ` CPU µs/ev ${row.cpuMicrosPerEvent} + servers ${row.serverCpuMicrosPerEvent}, left ${row.leftInTable})`
    )
    if (row.error) log(`  ${row.error}`)
  } catch (error) {
    row.error = error.message
    noteError(`drain ${c.name} ${n}`, error)
  } finally {
    await redis.unlink(stream)
    await dropDb(handle)
  }
  return row
}

/** Competitors in `group` take turns; odd rounds reverse the order, so going first favours neither. */
const inTurns = (group, round) => (round % 2 ? [...group].reverse() : group)

const runDrain = async () => {
  log("== drain")
  for (const name of selected.filter((n) => n !== "relay-baseline")) {
    const group = turnGroup(name, "drain")
    if (group.length === 0) continue
    const plans = name === "classic"
      ? [{ n: config.classicBacklog, cap: config.classicWindowSec, reps: 1, mode: "window" }]
      : name === "graphile-default"
      ? config.defaultGraphileSizes.map((n) => ({ n, cap: config.defaultGraphileCapSec, reps: 1, mode: "capped" }))
      : config.drainSizes.map((n) => ({
        n,
        cap: config.drainCapSec,
        reps: n >= 1_000_000 ? 1 : config.drainReps,
        mode: "full"
      }))
    for (const plan of plans) {
      const runs = Object.fromEntries(group.map((n) => [n, []]))
      // A/B: every round drains the same backlog with each build in turn (a 1M backlog at most 3 rounds
      // unless --rounds asks for more).
      const rounds = group.length > 1
        ? (plan.n >= 1_000_000 && roundsArg === undefined ? Math.min(abRounds, 3) : abRounds)
        : plan.reps
      for (let r = 0; r < rounds; r++) {
        if (group.length > 1) log(`  round ${r + 1}/${rounds}`)
        for (const n of inTurns(group, r)) runs[n].push(await drainOnce(competitors[n], plan.n, plan.cap))
      }
      for (const n of group) {
        const ok = runs[n].filter((x) => x.rate)
        const best = ok.length ? ok.slice().sort((a, b) => a.rate - b.rate)[ok.length >> 1] : runs[n][0]
        results.drain.push({
          ...best,
          mode: plan.mode,
          reps: runs[n].length,
          rates: runs[n].map((x) => x.rate),
          rate: median(runs[n].map((x) => x.rate ?? NaN)),
          rssMaxMiB: Math.max(...runs[n].map((x) => x.rssMaxMiB ?? 0)) || null
        })
      }
      if (group.includes("floor")) {
        const ratio = pairedRatios(...["relay", "floor"].map((n) => runs[n].map((x) => x.rate ?? null)))
        results.yardstick.drain.push({ backlog: plan.n, ratio: ratio.perRound, medianRatio: ratio.median })
        log(
          `  drain ${fmtNum(plan.n)}: relay / least-work relay per round ${
            ratio.perRound.join(", ")
          }; median ${ratio.median}`
        )
      }
      // Against tuned graphile-worker: the relay, and the least-work relay (what any relay reaches here).
      for (const name of ["relay", "floor"].filter((n) => group.includes(n) && group.includes("graphile"))) {
        const ratio = pairedRatios(...[name, "graphile"].map((n) => runs[n].map((x) => x.rate ?? null)))
        results.yardstick[name === "relay" ? "drainVsGraphile" : "floorVsGraphile"].push({
          backlog: plan.n,
          ratio: ratio.perRound,
          medianRatio: ratio.median
        })
        log(
          `  drain ${fmtNum(plan.n)}: ${name === "relay" ? "relay" : "least-work relay"} / tuned graphile-worker ` +
            `per round ${ratio.perRound.join(", ")}; median ${ratio.median}`
        )
      }
      if (group.includes("relay-baseline")) {
        const [a, b] = ["relay", "relay-baseline"].map((n) => runs[n].map((x) => x.rate ?? null))
        const ratio = pairedRatios(a, b)
        results.ab.drain.push({
          backlog: plan.n,
          relay: a,
          baseline: b,
          ratio: ratio.perRound,
          medianRatio: ratio.median
        })
        log(
          `  drain ${fmtNum(plan.n)}: relay / baseline events/s per round ${ratio.perRound.join(", ")};` +
            ` median ${ratio.median}`
        )
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------- latency
/**
 * Open-loop producer at `rate` events/s for `seconds`: each event is a single-statement (autocommit)
 * INSERT / add_job whose payload carries `t`, the producer's clock just before the statement (and so
 * its COMMIT) is sent. A separate Redis connection in this process reads the stream with XREAD BLOCK;
 * latency = receipt time - t, same process and clock (performance.timeOrigin + performance.now()).
 */
const now = () => performance.timeOrigin + performance.now()

const consume = (stream, fromId, runTag, expected) => {
  const reader = new Redis(redisServer.url)
  reader.on("error", () => {})
  const latencies = new Map()
  let lastId = fromId
  let stop = false
  let stopAt = Infinity
  const done = (async () => {
    for (let i = 0; i < 1_000_000 && !stop && Date.now() < stopAt; i++) {
      const reply = await reader.xread("COUNT", 5000, "BLOCK", 200, "STREAMS", stream, lastId)
      const at = now()
      if (!reply) {
        if (expected() !== null && latencies.size >= expected()) break
        continue
      }
      for (const [id, fields] of reply[0][1]) {
        lastId = id
        const i = fields.indexOf("payload")
        if (i < 0) continue
        let p
        try {
          p = JSON.parse(fields[i + 1])
        } catch {
          continue
        }
        if (p.run === runTag && !latencies.has(p.seq)) latencies.set(p.seq, at - p.t)
      }
      if (expected() !== null && latencies.size >= expected()) break
    }
  })()
  return {
    latencies,
    finish: async (waitMs) => {
      stopAt = Date.now() + waitMs
      await done.catch(() => {})
      stop = true
      reader.disconnect()
    },
    abort: () => {
      stop = true
    }
  }
}

/**
 * 8 producer connections share one schedule (event k is due at t0 + k/rate). A connection takes the
 * next due event only when it is free, stamps `t` and sends the single-statement transaction at once,
 * so `t` is taken just before the statement and its COMMIT leave the client (no client-side queueing
 * counted as relay latency). When the database cannot keep up, events go out late: the achieved rate
 * says so.
 */
const produce = async (c, clients, rate, seconds, runTag) => {
  const total = Math.round(rate * seconds)
  let next = 0
  let failed = 0
  let late = 0
  const commits = []
  // seq -> ms from `t` to the COMMIT's acknowledgement, for the latency from commit.
  const commitBySeq = new Map()
  const t0 = performance.now()
  const deadline = t0 + seconds * 1000 + 30_000
  const worker = async (conn) => {
    while (next < total && performance.now() < deadline) {
      const seq = next++
      const due = t0 + (seq * 1000) / rate
      const wait = due - performance.now()
      if (wait > 1) await sleep(wait)
      else if (wait < -5) late++
      const t = now()
      const payload = JSON.stringify({ run: runTag, seq, t, pad: PAD })
      await conn.unsafe(c.insertOne.text, [`order-${seq % 1000}`, payload], { prepare: true }).then(() => {
        const commit = now() - t
        commits.push(commit)
        commitBySeq.set(seq, commit)
      }, () => {
        failed++
      })
    }
  }
  await Promise.all(clients.map(worker))
  const elapsed = (performance.now() - t0) / 1000
  commits.sort((a, b) => a - b)
  return { sent: next, failed, late, achievedRate: Math.round(next / elapsed), commits, commitBySeq }
}

const warmUp = async (c, sql, stream) => {
  const tag = `warm-${Math.random().toString(36).slice(2)}`
  const consumer = consume(stream, "0-0", tag, () => 50)
  await produce(c, sql, 100, 0.5, tag)
  await consumer.finish(30_000)
  return consumer.latencies.size
}

/**
 * One turn of the latency scenario: starts the competitor on its database, warms it up, runs every
 * rate, stops it. Returns a row per rate, or throws.
 */
const latencyTurn = async (c, { handle, producerSql, stream }) => {
  let p
  const rows = []
  // The relay's own estimate (outbox_relay_commit_latency_seconds), read from its /metrics around each rate.
  const adminPort = c.kind === "relay" ? await freePort() : null
  const commitHistogram = async () =>
    adminPort === null ? null : await fetch(`http://127.0.0.1:${adminPort}/metrics`)
      .then((r) => r.text())
      .then((text) => parseHistogram(text, "outbox_relay_commit_latency_seconds"), () => null)
  try {
    p = startCompetitor(c, handle.url, adminPort === null ? {} : { RELAY_HTTP_PORT: String(adminPort) })
    const warmed = await warmUp(c, producerSql, stream)
    if (warmed < 50) throw new Error(`warm-up: only ${warmed}/50 events arrived within 30 s\n${p.logTail()}`)
    for (const rate of config.latencyRates) {
      const runTag = `${c.name}-${rate}-${Date.now()}`
      const [last] = await redis.xrevrange(stream, "+", "-", "COUNT", 1)
      let produced = null
      const consumer = consume(
        stream,
        last ? last[0] : "0-0",
        runTag,
        () => (produced ? produced.sent - produced.failed : null)
      )
      const histogramBefore = await commitHistogram()
      produced = await produce(c, producerSql, rate, config.latencySec, runTag)
      await consumer.finish(config.latencyDrainWaitSec * 1000)
      const histogramAfter = await commitHistogram()
      const values = [...consumer.latencies.values()]
      const delivered = values.length
      const expected = produced.sent - produced.failed
      const missing = Math.max(0, expected - delivered)
      const sorted = values.concat(Array(missing).fill(Infinity)).sort((a, b) => a - b)
      // From the producer's COMMIT acknowledgement: what the relay adds (0 when the entry was in the stream
      // before the acknowledgement reached the producer).
      const fromCommit = [...consumer.latencies].map(([seq, ms]) =>
        Math.max(0, ms - (produced.commitBySeq.get(seq) ?? 0))
      )
        .concat(Array(missing).fill(Infinity)).sort((a, b) => a - b)
      const row = {
        competitor: c.name,
        rate,
        seconds: config.latencySec,
        sent: produced.sent,
        failed: produced.failed,
        achievedRate: produced.achievedRate,
        sentLate: produced.late,
        delivered,
        missing,
        waitAfterSec: config.latencyDrainWaitSec,
        p50: round(percentile(sorted, 50), 3),
        p90: round(percentile(sorted, 90), 3),
        p99: round(percentile(sorted, 99), 3),
        max: round(percentile(sorted, 100), 3),
        mean: delivered ? round(values.reduce((a, b) => a + b, 0) / delivered, 3) : null,
        cdf: cdfPoints.map((q) => [q, round(percentile(sorted, q), 3)]),
        fromCommitP50: round(percentile(fromCommit, 50), 3),
        fromCommitP90: round(percentile(fromCommit, 90), 3),
        fromCommitP99: round(percentile(fromCommit, 99), 3),
        fromCommitMax: round(percentile(fromCommit, 100), 3),
        // The producer's own INSERT + COMMIT (no relay can see an event before this returns).
        commitP50: round(percentile(produced.commits, 50), 3),
        commitP99: round(percentile(produced.commits, 99), 3),
        // The relay's histogram over this rate (interpolated in its buckets); null for other competitors.
        relayHistogramP50: round(histogramQuantile(histogramBefore, histogramAfter, 50), 3),
        relayHistogramP99: round(histogramQuantile(histogramBefore, histogramAfter, 99), 3)
      }
      rows.push(row)
      log(
        `  ${c.name} @${rate}/s: p50 ${fmtMs(row.p50)} p90 ${fmtMs(row.p90)} p99 ${fmtMs(row.p99)} max ${
          fmtMs(row.max)
        }` +
          `; from commit p50 ${fmtMs(row.fromCommitP50)} p99 ${fmtMs(row.fromCommitP99)}` +
          (row.relayHistogramP50 === null
            ? ""
            : ` (relay's histogram p50 ${fmtMs(row.relayHistogramP50)} p99 ${fmtMs(row.relayHistogramP99)})`) +
          ` (producer's INSERT+COMMIT p50 ${fmtMs(row.commitP50)} p99 ${fmtMs(row.commitP99)})` +
          ` (${delivered}/${expected} delivered, producer ${produced.achievedRate}/s)`
      )
      await sleep(500)
    }
  } finally {
    if (p) await stopCompetitor(p)
  }
  return rows
}

const runLatency = async () => {
  log("== latency")
  for (const name of selected.filter((n) => n !== "relay-baseline")) {
    const group = turnGroup(name, "latency")
    if (group.length === 0) continue
    // Each competitor keeps its database, stream and producers across its turns; only its process restarts.
    const setups = {}
    try {
      for (const n of group) {
        const c = competitors[n]
        const handle = await freshDb(c, "latency")
        const stream = streamOf(c)
        await redis.unlink(stream)
        // One single-connection client per producer "thread" (postgres.js reserve() does not fit here).
        const producerSql = Array.from(
          { length: 8 },
          () => postgres(handle.url, { max: 1, onnotice: () => {}, fetch_types: false })
        )
        setups[n] = { handle, producerSql, stream }
      }
      const rounds = group.length > 1 ? abRounds : 1
      const turns = Object.fromEntries(group.map((n) => [n, []]))
      for (let r = 0; r < rounds; r++) {
        if (group.length > 1) log(`  round ${r + 1}/${rounds}`)
        for (const n of inTurns(group, r)) {
          try {
            turns[n].push(await latencyTurn(competitors[n], setups[n]))
          } catch (error) {
            noteError(`latency ${n}${rounds > 1 ? ` round ${r + 1}` : ""}`, error)
            turns[n].push(null)
          }
        }
      }
      for (const n of group) {
        const done = turns[n].filter(Boolean)
        if (!done.length) {
          results.latency.push({ competitor: n, error: results.errors.at(-1)?.message ?? "no turn finished" })
          continue
        }
        for (const rate of config.latencyRates) {
          const rows = done.map((t) => t.find((row) => row.rate === rate)).filter(Boolean)
          if (rows.length === 1) {
            results.latency.push(rows[0])
            continue
          }
          // Several rounds: the round with the median p50 stands for them, with every round's p50 and p99.
          const byP50 = rows.slice().sort((a, b) => latencyValue(a, "p50") - latencyValue(b, "p50"))
          const middle = byP50[(rows.length - 1) >> 1]
          results.latency.push({
            ...middle,
            rounds: rows.length,
            p50s: rows.map((x) => x.p50),
            p99s: rows.map((x) => x.p99),
            fromCommitP50s: rows.map((x) => x.fromCommitP50),
            fromCommitP99s: rows.map((x) => x.fromCommitP99)
          })
        }
      }
      const at = (n, rate, key) =>
        turns[n].map((t) => {
          const row = t?.find((x) => x.rate === rate)
          return row ? latencyValue(row, key) : null
        })
      if (group.includes("floor")) {
        for (const rate of config.latencyRates) {
          const entry = { rate }
          for (const key of ["fromCommitP50", "fromCommitP99"]) {
            const ratio = pairedRatios(at("relay", rate, key), at("floor", rate, key))
            entry[key] = { ratio: ratio.perRound, medianRatio: ratio.median }
            log(
              `  latency @${rate}/s ${key}: relay / least-work relay per round ${ratio.perRound.join(", ")};` +
                ` median ${ratio.median}`
            )
            if (group.includes("relay-baseline")) {
              // The baseline against the yardstick too: an A/B of two builds says which is nearer to it.
              const theirs = pairedRatios(at("relay-baseline", rate, key), at("floor", rate, key))
              entry.baseline ??= {}
              entry.baseline[key] = { ratio: theirs.perRound, medianRatio: theirs.median }
              log(
                `  latency @${rate}/s ${key}: baseline / least-work relay per round ${theirs.perRound.join(", ")};` +
                  ` median ${theirs.median}`
              )
            }
          }
          results.yardstick.latency.push(entry)
        }
      }
      if (group.includes("relay-baseline")) {
        for (const rate of config.latencyRates) {
          const entry = { rate }
          for (const key of ["p50", "p99"]) {
            const [a, b] = ["relay", "relay-baseline"].map((n) => at(n, rate, key))
            const ratio = pairedRatios(a, b)
            entry[key] = { relay: a, baseline: b, ratio: ratio.perRound, medianRatio: ratio.median }
            log(
              `  latency @${rate}/s ${key}: relay / baseline per round ${ratio.perRound.join(", ")};` +
                ` median ${ratio.median}`
            )
          }
          results.ab.latency.push(entry)
        }
      }
    } catch (error) {
      noteError(`latency ${name}`, error)
      results.latency.push({ competitor: name, error: error.message })
    } finally {
      for (const { handle, producerSql, stream } of Object.values(setups)) {
        await Promise.all(producerSql.map((s) => s.end({ timeout: 2 }).catch(() => {})))
        await redis.unlink(stream)
        await dropDb(handle)
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------- overhead
const pgbenchRun = async (db, script, clients, seconds, extra = []) => {
  if (!pgbench) throw new Error("pgbench not found")
  const file = join(tmpdir(), `outbox-bench-${process.pid}-${Math.random().toString(36).slice(2)}.sql`)
  writeFileSync(file, script)
  const args = pgbenchArgs(pg, { clients, db, extra, file, seconds })
  const { stdout } = await promisify(execFile)(pgbench, args, {
    timeout: (seconds + 60) * 1000,
    env: { ...process.env, PGAPPNAME: "bench-producer" }
  })
    .finally(() => rmSync(file, { force: true }))
  const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(stdout)?.[1] ?? NaN)
  const latencyMs = Number(/latency average = ([\d.]+) ms/.exec(stdout)?.[1] ?? NaN)
  const failed = Number(/number of failed transactions: (\d+)/.exec(stdout)?.[1] ?? 0)
  return { tps, latencyMs, failed, stdout }
}

const setTriggers = async (sql, table, on) => {
  const triggers = (await sql.unsafe(
    `SELECT tgname FROM pg_trigger WHERE tgrelid = '${table}'::regclass AND NOT tgisinternal`
  )).map((r) => r.tgname)
  for (const t of triggers) await sql.unsafe(`ALTER TABLE ${table} ${on ? "ENABLE" : "DISABLE"} TRIGGER "${t}"`)
  return triggers
}

const settle = async (c, sql, stream, p) => {
  if (c.name === "classic") {
    await sql.unsafe("TRUNCATE outbox_events")
  } else {
    for (let i = 0; i < 300 && (await pending(c, sql)) > 0 && p.isRunning(); i++) await sleep(100)
  }
  await redis.unlink(stream)
  await sql.unsafe("CHECKPOINT")
}

const runOverhead = async () => {
  log("== producer overhead (pgbench, single-row INSERT / add_job transactions)")
  for (const name of selected.filter((n) => n !== "graphile-default")) {
    const c = competitors[name]
    const handle = await freshDb(c, "overhead")
    const stream = streamOf(c)
    const samples = new Map()
    let p
    let triggerNames = []
    const record = (key, writers, trigger, r, backlog) => {
      if (!samples.has(key)) samples.set(key, { writers, trigger, tps: [], latencyMs: [], failed: 0, backlogAfter: [] })
      const s = samples.get(key)
      s.tps.push(round(r.tps, 0))
      s.latencyMs.push(r.latencyMs)
      s.failed += r.failed
      s.backlogAfter.push(backlog)
    }
    /** One pgbench run with the competitor's trigger on or off ("n/a": it has none). */
    const runMode = async (writers, trigger) => {
      if (!p.isRunning()) throw new Error(`${c.name} exited:\n${p.logTail()}`)
      if (c.hasTriggers) triggerNames = await setTriggers(handle.sql, "outbox_events", trigger === "on")
      const r = await pgbenchRun(handle.db, c.pgbenchScript, writers, config.overheadSec)
      if (c.hasTriggers && trigger !== "on") {
        await setTriggers(handle.sql, "outbox_events", true)
        // One more insert so the relay is woken for what the untriggered inserts left behind.
        await handle.sql.unsafe(c.insertOne.text, ["order-0", JSON.stringify({ wake: true })])
      }
      return r
    }
    const restart = async (env) => {
      if (p) await stopCompetitor(p)
      p = startCompetitor(c, handle.url, env)
      await sleep(1500)
    }
    try {
      const modes = c.hasTriggers ? ["on", "off"] : ["n/a"]
      // The relay also runs "off-polling": trigger off, the relay polling every 10 ms, so it relays
      // during the run as with the trigger on (with the trigger off and the default relay, the relay
      // sleeps: no NOTIFY, 5 s poll, and leaves both cores to the producers). The trigger's own cost
      // is "on" vs "off-polling". Both relays take turns for every writer count, so a machine that
      // drifts during the scenario shifts both alike.
      const polling = c.kind === "relay"
      // The least-work relay LISTENs here (one worker woken by the trigger): its row is the cost of a
      // NOTIFY on every commit, not of a 1 ms poll.
      if (!polling) await restart(c.name === "floor" ? { BENCH_WORKERS: "listen" } : undefined)
      const notified = async (writers, rep) => {
        if (polling) await restart()
        for (const trigger of rep % 2 ? modes.slice().reverse() : modes) {
          const r = await runMode(writers, trigger)
          record(`${writers}/${trigger}`, writers, trigger, r, await pending(c, handle.sql))
          log(`  ${c.name} writers=${writers} trigger=${trigger}: ${fmtNum(r.tps)} commits/s`)
          await settle(c, handle.sql, stream, p)
        }
      }
      const polled = async (writers) => {
        await restart({ RELAY_POLL_INTERVAL: "10" })
        const r = await runMode(writers, "off-polling")
        record(`${writers}/off-polling`, writers, "off-polling", r, await pending(c, handle.sql))
        log(`  ${c.name} writers=${writers} trigger=off, relay polling every 10 ms: ${fmtNum(r.tps)} commits/s`)
        await settle(c, handle.sql, stream, p)
      }
      for (let rep = 0; rep < config.overheadReps; rep++) {
        for (const writers of config.overheadWriters) {
          // The polling relay goes first in odd rounds, so neither side always follows the other.
          if (polling && rep % 2) await polled(writers)
          await notified(writers, rep)
          if (polling && rep % 2 === 0) await polled(writers)
        }
      }
      for (const s of samples.values()) {
        results.overhead.push({
          competitor: c.name,
          writers: s.writers,
          trigger: s.trigger,
          triggers: c.hasTriggers ? triggerNames : [],
          seconds: config.overheadSec,
          tps: s.tps,
          median: median(s.tps),
          latencyMs: round(median(s.latencyMs), 3),
          failed: s.failed,
          backlogAfter: s.backlogAfter
        })
      }
    } catch (error) {
      noteError(`overhead ${c.name}`, error)
      results.overhead.push({ competitor: c.name, error: error.message })
    } finally {
      if (p) await stopCompetitor(p)
      await redis.unlink(stream)
      await dropDb(handle)
    }
  }
}

// ---------------------------------------------------------------------------------------------- soak
/**
 * pgbench produces `soakRate` events/s (-R, 8 clients) for `soakSec`; every interval we sample the
 * table and index sizes, dead tuples, the backlog, and the mean execution time of the competitor's
 * claim statement (pg_stat_statements, statements containing SKIP LOCKED or the classic poll).
 */
const runSoak = async () => {
  log(`== soak: ${config.soakRate} events/s for ${config.soakSec}s`)
  await admin.unsafe("ALTER SYSTEM SET pg_stat_statements.track = 'top'")
  await admin.unsafe("SELECT pg_reload_conf()")
  const interval = config.soakSec <= 120 ? 5 : Math.ceil(config.soakSec / 60)
  try {
    // The relay runs twice: deleting on publish (the default) and keeping published rows
    // (RELAY_RETENTION, a fifth of the soak so the purge reaches its steady state within the run).
    const retentionSec = Math.max(10, Math.round(config.soakSec / 5))
    const soaked = (n) =>
      !["graphile-default", "floor", "relay-baseline"].includes(n) && (!soakOnly || soakOnly.includes(n))
    const runs = selected.filter(soaked).flatMap((name) =>
      name === "relay"
        ? [{ name }, {
          name,
          variant: `RELAY_RETENTION=${retentionSec} seconds`,
          env: { RELAY_RETENTION: `${retentionSec} seconds` }
        }]
        : [{ name }]
    )
    for (const run of runs) {
      const c = competitors[run.name]
      const handle = await freshDb(c, "soak")
      const stream = streamOf(c)
      const out = {
        competitor: c.name,
        variant: run.variant,
        env: run.env,
        rate: config.soakRate,
        seconds: config.soakSec,
        intervalSec: interval,
        samples: []
      }
      let p
      let cpuStart
      try {
        p = startCompetitor(c, handle.url, run.env)
        await sleep(1500)
        const dbOid = (await admin.unsafe(`SELECT oid FROM pg_database WHERE datname = '${handle.db}'`))[0].oid
        await admin.unsafe("SELECT pg_stat_statements_reset()")
        const claimStats = async () => {
          const [r] = await admin.unsafe(
            `SELECT coalesce(sum(calls), 0)::float8 AS calls, coalesce(sum(total_exec_time), 0)::float8 AS ms,
                    coalesce(sum(rows), 0)::float8 AS rows
             FROM pg_stat_statements WHERE dbid = ${dbOid}
               AND (query ILIKE '%skip locked%' OR query LIKE '%classic-claim%')`
          )
          return r
        }
        const indexSql = c.table === "outbox_events"
          ? `SELECT indexrelid::regclass::text AS name, pg_relation_size(indexrelid)::float8 AS bytes
             FROM pg_index WHERE indrelid = 'outbox_events'::regclass`
          : `SELECT indexrelid::regclass::text AS name, pg_relation_size(indexrelid)::float8 AS bytes
             FROM pg_index WHERE indrelid = '${c.table}'::regclass`
        const sample = async (t, prev) => {
          const [size] = await handle.sql.unsafe(
            `SELECT pg_total_relation_size('${c.table}')::float8 AS total,
                    pg_relation_size('${c.table}')::float8 AS heap,
                    (SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = '${c.table}'::regclass)::float8 AS live,
                    (SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = '${c.table}'::regclass)::float8 AS dead,
                    (SELECT autovacuum_count + vacuum_count FROM pg_stat_user_tables
                      WHERE relid = '${c.table}'::regclass)::float8 AS vacuums`
          )
          const idx = await handle.sql.unsafe(indexSql)
          const claim = await claimStats()
          const proc = procSample(p.pid)
          const s = {
            t,
            totalBytes: size.total,
            heapBytes: size.heap,
            indexes: Object.fromEntries(idx.map((i) => [i.name, i.bytes])),
            liveTuples: size.live,
            deadTuples: size.dead,
            vacuums: size.vacuums,
            backlog: await pending(c, handle.sql),
            streamLength: await redis.xlen(stream),
            claimCalls: claim.calls - (prev?.claim.calls ?? 0),
            claimMeanMs: claim.calls > (prev?.claim.calls ?? 0)
              ? round((claim.ms - (prev?.claim.ms ?? 0)) / (claim.calls - (prev?.claim.calls ?? 0)), 3)
              : null,
            claimRowsPerCall: claim.calls > (prev?.claim.calls ?? 0)
              ? round((claim.rows - (prev?.claim.rows ?? 0)) / (claim.calls - (prev?.claim.calls ?? 0)), 1)
              : null,
            rssMiB: proc ? round(proc.rssKiB / 1024, 1) : null
          }
          return { s, claim }
        }
        let prev = await sample(0)
        out.samples.push(prev.s)
        cpuStart = { relay: procSample(p.pid)?.cpuTicks, servers: treeTicks([pg.pid, redisServer.pid]) }
        const script = c.pgbenchScript
        const bench = pgbenchRun(handle.db, script, 8, config.soakSec, ["-R", String(config.soakRate)])
          .catch((e) => ({ error: e.message }))
        const t0 = Date.now()
        for (let i = 1; i <= Math.ceil(config.soakSec / interval) + 1; i++) {
          const target = t0 + i * interval * 1000
          await sleep(Math.max(0, target - Date.now()))
          prev = await sample(Math.round((Date.now() - t0) / 1000), prev)
          out.samples.push(prev.s)
          log(
            `  ${c.name}${run.variant ? ` (${run.variant})` : ""} t=${prev.s.t}s table ${
              fmtNum(prev.s.totalBytes / 2 ** 20, 1)
            } MiB backlog ${fmtNum(prev.s.backlog)}` +
              ` dead ${fmtNum(prev.s.deadTuples)} claim ${fmtMs(prev.s.claimMeanMs)} (${prev.s.claimCalls} calls)`
          )
          if (Date.now() - t0 > (config.soakSec + interval) * 1000) break
        }
        const r = await bench
        out.producer = r.error ? { error: r.error } : { tps: round(r.tps, 0), latencyMs: r.latencyMs }
        // CPU over the producing window: the relay's process, and Postgres + Redis (producers' work included).
        const relayTicks = procSample(p.pid)?.cpuTicks
        out.cpuSeconds = {
          relay: relayTicks !== undefined && cpuStart.relay !== undefined
            ? round((relayTicks - cpuStart.relay) / 100, 1)
            : null,
          servers: round((treeTicks([pg.pid, redisServer.pid]) - cpuStart.servers) / 100, 1)
        }
        // Let it drain, bounded, then a last sample.
        for (let i = 0; i < 200 && c.name !== "classic" && (await pending(c, handle.sql)) > 0; i++) await sleep(100)
        prev = await sample(Math.round((Date.now() - t0) / 1000), prev)
        out.samples.push({ ...prev.s, final: true })
        out.delivered = await redis.xlen(stream)
        if (!p.isRunning()) out.error = `exited:\n${p.logTail()}`
      } catch (error) {
        out.error = error.message
        noteError(`soak ${c.name}`, error)
      } finally {
        if (p) await stopCompetitor(p)
        await redis.unlink(stream)
        await dropDb(handle)
      }
      results.soak.push(out)
    }
  } finally {
    await admin.unsafe("ALTER SYSTEM SET pg_stat_statements.track = 'none'")
    await admin.unsafe("SELECT pg_reload_conf()")
  }
}

// ---------------------------------------------------------------------------------------------- main
try {
  results.meta.scenarioSeconds = {}
  results.meta.scenarioLoad = {}
  const timed = async (name, f) => {
    const t = Date.now()
    const before = loadavg()[0]
    await f()
    results.meta.scenarioSeconds[name] = Math.round((Date.now() - t) / 1000)
    // 1-minute load average before and after: other work on this shared machine shows up here.
    results.meta.scenarioLoad[name] = [round(before, 2), round(loadavg()[0], 2)]
  }
  if (scenarios.includes("drain")) await timed("drain", runDrain)
  if (scenarios.includes("latency")) await timed("latency", runLatency)
  if (scenarios.includes("overhead")) await timed("overhead", runOverhead)
  if (scenarios.includes("soak")) await timed("soak", runSoak)
  /** A scenario of its own module: logs `title`, runs it timed, keeps its result (or its error). */
  const moduleScenario = async (name, title, run) => {
    log(`== ${name}: ${title}`)
    await timed(name, async () => {
      try {
        results[name] = await run()
      } catch (error) {
        noteError(name, error)
      }
    })
  }
  const shared = { pgAdmin: admin, urlFor: pg.urlFor, redisUrl: redisServer.url, quick, log }
  if (scenarios.includes("profile") && selected.includes("relay")) {
    await moduleScenario(
      "profile",
      "where the relay's time per event goes (bench/profile.mjs)",
      async () => (await import("./profile.mjs")).runProfile(shared)
    )
  }
  if (scenarios.includes("enqueue") && selected.includes("relay")) {
    await moduleScenario(
      "enqueue",
      "typed producer helper vs a hand-written INSERT (bench/enqueue.mjs)",
      async () => (await import("./enqueue.mjs")).runEnqueue(shared)
    )
  }
  if (scenarios.includes("consumer")) {
    await moduleScenario(
      "consumer",
      "startConsumer against a least-work consumer (bench/consumer.mjs)",
      async () => (await import("./consumer.mjs")).runConsumerBench({ quick, rounds: abRounds, baselineDir, log })
    )
  }
  if (scenarios.includes("cluster") && selected.includes("relay")) {
    await moduleScenario(
      "cluster",
      "the relay on a 3-master Redis Cluster vs one Redis (bench/cluster.mjs)",
      async () =>
        (await import("./cluster.mjs")).runCluster({
          ...shared,
          rounds: roundsArg === undefined ? undefined : abRounds
        })
    )
  }
  const steadyGroup = ["relay", "relay-baseline", "floor"].filter((n) => selected.includes(n))
  if (scenarios.includes("steady") && steadyGroup.length) {
    await moduleScenario(
      "steady",
      "CPU per event at 1,000 and 4,000 events/s from pgbench -R (bench/steady.mjs)",
      async () =>
        (await import("./steady.mjs")).runSteady({
          group: steadyGroup,
          rounds: roundsArg === undefined ? 3 : abRounds,
          quick,
          cpuProf: flag("cpu-prof"),
          log,
          noteError,
          freshDb,
          dropDb,
          startCompetitor,
          stopCompetitor,
          pgbenchRun,
          redis,
          serverPids: [pg.pid, redisServer.pid]
        })
    )
  }
} catch (error) {
  noteError("bench", error)
} finally {
  results.meta.loadavgAtEnd = loadavg().map((x) => round(x, 2))
  results.meta.durationSeconds = Math.round((Date.now() - started) / 1000)
  await cleanup()
}

// ---------------------------------------------------------------------------------------------- output
const dir = join(root, "bench", "results")
mkdirSync(dir, { recursive: true })
const stamp = new Date(started).toISOString().replace(/[:.]/g, "-").slice(0, 19)
const runFile = `${stamp}${quick ? "-quick" : ""}${baselineDir ? "-ab" : ""}.json`
const json = JSON.stringify(results, null, 2)
writeFileSync(join(dir, "latest.json"), json)
writeFileSync(join(dir, runFile), json)
console.log(`\n${summaryTable(results)}`)
log(`wrote bench/results/latest.json and bench/results/${runFile} in ${results.meta.durationSeconds}s`)
// Only a full run of every competitor and scenario stands for the docs (an A/B run compares two builds).
if (!quick && !flag("no-report") && !onlyArg && !scenarioArg && !baselineDir) {
  execFileSync(process.execPath, [join(root, "bench", "report.mjs"), join(dir, "latest.json")], { stdio: "inherit" })
}
process.exit(results.errors.length ? 1 : 0)
