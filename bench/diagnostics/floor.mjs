#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): the floor under the latency figures on this machine. On a
 * throwaway Postgres (fsync and synchronous_commit on, as in the bench) and Redis, one connection each,
 * 500 sequential calls with 2 ms pauses: a Redis PING and XADD, a Postgres `SELECT 1`, and a
 * single-row autocommit INSERT into the relay's table with its trigger (no relay running) and without.
 * A relay's latency is at least: the producer's commit + the claim's round trip + the XADD's round trip
 * + the consumer's wake-up.
 *
 *   npm run build && node bench/diagnostics/floor.mjs
 */
import Redis from "ioredis"
import postgres from "postgres"
import { competitors } from "../lib/competitors.mjs"
import { sleep, startPostgres, startRedis } from "../lib/servers.mjs"

const c = competitors.relay
const pg = await startPostgres()
const rs = await startRedis()
const admin = postgres(pg.url, { max: 1, onnotice: () => {} })
await admin.unsafe("CREATE DATABASE floor")
const url = pg.urlFor("floor")
await c.setup(url, rs.url)
const sql = postgres(url, { max: 1, fetch_types: false, onnotice: () => {} })
const redis = new Redis(rs.url)
const q = (a, f) => a[Math.min(a.length - 1, Math.floor(a.length * f))].toFixed(3)
const time = async (name, fn, n = 500) => {
  const a = []
  for (let i = 0; i < n; i++) {
    const t = performance.now()
    await fn(i)
    a.push(performance.now() - t)
    await sleep(2)
  }
  a.sort((x, y) => x - y)
  console.log(`${name.padEnd(44)} p50 ${q(a, 0.5)} ms  p90 ${q(a, 0.9)} ms  p99 ${q(a, 0.99)} ms`)
}
try {
  await time("redis PING", () => redis.ping())
  await time("redis XADD", () => redis.xadd("s", "*", "a", "b"))
  await time("postgres SELECT 1", () => sql.unsafe("SELECT 1", [], { prepare: true }))
  const insert = (i) => sql.unsafe(c.insertOne.text, [`order-${i}`, JSON.stringify({ seq: i })], { prepare: true })
  await time("INSERT + COMMIT, relay trigger (notifies)", insert)
  await sql.unsafe("ALTER TABLE outbox_events DISABLE TRIGGER USER")
  await time("INSERT + COMMIT, no trigger", insert)
} finally {
  redis.disconnect()
  await sql.end()
  await admin.end()
  await pg.stop()
  await rs.stop()
}
