#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): the relay process's system calls per event at a steady rate
 * (pgbench -R, 8 clients), counted with `strace -c -f` attached for the run's middle seconds; first its
 * user and system time untraced. PERF=1 adds `perf record` of the process (Node's JIT symbols from
 * --perf-basic-prof) and prints self time by thread and function.
 *
 *   npm run build && node bench/diagnostics/syscalls.mjs [rate] [seconds]     (default 1000 10)
 */
import { execFileSync, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import postgres from "postgres"
import { competitors } from "../lib/competitors.mjs"
import { findBinary, pgbenchArgs, sleep, startPostgres, startRedis } from "../lib/servers.mjs"

const rate = process.argv[2] ?? "1000"
const seconds = Number(process.argv[3] ?? "10")
const c = competitors.relay
const withPerf = process.env.PERF === "1"
const phases = withPerf ? 3 : 2
const pg = await startPostgres()
const rs = await startRedis()
const admin = postgres(pg.url, { max: 1, onnotice: () => {} })
const dir = mkdtempSync(join(tmpdir(), "relay-strace-"))
let relay
try {
  await admin.unsafe("CREATE DATABASE prof")
  const url = pg.urlFor("prof")
  await c.setup(url, rs.url)
  const script = join(dir, "insert.sql")
  writeFileSync(script, c.pgbenchScript)
  relay = c.start(url, rs.url, {}, withPerf ? ["--perf-basic-prof"] : [])
  await sleep(2500)
  // The relay restarts itself once with heap flags: the newest node process running dist/main.js is it.
  const pid = execFileSync("pgrep", ["-n", "-f", "dist/main.js"], { encoding: "utf8" }).trim()
  const bench = spawn(
    findBinary("pgbench"),
    pgbenchArgs(pg, { clients: 8, db: "prof", extra: ["-R", rate], file: script, seconds: phases * seconds + 4 }),
    { stdio: "ignore" }
  )
  await sleep(2000)
  // CPU time first, untraced: user and system time of the relay process over the same span.
  const ticks = () => readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ").slice(11, 13).map(Number)
  const [u0, s0] = ticks()
  await sleep(seconds * 1000)
  const [u1, s1] = ticks()
  const perEvent = (t) => ((t * 10_000) / (Number(rate) * seconds)).toFixed(0)
  console.log(`untraced ${seconds} s: user ${perEvent(u1 - u0)} µs/event, system ${perEvent(s1 - s0)} µs/event`)
  const out = join(dir, "strace.txt")
  const tracer = spawn("strace", ["-c", "-f", "-o", out, "-p", pid], { stdio: "ignore" })
  await sleep(seconds * 1000)
  tracer.kill("SIGINT")
  await new Promise((r) => tracer.on("exit", r))
  if (withPerf) {
    const data = join(dir, "perf.data")
    const perf = spawn("perf", ["record", "-F", "999", "-p", pid, "-o", data], { stdio: "ignore" })
    await sleep(seconds * 1000)
    perf.kill("SIGINT")
    await new Promise((r) => perf.on("exit", r))
    const report = execFileSync("perf", ["report", "-i", data, "--stdio", "--sort", "comm,dso,sym"], {
      encoding: "utf8",
      maxBuffer: 1 << 26
    })
    console.log(`perf of pid ${pid} for ${seconds} s at ${rate}/s, self time (share of samples):`)
    console.log(report.split("\n").filter((l) => l.trim() && !l.startsWith("#")).slice(0, 40).join("\n"))
  }
  await new Promise((r) => bench.on("exit", r))
  console.log(`strace of pid ${pid} for ${seconds} s at ${rate}/s (${Number(rate) * seconds} events):`)
  console.log(execFileSync("head", ["-n", "25", out], { encoding: "utf8" }))
} finally {
  await relay?.stop()
  await admin.end()
  await pg.stop()
  await rs.stop()
}
