/**
 * Relay CPU per event at a steady producer rate: what a relay costs on cores it shares with its producers.
 * For each rate, the relay, the baseline build (--baseline) and the least-work relay (polling every 10 ms,
 * no trigger) take turns round by round (the order rotates), each turn on a fresh database: the competitor
 * starts, pgbench produces at the rate (`-R`, 8 clients, single-row INSERT transactions) for a warm-up, the
 * measured window and a short tail, so the producers' backends are still alive when the window closes and
 * their CPU is counted. Over the window: the competitor's CPU and the Postgres + Redis process trees' CPU
 * (the producers' own work included, the same for every competitor), each per event relayed (stream
 * entries added in the window), and the producers' achieved rate (the outbox id sequence). After the tail,
 * every committed event must be in the stream. With `--cpu-prof` the relay builds' turns at the top rate in
 * the first round run under `node --cpu-prof`; those turns are left out of medians and ratios (the profiler
 * costs CPU too) and the top functions by self time over the window go to
 * bench/results/steady-profile-<rate>[-<name>].txt.
 *
 *   npm run bench -- --scenario steady --only relay,floor [--quick] [--rounds n] [--cpu-prof] [--baseline <dir>]
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { competitors, root, streamOf } from "./lib/competitors.mjs"
import { procSample, sleep, treeTicks } from "./lib/servers.mjs"
import { fmtNum, median, pairedRatios, round } from "./lib/stats.mjs"

export const steadyRates = [1000, 4000]
const CLIENTS = 8
const TAIL_SEC = 1
const DELIVERY_WAIT_MS = 15_000
/**
 * The least-work relay polls every 10 ms here, with the wake-up trigger disabled. It never marks itself
 * awake, so the trigger would NOTIFY on every commit, and those commits queue on the notify lock: the
 * producers fell far short of 4,000/s (as they did with it LISTENing, BENCH_WORKERS=listen). A 1 ms poll's
 * idle claims cost more CPU than the events they bring at these rates.
 */
export const floorEnv = { BENCH_POLL_MS: "10" }
const envOf = (c) => (c.name === "floor" ? floorEnv : undefined)

// ---------------------------------------------------------------------------------------------- profile
/** This process's monotonic clock in µs: V8 stamps profile samples with the same system clock. */
const monotonicMicros = () => Number(process.hrtime.bigint() / 1000n)

/**
 * Self time by function (name, file, line) from a .cpuprofile, as text lines: the `top` heaviest, counted
 * over the samples inside `window` ({ from, to } in monotonic µs), or over all of them when none fall in it.
 */
export const profileSummary = (profile, window, top = 25) => {
  const short = (url) => url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*?\/(dist|bench)\//, "$1/")
  const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]))
  const hitsById = new Map()
  let at = profile.startTime
  profile.samples.forEach((id, i) => {
    at += profile.timeDeltas[i] ?? 0
    if (!window || (at >= window.from && at <= window.to)) hitsById.set(id, (hitsById.get(id) ?? 0) + 1)
  })
  const inWindow = hitsById.size > 0
  const hits = inWindow
    ? hitsById
    : new Map(profile.nodes.map((n) => [n.id, n.hitCount ?? 0]))
  const byFunction = new Map()
  let total = 0
  let idle = 0
  for (const [id, count] of hits) {
    if (count === 0) continue
    const { functionName, url, lineNumber } = frames.get(id)
    total += count
    if (functionName === "(idle)") idle += count
    const key = url ? `${functionName || "(anonymous)"} ${short(url)}:${lineNumber + 1}` : functionName || "(native)"
    byFunction.set(key, (byFunction.get(key) ?? 0) + count)
  }
  const busy = total - idle
  const rows = [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top).map(([key, count]) =>
    `${String(count).padStart(7)} ${(100 * count / total).toFixed(1).padStart(5)}% ${
      key === "(idle)" ? "     " : (100 * count / busy).toFixed(1).padStart(5)
    }%  ${key}`
  )
  const span = window && inWindow
    ? `the measured window (${((window.to - window.from) / 1e6).toFixed(1)} s)`
    : `the whole process life (${((profile.endTime - profile.startTime) / 1e6).toFixed(1)} s, start-up included)`
  return [
    `${fmtNum(total)} samples over ${span}, ${fmtNum(busy)} not idle`,
    "",
    "samples  of all  of busy  function (self time)",
    ...rows
  ]
}

