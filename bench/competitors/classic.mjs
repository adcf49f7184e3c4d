/**
 * The classic polling outbox relay: every 300 ms, SELECT up to 100 unpublished rows ordered by id,
 * then for each row one XADD and one `UPDATE ... SET published_at = now()` (autocommit). Started by the
 * bench as its own process. The 300 ms pause follows every poll (the textbook `setInterval`-style
 * poller), so its ceiling is about 100 events per (300 ms + batch time).
 */
import Redis from "ioredis"
import postgres from "postgres"
import { sleep } from "../../test/support/wait.ts"

const { BENCH_DATABASE_URL, BENCH_REDIS_URL, BENCH_STREAM_PREFIX } = process.env
const sql = postgres(BENCH_DATABASE_URL, { max: 1, onnotice: () => {}, fetch_types: false })
const redis = new Redis(BENCH_REDIS_URL, { maxRetriesPerRequest: 3 })
let stopping = false

const stop = async () => {
  if (stopping) return
  stopping = true
  setTimeout(() => process.exit(1), 5_000).unref()
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)

while (!stopping) {
  try {
    const rows = await sql.unsafe(
      `/* classic-claim */ SELECT id::text AS id, event_id::text AS event_id, topic, event_type, aggregate_id,
              payload::text AS payload, headers::text AS headers, occurred_at
       FROM outbox_events WHERE published_at IS NULL ORDER BY id LIMIT 100`,
      [],
      { prepare: true }
    )
    for (const row of rows) {
      if (stopping) break
      await redis.xadd(
        BENCH_STREAM_PREFIX + row.topic,
        "*",
        "event_id",
        row.event_id,
        "event_type",
        row.event_type,
        "topic",
        row.topic,
        "aggregate_id",
        row.aggregate_id,
        "occurred_at",
        new Date(row.occurred_at).toISOString(),
        "payload",
        row.payload,
        "headers",
        row.headers
      )
      await sql.unsafe(`UPDATE outbox_events SET published_at = now() WHERE id = $1::text::bigint`, [row.id], {
        prepare: true
      })
    }
  } catch (error) {
    process.stderr.write(`[classic] ${error.message}\n`)
  }
  await sleep(300)
}
await sql.end({ timeout: 2 }).catch(() => {})
await redis.quit().catch(() => {})
process.exit(0)
