#!/usr/bin/env node
/**
 * Where the relay's time per event goes. Against throwaway servers (the bench's own when run by
 * `npm run bench`, else started here), with the relay's own SQL and Lua:
 *
 *  1. the parts, raw (postgres.js and ioredis called directly, exactly as the relay calls them, with
 *     the claim statement from dist/relay/Statements.js and lua/publish.lua): pipelined BEGIN + claim of
 *     1,000 rows, EVALSHA publish of those 1,000 events (one stream; and 5 streams, one call each,
 *     concurrently as the relay does), COMMIT, and the HDEL of the in-flight markers;
 *  2. the whole batch as the relay daemon itself reports it (`outbox_batch_seconds`,
 *     `outbox_publish_seconds`, `outbox_batch_size` from /metrics) while it drains a backlog, and the
 *     end-to-end drain rate (first to last stream entry).
 *
 * Runtime overhead = whole batch - (claim + publish + commit); between batches = 1/rate - whole batch.
 *
 *   node bench/profile.mjs [--quick]      (run `npm run build` first; `npm run bench` does)
 */
import Redis from "ioredis"
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import postgres from "postgres"
import { competitors, PAD, root } from "./lib/competitors.mjs"
import { freePort, sleep, startPostgres, startRedis } from "./lib/servers.mjs"
import { median, round } from "./lib/stats.mjs"

const BATCH = 1000

const hr = () => Number(process.hrtime.bigint()) / 1e6

