/**
 * The relay on a Redis Cluster against the same relay on one Redis: a backlog of events over 16 topics
 * (so the streams spread over the cluster's three masters), drained by `node dist/main.js` with
 * `RELAY_REDIS_CLUSTER=true` and without, rounds alternating which goes first. The rate is the drain
 * window's (first to last stream entry, as in the drain scenario); each side reports its median and the
 * per-round ratio cluster / single.
 *
 *   npm run bench -- --scenario cluster --no-report      (or as part of the full run)
 */
import { Redis } from "ioredis"
import postgres from "postgres"
import { startRedisCluster } from "../test/support/redisCluster.ts"
import { competitors, PAD } from "./lib/competitors.mjs"
import { sleep } from "./lib/servers.mjs"
import { fmtNum, median, round } from "./lib/stats.mjs"

const TOPICS = 16

const backlogSql = (from, to) =>
  `INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
   SELECT 'orders-' || (g % ${TOPICS}), 'OrderPlaced', 'order-' || (g % 1000),
          jsonb_build_object('n', g, 'total', 10.5, 'currency', 'EUR', 'pad', '${PAD}')
   FROM generate_series(${from}, ${to}) g`

/** First and last entry time (ms) over the streams, and their total length. */
const span = async (client, streams) => {
  let first = Infinity
  let last = -Infinity
  let length = 0
  for (const stream of streams) {
    const [head] = await client.xrange(stream, "-", "+", "COUNT", 1)
    const [tail] = await client.xrevrange(stream, "+", "-", "COUNT", 1)
    if (head) first = Math.min(first, Number(head[0].split("-")[0]))
    if (tail) last = Math.max(last, Number(tail[0].split("-")[0]))
    length += await client.xlen(stream)
  }
  return { first, last, length }
}

/** One drain of `n` events by the relay against `target`; the rate of its drain window. */
const drainOnce = async ({ pgAdmin, urlFor, singleUrl, target, n, capSec, log }) => {
  const relay = competitors.relay
  const db = "bench_cluster"
  await pgAdmin.unsafe(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`)
  await pgAdmin.unsafe(`CREATE DATABASE "${db}"`)
  const url = urlFor(db)
  const sql = postgres(url, { max: 2, onnotice: () => {} })
  const streams = Array.from({ length: TOPICS }, (_, i) => `${relay.streamPrefix}orders-${i}`)
  try {
    // `migrate` needs Postgres only; the single Redis's URL passes the settings check.
    await relay.setup(url, singleUrl)
    for (let from = 1; from <= n; from += 100_000) await sql.unsafe(backlogSql(from, Math.min(n, from + 99_999)))
    await sql.unsafe("VACUUM ANALYZE outbox_events")
    await sql.unsafe("CHECKPOINT")
    const t0 = Date.now()
    const p = relay.start(url, target.url, target.env)
    let seen = { length: 0 }
    while (Date.now() - t0 < capSec * 1000 && p.isRunning()) {
      seen = await span(target.client, streams)
      if (seen.length >= n) break
      await sleep(50)
    }
    await p.stop()
    const rate = seen.length >= n && seen.last > seen.first
      ? Math.round((seen.length - 1) / ((seen.last - seen.first) / 1000))
      : null
    log(`  ${target.name}: ${fmtNum(seen.length)}/${fmtNum(n)} → ${fmtNum(rate)} ev/s`)
    if (rate === null) log(`  ${target.name} did not drain:\n${p.logTail()}`)
    return rate
  } finally {
    for (const stream of streams) await target.client.unlink(stream).catch(() => {})
    await sql.end({ timeout: 2 })
    await pgAdmin.unsafe(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`)
  }
}

export const runCluster = async ({ pgAdmin, urlFor, redisUrl, quick, rounds, log = console.log }) => {
  const n = quick ? 20_000 : 100_000
  const roundCount = rounds ?? (quick ? 3 : 5)
  const cluster = await startRedisCluster({ masters: 3 })
  const targets = [
    { name: "single", url: redisUrl, env: {}, client: new Redis(redisUrl) },
    { name: "cluster", url: cluster.url, env: { RELAY_REDIS_CLUSTER: "true" }, client: cluster.client() }
  ]
  try {
    const rates = { single: [], cluster: [] }
    for (let r = 0; r < roundCount; r++) {
      log(`  round ${r + 1}/${roundCount} (${fmtNum(n)} events over ${TOPICS} topics)`)
      for (const target of r % 2 ? [...targets].reverse() : targets) {
        rates[target.name].push(await drainOnce({ pgAdmin, urlFor, singleUrl: redisUrl, target, n, capSec: 120, log }))
      }
    }
    const ratios = rates.cluster.map((c, i) => (c && rates.single[i] ? round(c / rates.single[i], 3) : null))
    const result = {
      events: n,
      topics: TOPICS,
      masters: 3,
      rounds: roundCount,
      single: { rates: rates.single, median: median(rates.single.filter(Boolean)) },
      cluster: { rates: rates.cluster, median: median(rates.cluster.filter(Boolean)) },
      ratios,
      medianRatio: round(median(ratios.filter((x) => x !== null)), 3)
    }
    log(
      `  cluster / single per round ${ratios.join(", ")}; median ${result.medianRatio} ` +
        `(medians ${fmtNum(result.cluster.median)} vs ${fmtNum(result.single.median)} ev/s)`
    )
    return result
  } finally {
    for (const t of targets) t.client.disconnect()
    await cluster.dispose()
  }
}