const writeProfile = ({ dir, competitor, rate, window, resultsDir, log }) => {
  const file = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile")).sort().at(-1)
  if (!file) throw new Error(`--cpu-prof: no .cpuprofile in ${dir} (did the relay exit cleanly?)`)
  const suffix = competitor === "relay" ? "" : `-${competitor}`
  const kept = join(resultsDir, `steady-${rate}${suffix}.cpuprofile`)
  copyFileSync(join(dir, file), kept)
  const lines = profileSummary(JSON.parse(readFileSync(kept, "utf8")), window)
  const text = [`${competitor} at ${fmtNum(rate)} events/s (${kept.replace(`${root}/`, "")})`, ...lines].join("\n")
  const out = join(resultsDir, `steady-profile-${rate}${suffix}.txt`)
  writeFileSync(out, `${text}\n`)
  log(`  profile of ${competitor} @${rate}/s, top functions by self time (${out.replace(`${root}/`, "")}):`)
  for (const line of lines) log(`    ${line}`)
  return { competitor, rate, file: out.replace(`${root}/`, ""), cpuprofile: kept.replace(`${root}/`, ""), lines }
}

// ---------------------------------------------------------------------------------------------- one turn
/**
 * One competitor at one rate on a fresh database. Snapshots (CPU ticks, the id sequence, XLEN) open and
 * close the window while pgbench runs; afterwards every committed event must reach the stream.
 */
const steadyTurn = async (ctx, c, rate, { profileDir }) => {
  const { redis, serverPids, seconds, warmSec } = ctx
  const handle = await ctx.freshDb(c, "steady")
  const stream = streamOf(c)
  await redis.unlink(stream)
  const row = { competitor: c.name, rate, profiled: Boolean(profileDir) }
  let p
  try {
    if (c.name === "floor") await handle.sql.unsafe("ALTER TABLE outbox_events DISABLE TRIGGER USER")
    p = ctx.startCompetitor(c, handle.url, envOf(c), profileDir ? ["--cpu-prof", "--cpu-prof-dir", profileDir] : [])
    await sleep(1000)
    const snapshot = async () => {
      const at = performance.now()
      const micros = monotonicMicros()
      const cpu = procSample(p.pid)?.cpuTicks
      const servers = treeTicks(serverPids)
      const [{ id }] = await handle.sql.unsafe(
        "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('outbox_events', 'id')::regclass), 0)::int AS id"
      )
      return { at, micros, cpu, servers, id, length: await redis.xlen(stream) }
    }
    const bench = ctx.pgbenchRun(handle.db, c.pgbenchScript, CLIENTS, warmSec + seconds + TAIL_SEC, [
      "-R",
      String(rate)
    ]).catch((e) => ({ error: e.message }))
    const t0 = Date.now()
    await sleep(warmSec * 1000)
    const a = await snapshot()
    await sleep(Math.max(0, t0 + (warmSec + seconds) * 1000 - Date.now()))
    const b = await snapshot()
    const produced = await bench
    if (produced.error) throw new Error(`pgbench: ${produced.error}`)
    if (a.cpu === undefined || b.cpu === undefined) throw new Error(`${c.name} exited:\n${p.logTail()}`)
    const windowSec = (b.at - a.at) / 1000
    row.windowSeconds = round(windowSec, 2)
    row.window = { from: a.micros, to: b.micros }
    row.producedInWindow = b.id - a.id
    row.relayedInWindow = b.length - a.length
    row.achievedRate = Math.round(row.producedInWindow / windowSec)
    row.cpuSeconds = round((b.cpu - a.cpu) / 100, 2)
    row.serverCpuSeconds = round((b.servers - a.servers) / 100, 2)
    row.cpuMicrosPerEvent = row.relayedInWindow > 0 ? round((row.cpuSeconds * 1e6) / row.relayedInWindow, 1) : null
    row.serverCpuMicrosPerEvent = row.relayedInWindow > 0
      ? round((row.serverCpuSeconds * 1e6) / row.relayedInWindow, 1)
      : null
    // Whole turn (warm-up, window, tail): what pgbench committed must all be in the stream.
    row.committed = Number(/number of transactions actually processed: (\d+)/.exec(produced.stdout)?.[1] ?? NaN)
    row.failed = produced.failed
    const deadline = Date.now() + DELIVERY_WAIT_MS
    row.delivered = await redis.xlen(stream)
    while (row.delivered < row.committed && Date.now() < deadline && p.isRunning()) {
      await sleep(100)
      row.delivered = await redis.xlen(stream)
    }
    row.allDelivered = row.delivered === row.committed
    if (!p.isRunning()) row.error = `${c.name} exited:\n${p.logTail()}`
    ctx.log(
      `  ${c.name} @${rate}/s${row.profiled ? " (profiled)" : ""}: CPU µs/event ${row.cpuMicrosPerEvent}` +
        ` + servers ${row.serverCpuMicrosPerEvent}; producers ${fmtNum(row.achievedRate)}/s;` +
        ` delivered ${fmtNum(row.delivered)}/${fmtNum(row.committed)}${row.allDelivered ? "" : " NOT ALL"}`
    )
  } catch (error) {
    row.error = error.message
    ctx.noteError(`steady ${c.name} @${rate}/s`, error)
  } finally {
    if (p) await ctx.stopCompetitor(p)
    await redis.unlink(stream)
    await ctx.dropDb(handle)
  }
  return row
}