const parseMetrics = (text) => {
  const get = (name) => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)`, "m").exec(text)
    return m ? Number(m[1]) : null
  }
  return {
    batchSecondsSum: get("outbox_batch_seconds_sum"),
    batchSecondsCount: get("outbox_batch_seconds_count"),
    publishSecondsSum: get("outbox_publish_seconds_sum"),
    publishSecondsCount: get("outbox_publish_seconds_count"),
    batchSizeSum: get("outbox_batch_size_sum"),
    batchSizeCount: get("outbox_batch_size_count"),
    relayed: get("outbox_events_relayed_total")
  }
}

/** Raw parts, `reps` batches of 1,000 rows over `streams` topics. */
const rawParts = async ({ url, redisUrl, streams, reps, log }) => {
  const mod = await import(`${pathToFileURL(join(root, "dist", "relay", "Statements.js")).href}?t=${Date.now()}`)
  const text = mod.statements("public")
  const claimSql = text.claimBatch
  const params = [BATCH]
  if (/\$2\b/.test(claimSql)) {
    // Slots parameter (sql/0004_slots.sql): claim from every slot, as a lone relay owning them all does.
    const n = mod.slotCount ?? 64
    params.push(mod.slotMask([...Array(n).keys()]))
  }
  const { publishScript } = await import(pathToFileURL(join(root, "dist", "relay", "4-Publish.js")).href)
  const redis = new Redis(redisUrl)
  const sha = await redis.script("LOAD", publishScript)
  // The script's keys for a stream, in its KEYS order (src/relay/4-Publish.ts).
  const keys = (
    stream
  ) => [stream, `{${stream}}:attempts`, `{${stream}}:orphans`, `{${stream}}:fence`, `{${stream}}:inflight`]
  const sql = postgres(url, { max: 1, onnotice: () => {}, fetch_types: false, idle_timeout: 0 })
  // The claim only runs on the session it names (its third parameter): this one.
  if (/\$3\b/.test(claimSql)) params.push(String((await sql.unsafe("SELECT pg_backend_pid() AS pid"))[0].pid))
  const filler = postgres(url, { max: 1, onnotice: () => {}, fetch_types: false })
  const parts = { claim: [], publish: [], commit: [], forget: [], batch: [] }
  const prefix = `bench:profile${streams}:`
  try {
    // A backlog of exactly the batches to claim, as in a drain (the claims walk past the rows deleted before).
    await filler.unsafe(
      `INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
       SELECT 'orders' || CASE WHEN ${streams} > 1 THEN '-' || (g % ${streams}) ELSE '' END,
              'OrderPlaced', 'order-' || (g % 1000),
              jsonb_build_object('n', g, 'total', 10.5, 'currency', 'EUR', 'pad', '${PAD}')
       FROM generate_series(1, ${BATCH * (reps + 2)}) g`
    )
    await filler.unsafe("VACUUM ANALYZE outbox_events")
    for (let rep = 0; rep < reps + 2; rep++) {
      const t0 = hr()
      const [, rows] = await Promise.all([sql.unsafe("BEGIN"), sql.unsafe(claimSql, params, { prepare: true })])
      const t1 = hr()
      const sorted = [...rows].sort((a, b) => (a.id.length - b.id.length) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      const groups = new Map()
      for (const r of sorted) {
        const key = prefix + r.topic
        if (!groups.has(key)) groups.set(key, [])
        groups.get(key).push(r)
      }
      const replies = await Promise.all([...groups].map(([stream, group]) => {
        // No fence pairs, nothing to forget or abandon, then this call's token and record.
        const args = ["0", "3600000", "0", "0", "0", `p${rep}`, `|${group.map((r) => r.event_id).join(",")}`]
        for (const r of group) {
          args.push(
            r.event_id,
            r.event_type,
            r.topic,
            r.aggregate_type,
            r.aggregate_id,
            r.tenant_id,
            String(r.schema_version),
            r.occurred_at,
            r.payload,
            r.headers
          )
        }
        return redis.evalsha(sha, 5, ...keys(stream), ...args)
      }))
      const t2 = hr()
      await sql.unsafe("COMMIT")
      const t3 = hr()
      // The committed attempt's record goes (the relay sends this with its next call for the stream).
      await Promise.all(
        [...groups].map(([stream]) =>
          redis.evalsha(sha, 5, ...keys(stream), "0", "3600000", "0", "1", `p${rep}`, "0", "", "")
        )
      )
      const t4 = hr()
      const published = replies.reduce((n, r) => n + (typeof r === "number" ? r : r.length), 0)
      if (rows.length !== BATCH || published !== BATCH) {
        throw new Error(`claimed ${rows.length}, published ${published}, expected ${BATCH}`)
      }
      if (rep >= 2) {
        parts.claim.push(t1 - t0)
        parts.publish.push(t2 - t1)
        parts.commit.push(t3 - t2)
        parts.forget.push(t4 - t3)
        parts.batch.push(t4 - t0)
      }
    }
  } finally {
    for (const k of await redis.keys(`*${prefix}*`)) await redis.unlink(k)
    redis.disconnect()
    await sql.end({ timeout: 1 })
    await filler.end({ timeout: 1 })
  }
  const us = (xs) => round((median(xs) * 1000) / BATCH, 2)
  const out = {
    streams,
    reps,
    claimParams: params.length,
    msPerBatch: Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, round(median(v), 3)])),
    usPerEvent: Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, us(v)]))
  }
  log(
    `  raw parts, ${streams} stream(s), median of ${reps}: claim ${out.usPerEvent.claim} µs/ev,` +
      ` publish ${out.usPerEvent.publish} µs/ev,` +
      ` commit ${out.usPerEvent.commit} µs/ev, forget ${out.usPerEvent.forget} µs/ev`
  )
  return out
}

/** The daemon draining `n` events over `streams` topics; its own metrics and the stream span. */
const daemonDrain = async ({ url, redisUrl, streams, n, log, env = {} }) => {
  const admin = postgres(url, { max: 1, onnotice: () => {}, fetch_types: false })
  const redis = new Redis(redisUrl)
  const prefix = "bench:relay:"
  const topics = streams > 1 ? Array.from({ length: streams }, (_, i) => `orders-${i}`) : ["orders"]
  const port = await freePort()
  let p
  try {
    await admin.unsafe(
      `INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
       SELECT 'orders' || CASE WHEN ${streams} > 1 THEN '-' || (g % ${streams}) ELSE '' END,
              'OrderPlaced', 'order-' || (g % 1000),
              jsonb_build_object('n', g, 'total', 10.5, 'currency', 'EUR', 'pad', '${PAD}')
       FROM generate_series(1, ${n}) g`
    )
    await admin.unsafe("VACUUM ANALYZE outbox_events")
    await admin.unsafe("CHECKPOINT")
    p = competitors.relay.start(url, redisUrl, { RELAY_HTTP_PORT: String(port), ...env })
    const deadline = Date.now() + 300_000
    let len = 0
    for (let i = 0; i < 10_000 && Date.now() < deadline && p.isRunning(); i++) {
      len = 0
      for (const t of topics) len += await redis.xlen(prefix + t)
      if (len >= n) break
      await sleep(50)
    }
    await sleep(300)
    const metrics = parseMetrics(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())
    let first = Infinity
    let last = 0
    for (const t of topics) {
      const [a] = await redis.xrange(prefix + t, "-", "+", "COUNT", 1)
      const [b] = await redis.xrevrange(prefix + t, "+", "-", "COUNT", 1)
      if (a) first = Math.min(first, Number(a[0].split("-")[0]))
      if (b) last = Math.max(last, Number(b[0].split("-")[0]))
    }
    const meanBatchSize = metrics.batchSizeCount ? metrics.batchSizeSum / metrics.batchSizeCount : null
    // The span from the first to the last entry misses the first batch (its entries open the span).
    const counted = len - Math.min(meanBatchSize ?? 1, len - 1)
    const rate = len > 1 && last > first ? counted / ((last - first) / 1000) : null
    const out = {
      streams,
      env,
      backlog: n,
      delivered: len,
      rate: rate && Math.round(rate),
      batches: metrics.batchSecondsCount,
      meanBatchSize: round(meanBatchSize, 1),
      batchMs: metrics.batchSecondsCount
        ? round((metrics.batchSecondsSum / metrics.batchSecondsCount) * 1000, 3)
        : null,
      publishMs: metrics.publishSecondsCount
        ? round((metrics.publishSecondsSum / metrics.publishSecondsCount) * 1000, 3)
        : null,
      // Empty batches (the claim that finds nothing) are counted in the histograms too; they are few in a drain.
      usPerEventBatch: metrics.batchSecondsSum && metrics.batchSizeSum
        ? round((metrics.batchSecondsSum * 1e6) / metrics.batchSizeSum, 2)
        : null,
      usPerEventPublish: metrics.publishSecondsSum && metrics.batchSizeSum
        ? round((metrics.publishSecondsSum * 1e6) / metrics.batchSizeSum, 2)
        : null,
      usPerEventEndToEnd: rate ? round(1e6 / rate, 2) : null,
      metrics
    }
    log(
      `  relay daemon ${JSON.stringify(env)}, ${streams} stream(s), ${n} events: ${out.rate} ev/s;` +
        ` batch ${out.batchMs} ms (mean size ${out.meanBatchSize}),` +
        ` ${out.usPerEventBatch} µs/ev in batches, ${out.usPerEventEndToEnd} µs/ev end to end`
    )
    return out
  } finally {
    if (p) await p.stop()
    for (const t of topics) await redis.unlink(prefix + t, `{${prefix + t}}:inflight`)
    redis.disconnect()
    await admin.unsafe("DELETE FROM outbox_events").catch(() => {})
    await admin.end({ timeout: 1 })
  }
}

/** Median of each numeric field over repeated result objects (non-numeric fields from the first). */
const medianOf = (runs) => {
  const out = { ...runs[0], runs: runs.length }
  for (const [k, v] of Object.entries(runs[0])) {
    if (typeof v === "number") out[k] = round(median(runs.map((r) => r[k])), 2)
  }
  return out
}

export const runProfile = async ({ pgAdmin, urlFor, redisUrl, quick, log = console.log }) => {
  const db = "bench_profile"
  await pgAdmin.unsafe(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`)
  await pgAdmin.unsafe(`CREATE DATABASE "${db}"`)
  const url = urlFor(db)
  const reps = quick ? 5 : 10
  const rounds = quick ? 1 : 3
  const n = quick ? 20_000 : 50_000
  const result = { batch: BATCH, rounds, raw: [], daemon: [] }
  // One claim lane, so batches run one after another like the raw parts (RELAY_CONCURRENCY; ignored by a
  // relay without lanes), then the default settings for the end-to-end figure.
  const daemonPlans = [[1, { RELAY_CONCURRENCY: "1" }], [5, { RELAY_CONCURRENCY: "1" }], [1, {}], [5, {}]]
  try {
    await competitors.relay.setup(url, redisUrl)
    // Rounds interleave every measurement, so the machine's noise spreads over all of them; medians per kind.
    const raw = { 1: [], 5: [] }
    const daemon = daemonPlans.map(() => [])
    for (let r = 0; r < rounds; r++) {
      for (const streams of [1, 5]) {
        const x = await rawParts({ url, redisUrl, streams, reps, log })
        raw[streams].push({ streams, ...Object.fromEntries(Object.entries(x.usPerEvent).map(([k, v]) => [k, v])) })
        if (r === 0) result.claimParams = x.claimParams
      }
      for (const [i, [streams, env]] of daemonPlans.entries()) {
        daemon[i].push(await daemonDrain({ url, redisUrl, streams, n, log, env }))
      }
    }
    result.raw = [1, 5].map((streams) => medianOf(raw[streams]))
    result.daemon = daemon.map((runs) => ({
      ...medianOf(runs.map(({ metrics, ...rest }) => rest)),
      rates: runs.map((x) => x.rate)
    }))
    result.breakdown = [1, 5].map((streams) => {
      const rw = result.raw.find((x) => x.streams === streams)
      const d = result.daemon.find((x) => x.streams === streams && x.env.RELAY_CONCURRENCY === "1")
      const dd = result.daemon.find((x) => x.streams === streams && !x.env.RELAY_CONCURRENCY)
      const parts = rw.claim + rw.publish + rw.commit
      return {
        streams,
        claim: rw.claim,
        publish: rw.publish,
        commit: rw.commit,
        forget: rw.forget,
        wholeBatch: d?.usPerEventBatch ?? null,
        runtimeOverhead: d?.usPerEventBatch ? round(d.usPerEventBatch - parts, 2) : null,
        endToEnd: d?.usPerEventEndToEnd ?? null,
        betweenBatches: d?.usPerEventEndToEnd && d?.usPerEventBatch
          ? round(d.usPerEventEndToEnd - d.usPerEventBatch, 2)
          : null,
        endToEndDefault: dd?.usPerEventEndToEnd ?? null,
        rateDefault: dd?.rate ?? null,
        rateOneLane: d?.rate ?? null
      }
    })
  } finally {
    await pgAdmin.unsafe(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`).catch(() => {})
  }
  return result
}

export const profileTable = (profile) => {
  const rows = profile.breakdown.map((b) =>
    `| ${b.streams} | ${b.claim} | ${b.publish} | ${b.commit} | ${b.wholeBatch ?? "n/a"} | ${
      b.runtimeOverhead ?? "n/a"
    } | ${b.endToEnd ?? "n/a"} | ${b.betweenBatches ?? "n/a"} | ${b.endToEndDefault ?? "n/a"} | ${b.forget} |`
  )
  return [
    "| streams | claim (BEGIN + claim statement) | publish (EVALSHA publish.lua) | COMMIT " +
    "| whole batch, 1 lane (relay metrics) | runtime overhead = whole − parts " +
    "| end to end, 1 lane (1 / drain rate) | between batches | end to end, default settings " +
    "| HDEL markers (raw; the daemon sends them with its next script call) |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...rows
  ].join("\n") +
    `\n\nµs per event, batches of 1,000, medians over ${profile.rounds} interleaved round(s). ` +
    "Parts: medians of raw calls (one connection each, one after another). " +
    "Whole batch: the daemon's own `outbox_batch_seconds` / events, run with `RELAY_CONCURRENCY=1` " +
    "so batches do not overlap; " +
    "the daemon sends each batch's COMMIT in front of its next claim, " +
    "so a batch's claim round trip carries the previous COMMIT. " +
    "Runtime overhead: what the relay's code (Effect, row handling, metrics, retries, slot bookkeeping) " +
    "adds to the raw parts. " +
    "Between batches: wake-up, lease checks and scheduling between one batch's end and the next one's start."
}

// Standalone: own servers.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.argv.includes("--quick")
  const pg = await startPostgres()
  const redis = await startRedis()
  const pgAdmin = postgres(pg.url, { max: 1, onnotice: () => {} })
  let code = 0
  try {
    const profile = await runProfile({ pgAdmin, urlFor: pg.urlFor, redisUrl: redis.url, quick })
    console.log(`\n${profileTable(profile)}`)
    mkdirSync(join(root, "bench", "results"), { recursive: true })
    writeFileSync(join(root, "bench", "results", "profile.json"), JSON.stringify(profile, null, 2))
  } catch (error) {
    console.error(error)
    code = 1
  } finally {
    await pgAdmin.end({ timeout: 1 })
    await pg.stop()
    await redis.stop()
  }
  process.exit(code)
}
