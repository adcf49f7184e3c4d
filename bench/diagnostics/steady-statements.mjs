#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): what the relay asks of Postgres and Redis per event at a
 * steady rate. On throwaway servers, pgbench produces `rate` single-row INSERTs/s (8 clients) for
 * `seconds` while `node dist/main.js` relays; prints the relay's CPU per event, each statement's calls
 * per 1,000 events and its execution time in Postgres (mean, standard deviation, max; pg_stat_statements)
 * and Redis commands per 1,000 events (INFO commandstats).
 *
 *   npm run build && node bench/diagnostics/steady-statements.mjs [rate=1000] [seconds=10]
 *
 * STEADY_ENV='{"RELAY_BUSY_PAUSE":"2"}' runs the relay with those settings.
 */
import Redis from "ioredis"
import { execFile } from "node:child_process"
import { writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import postgres from "postgres"
import { competitors } from "../lib/competitors.mjs"
import { procSample, sleep, startPostgres, startRedis } from "../lib/servers.mjs"

const rate = Number(process.argv[2] ?? 1000)
const seconds = Number(process.argv[3] ?? 10)
const env = process.env.STEADY_ENV ? JSON.parse(process.env.STEADY_ENV) : {}
const c = competitors.relay
const pg = await startPostgres()
const rs = await startRedis()
const admin = postgres(pg.url, { max: 1, onnotice: () => {} })
const redis = new Redis(rs.url)
try {
  await admin.unsafe("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
  await admin.unsafe("ALTER SYSTEM SET pg_stat_statements.track = 'all'")
  await admin.unsafe("SELECT pg_reload_conf()")
  await admin.unsafe("CREATE DATABASE s")
  const url = pg.urlFor("s")
  await c.setup(url, rs.url)
  const p = c.start(url, rs.url, env)
  await sleep(1500)
  const script = join(tmpdir(), `steady-${process.pid}.sql`)
  writeFileSync(script, c.pgbenchScript)
  await admin.unsafe("SELECT pg_stat_statements_reset()")
  await redis.config("RESETSTAT")
  const cpuBefore = procSample(p.pid).cpuTicks
  const pgbench = join(pg.bin, "pgbench")
  await new Promise((resolve, reject) =>
    execFile(
      pgbench,
      ["-n", "-M", "prepared", "-c", "8", "-j", "2", "-T", String(seconds), "-R", String(rate), "-f", script, url],
      (error) => (error ? reject(error) : resolve())
    )
  )
  await sleep(500)
  const cpu = (procSample(p.pid).cpuTicks - cpuBefore) / 100
  const events = await redis.xlen(`${c.streamPrefix}orders`)
  console.log(`events ${events}, relay CPU ${cpu} s = ${Math.round((cpu * 1e6) / events)} µs/event`)
  const rows = await admin.unsafe(
    `SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS query, calls::float8 AS calls,
            total_exec_time::float8 AS ms, mean_exec_time::float8 AS mean, stddev_exec_time::float8 AS sd,
            max_exec_time::float8 AS max
     FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
     WHERE d.datname = 's' AND query NOT ILIKE 'INSERT INTO outbox_events%' ORDER BY calls DESC LIMIT 15`
  )
  for (const r of rows) {
    const times = `mean ${r.mean.toFixed(3)} sd ${r.sd.toFixed(3)} max ${r.max.toFixed(1)} ms`
    console.log(`  ${((r.calls * 1000) / events).toFixed(0).padStart(6)} /1k ev  ${times.padEnd(36)} ${r.query}`)
  }
  const stats = (await redis.info("commandstats")).split("\n").filter((l) => l.startsWith("cmdstat_"))
  for (const l of stats) {
    const [, name, calls] = /cmdstat_([^:]+):calls=(\d+)/.exec(l) ?? []
    if (name) console.log(`  ${((Number(calls) * 1000) / events).toFixed(0).padStart(6)} /1k ev  redis ${name}`)
  }
  await p.stop()
} finally {
  redis.disconnect()
  await admin.end({ timeout: 1 })
  await rs.stop()
  await pg.stop()
}