// ---------------------------------------------------------------------------------------------- scenario
/** A turn's figure for medians and ratios: none from a failed or profiled turn. */
const counted = (row, key) => (row && !row.error && !row.profiled ? row[key] ?? null : null)

/**
 * `group`: the competitors taking turns (relay, relay-baseline, floor, as selected). `ctx` brings the
 * bench's helpers (freshDb, dropDb, startCompetitor, stopCompetitor, pgbenchRun, noteError), its Redis
 * client and the server pids whose process trees count as "servers".
 */
export const runSteady = async ({ group, rounds, quick, cpuProf, ...ctx }) => {
  const seconds = quick ? 10 : 30
  const warmSec = quick ? 2 : 3
  const resultsDir = join(root, "bench", "results")
  mkdirSync(resultsDir, { recursive: true })
  const turnCtx = { ...ctx, seconds, warmSec }
  const out = {
    rates: [],
    seconds,
    warmSec,
    tailSec: TAIL_SEC,
    clients: CLIENTS,
    rounds,
    group,
    floorEnv: group.includes("floor") ? floorEnv : undefined,
    profiles: []
  }
  const profiledRate = Math.max(...steadyRates)
  for (const rate of steadyRates) {
    const turns = Object.fromEntries(group.map((n) => [n, []]))
    for (let r = 0; r < rounds; r++) {
      ctx.log(`  @${fmtNum(rate)}/s round ${r + 1}/${rounds}`)
      // Rotate who goes first, so a drifting machine favours no competitor.
      for (const name of [...group.slice(r % group.length), ...group.slice(0, r % group.length)]) {
        const c = competitors[name]
        const profile = cpuProf && r === 0 && rate === profiledRate && c.kind === "relay"
        const profileDir = profile ? mkdtempSync(join(tmpdir(), "steady-prof-")) : undefined
        let row
        try {
          row = await steadyTurn(turnCtx, c, rate, { profileDir })
        } catch (error) {
          // Setting up the turn failed (its database): the round keeps its place, without figures.
          row = { competitor: name, rate, error: error.message }
          ctx.noteError(`steady ${name} @${rate}/s`, error)
        }
        turns[name].push({ ...row, round: r + 1 })
        try {
          if (profileDir && !row.error) {
            out.profiles.push(
              writeProfile({ dir: profileDir, competitor: name, rate, window: row.window, resultsDir, log: ctx.log })
            )
          }
        } catch (error) {
          ctx.noteError(`steady profile ${name} @${rate}/s`, error)
        } finally {
          if (profileDir) rmSync(profileDir, { recursive: true, force: true })
        }
      }
    }
    const medians = Object.fromEntries(group.map((n) => [n, {
      cpuMicrosPerEvent: round(median(turns[n].map((x) => counted(x, "cpuMicrosPerEvent") ?? NaN)), 1),
      serverCpuMicrosPerEvent: round(median(turns[n].map((x) => counted(x, "serverCpuMicrosPerEvent") ?? NaN)), 1),
      achievedRate: median(turns[n].map((x) => counted(x, "achievedRate") ?? NaN)),
      allDelivered: turns[n].every((x) => x.allDelivered)
    }]))
    const ratios = []
    for (const other of ["floor", "relay-baseline"]) {
      if (!group.includes("relay") || !group.includes(other)) continue
      const of = (n, key) => turns[n].map((x) => counted(x, key))
      const cpu = pairedRatios(of("relay", "cpuMicrosPerEvent"), of(other, "cpuMicrosPerEvent"))
      const server = pairedRatios(of("relay", "serverCpuMicrosPerEvent"), of(other, "serverCpuMicrosPerEvent"))
      ratios.push({ to: other, cpu, server })
      const perRound = (r) => r.perRound.map((x) => x ?? "-").join(", ")
      ctx.log(
        `  @${fmtNum(rate)}/s relay / ${other} CPU/event per round ${perRound(cpu)}; median ${cpu.median}` +
          `; servers per round ${perRound(server)}; median ${server.median}`
      )
    }
    for (const n of group) {
      if (!medians[n].allDelivered) ctx.log(`  @${fmtNum(rate)}/s ${n}: NOT every committed event was delivered`)
    }
    out.rates.push({ rate, turns, medians, ratios })
  }
  return out
}
