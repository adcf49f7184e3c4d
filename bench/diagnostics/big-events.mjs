#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): a backlog of big events. On throwaway servers, inserts
 * `count` events of `kb` kB of payload each, starts `node dist/main.js` (default settings), and reads
 * its RSS from /proc every 50 ms until every event is in the stream; prints the drain time and the RSS
 * max. BIG_BASELINE=<dir> runs another build in turn (a worktree with node_modules and its build).
 *
 *   npm run build && node bench/diagnostics/big-events.mjs [count=400] [kb=900] [rounds=2]
 */
import Redis from "ioredis"
import postgres from "postgres"
import { competitors, relayBaseline, streamOf } from "../lib/competitors.mjs"
import { procSample, sleep, startPostgres, startRedis } from "../lib/servers.mjs"

const count = Number(process.argv[2] ?? 400)
const kb = Number(process.argv[3] ?? 900)
const rounds = Number(process.argv[4] ?? 2)
const builds = [
  { label: "this build", c: competitors.relay },
  ...(process.env.BIG_BASELINE ? [{ label: "baseline", c: relayBaseline(process.env.BIG_BASELINE) }] : [])
]
const pg = await startPostgres()
const rs = await startRedis()
const admin = postgres(pg.url, { max: 1, onnotice: () => {} })
const redis = new Redis(rs.url)
let n = 0
try {
  for (let round = 1; round <= rounds; round++) {
    for (const { label, c } of round % 2 ? builds : [...builds].reverse()) {
      const db = `big${++n}`
      await admin.unsafe(`CREATE DATABASE ${db}`)
      const url = pg.urlFor(db)
      await c.setup(url, rs.url)
      const sql = postgres(url, { max: 1, onnotice: () => {} })
      await sql.unsafe(`INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
        SELECT 'orders', 'Big', 'agg-' || (g % 10), jsonb_build_object('seq', g, 'pad', repeat('x', ${kb * 1000}))
        FROM generate_series(1, ${count}) g`)
      await sql.end()
      await redis.del(streamOf(c))
      const started = Date.now()
      const relay = c.start(url, rs.url)
      let rssMax = 0
      while ((await redis.xlen(streamOf(c))) < count) {
        if (!relay.isRunning()) throw new Error(`${label} exited (see .bench/logs)`)
        rssMax = Math.max(rssMax, procSample(relay.pid)?.rssKiB ?? 0)
        await sleep(50)
      }
      const seconds = (Date.now() - started) / 1000
      await relay.stop()
      console.log(
        `round ${round} ${label}: ${count} events of ${kb} kB in ${seconds.toFixed(2)} s, RSS max ${
          Math.round(rssMax / 1024)
        } MiB`
      )
      await redis.del(streamOf(c))
    }
  }
} finally {
  redis.disconnect()
  await admin.end()
  await pg.stop()
  await rs.stop()
}
