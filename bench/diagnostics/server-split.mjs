#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): what a drain costs Postgres and Redis, apart, per event, for
 * outbox-relay and the least-work relay taking turns. On throwaway servers, each turn inserts a backlog
 * into a fresh database, starts the competitor, waits until every event is in the stream, and reads the
 * CPU ticks of the Postgres tree (postmaster and backends) and of Redis from /proc, and the statements'
 * execution time (pg_stat_statements) and the Redis commands' (INFO commandstats), per event.
 *
 *   npm run build && node bench/diagnostics/server-split.mjs [events=300000] [rounds=3]
 *
 * SPLIT_ENV='{"RELAY_BATCH_SIZE":"2000"}' adds the relay with those settings; SPLIT_BASELINE=<dir> adds
 * another build of the relay (a worktree with node_modules and `npm run build` done).
 */
import Redis from "ioredis"
import postgres from "postgres"
import { backlogDatabase, competitors, relayBaseline, streamOf } from "../lib/competitors.mjs"
import { procSample, sleep, startPostgres, startRedis, treeTicks } from "../lib/servers.mjs"
import { median, round } from "../lib/stats.mjs"

const events = Number(process.argv[2] ?? 300_000)
const rounds = Number(process.argv[3] ?? 3)
const extraEnv = process.env.SPLIT_ENV ? JSON.parse(process.env.SPLIT_ENV) : undefined
const pg = await startPostgres()
const rs = await startRedis()
const admin = postgres(pg.url, { max: 1, onnotice: () => {} })
const redis = new Redis(rs.url)
const runs = [
  { label: "relay", c: competitors.relay },
  { label: "floor", c: competitors.floor },
  ...(extraEnv ? [{ label: `relay ${JSON.stringify(extraEnv)}`, c: competitors.relay, env: extraEnv }] : []),
  ...(process.env.SPLIT_BASELINE ? [{ label: "baseline", c: relayBaseline(process.env.SPLIT_BASELINE) }] : [])
]
const results = new Map(runs.map((r) => [r.label, []]))
let n = 0
try {
  await admin.unsafe("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
  await admin.unsafe("ALTER SYSTEM SET pg_stat_statements.track = 'top'")
  await admin.unsafe("SELECT pg_reload_conf()")
  for (let round_ = 1; round_ <= rounds; round_++) {
    const order = round_ % 2 ? runs : [...runs].reverse()
    for (const { c, env, label } of order) {
      const db = `split_${n++}`
      const url = await backlogDatabase({ admin, c, db, events, pg, redis, redisUrl: rs.url })
      const stream = streamOf(c)
      await admin.unsafe("SELECT pg_stat_statements_reset()")
      await redis.config("RESETSTAT")
      const p = c.start(url, rs.url, env)
      // Ticks from the first entry on, so start-up and migration checks do not count.
      while ((await redis.xlen(stream)) === 0) await sleep(2)
      const before = { pg: treeTicks([pg.pid]), redis: procSample(rs.pid).cpuTicks, at: Date.now() }
      const startLen = await redis.xlen(stream)
      while ((await redis.xlen(stream)) < events) await sleep(5)
      const after = { pg: treeTicks([pg.pid]), redis: procSample(rs.pid).cpuTicks, at: Date.now() }
      const relayed = events - startLen
      const statements = await admin.unsafe(
        `SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 70) AS query, calls::float8 AS calls,
                total_exec_time::float8 AS ms
         FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
         WHERE d.datname = '${db}' ORDER BY total_exec_time DESC LIMIT 4`
      )
      const commands = (await redis.info("commandstats")).split("\n")
        .map((l) => /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(l))
        .filter((m) => m !== null)
        .map(([, name, calls, usec]) => ({
          name,
          calls: Number(calls),
          microsPerEvent: round(Number(usec) / events, 2)
        }))
        .sort((a, b) => b.microsPerEvent - a.microsPerEvent)
        .slice(0, 4)
      await p.stop()
      await admin.unsafe(`DROP DATABASE ${db} WITH (FORCE)`)
      const row = {
        rate: round(relayed / ((after.at - before.at) / 1000), 0),
        pgMicros: round(((after.pg - before.pg) * 1e4) / relayed, 2),
        redisMicros: round(((after.redis - before.redis) * 1e4) / relayed, 2),
        statements: statements.map((s) => ({
          query: s.query,
          calls: s.calls,
          microsPerEvent: round((s.ms * 1000) / events, 2)
        })),
        commands
      }
      results.get(label).push(row)
      console.log(
        `round ${round_} ${
          label.padEnd(8)
        } ${row.rate} ev/s, Postgres ${row.pgMicros} µs/ev, Redis ${row.redisMicros} µs/ev`
      )
      for (const s of row.statements) console.log(`    ${s.microsPerEvent} µs/ev ${s.calls} calls  ${s.query}`)
      for (const c of row.commands) console.log(`    ${c.microsPerEvent} µs/ev ${c.calls} calls  redis ${c.name}`)
    }
  }
  console.log("\nmedians")
  for (const [label, rows] of results) {
    console.log(
      `${label.padEnd(8)} ${median(rows.map((r) => r.rate))} ev/s, Postgres ${
        median(rows.map((r) => r.pgMicros))
      } µs/ev, Redis ${median(rows.map((r) => r.redisMicros))} µs/ev`
    )
  }
} finally {
  redis.disconnect()
  await admin.end({ timeout: 1 })
  await rs.stop()
  await pg.stop()
}
