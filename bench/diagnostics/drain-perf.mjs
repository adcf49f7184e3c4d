#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): where the machine's CPU goes while outbox-relay and the
 * least-work relay drain the same backlog, by process and function (`perf record -a`, all cores,
 * cpu-clock at 499 Hz), one after the other on throwaway servers.
 *
 *   npm run build && node bench/diagnostics/drain-perf.mjs [events=1000000]
 */
import Redis from "ioredis"
import { execFileSync, spawn } from "node:child_process"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import postgres from "postgres"
import { backlogDatabase, competitors, streamOf } from "../lib/competitors.mjs"
import { sleep, startPostgres, startRedis } from "../lib/servers.mjs"

const events = Number(process.argv[2] ?? 1_000_000)
const dir = mkdtempSync(join(tmpdir(), "drain-perf-"))
const pg = await startPostgres()
const rs = await startRedis()
const admin = postgres(pg.url, { max: 1, onnotice: () => {} })
const redis = new Redis(rs.url)
try {
  for (const [i, c] of [competitors.relay, competitors.floor].entries()) {
    const db = `perf_${i}`
    const url = await backlogDatabase({ admin, c, db, events, pg, redis, redisUrl: rs.url })
    const stream = streamOf(c)
    const p = c.start(url, rs.url)
    while ((await redis.xlen(stream)) === 0) await sleep(2)
    const data = join(dir, `${c.name}.data`)
    const perf = spawn("perf", ["record", "-a", "-F", "499", "-o", data], { stdio: "ignore" })
    const t0 = Date.now()
    while ((await redis.xlen(stream)) < events) await sleep(5)
    const seconds = (Date.now() - t0) / 1000
    perf.kill("SIGINT")
    await new Promise((r) => perf.on("exit", r))
    await p.stop()
    console.log(`\n== ${c.name}: ${events} events in ${seconds.toFixed(1)} s`)
    const report = (sort, n) =>
      execFileSync("perf", ["report", "-i", data, "--stdio", "--sort", sort, "--percent-limit", "0.7"], {
        encoding: "utf8",
        maxBuffer: 1 << 26
      }).split("\n").filter((l) => l.trim() && !l.startsWith("#")).slice(0, n).join("\n")
    console.log(report("comm", 12))
    console.log(report("comm,dso,sym", 45))
  }
} finally {
  redis.disconnect()
  await admin.end({ timeout: 1 })
  await rs.stop()
  await pg.stop()
}
