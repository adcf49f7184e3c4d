#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): what the size of V8's young generation does to the relay at a
 * steady rate. On throwaway servers, for each semi-space size in turn (reversed in even rounds),
 * `node --trace-gc --max-old-space-size=1024 --max-semi-space-size=<n> dist/main.js` relays `rate`
 * single-row INSERTs/s (pgbench, 8 clients) for `seconds`; prints its RSS idle and while relaying
 * (median, max; /proc every 200 ms) and its minor collections (count, median and max pause, from the
 * --trace-gc lines in `.bench/logs/relay.log`).
 *
 *   npm run build && node bench/diagnostics/young-gen.mjs [rate=1000] [seconds=20] [rounds=2]
 *
 * YOUNG_SIZES=4,8,16 (MiB; default 4,16).
 */
import { execFile } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import postgres from "postgres"
import { competitors, logDir } from "../lib/competitors.mjs"
import { pgbenchArgs, procSample, sleep, startPostgres, startRedis } from "../lib/servers.mjs"
import { median } from "../lib/stats.mjs"

const rate = Number(process.argv[2] ?? 1000)
const seconds = Number(process.argv[3] ?? 20)
const rounds = Number(process.argv[4] ?? 2)
const sizes = (process.env.YOUNG_SIZES ?? "4,16").split(",").map(Number)
const c = competitors.relay
const log = join(logDir, "relay.log")
const pg = await startPostgres()
const rs = await startRedis()
const admin = postgres(pg.url, { max: 1, onnotice: () => {} })
try {
  await admin.unsafe("CREATE DATABASE young")
  const url = pg.urlFor("young")
  await c.setup(url, rs.url)
  const script = join(tmpdir(), `young-gen-${process.pid}.sql`)
  writeFileSync(script, c.pgbenchScript)
  for (let round = 1; round <= rounds; round++) {
    for (const semi of round % 2 ? sizes : [...sizes].reverse()) {
      const relay = c.start(url, rs.url, {}, [
        "--trace-gc",
        "--max-old-space-size=1024",
        `--max-semi-space-size=${semi}`
      ])
      await sleep(2000)
      const idle = procSample(relay.pid).rssKiB / 1024
      const args = pgbenchArgs(pg, { clients: 8, db: "young", extra: ["-R", String(rate)], file: script, seconds })
      let running = true
      const pgbench = new Promise((resolve) => execFile(join(pg.bin, "pgbench"), args, () => resolve()))
        .then(() => (running = false))
      const rss = []
      const scavengesFrom = readFileSync(log, { encoding: "utf8", flag: "a+" }).length
      while (running) {
        rss.push(procSample(relay.pid).rssKiB / 1024)
        await sleep(200)
      }
      await pgbench
      const pauses = [
        ...readFileSync(log, "utf8").slice(scavengesFrom).matchAll(/Scavenge[^\n]*?, ([\d.]+) \/ [\d.]+ ms/g)
      ]
        .map((m) => Number(m[1]))
      await relay.stop()
      console.log(
        `round ${round} semi-space ${semi} MiB: RSS idle ${idle.toFixed(0)}, at ${rate}/s median ${
          median(rss).toFixed(0)
        } max ${Math.max(...rss).toFixed(0)} MiB; ${pauses.length} scavenges, median ${median(pauses).toFixed(2)} max ${
          Math.max(...pauses).toFixed(2)
        } ms`
      )
    }
  }
} finally {
  await admin.end()
  await pg.stop()
  await rs.stop()
}
