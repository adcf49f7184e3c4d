/**
 * The least work a relay must do, as a yardstick (not a product): on every NOTIFY of the relay's own
 * trigger (same schema, migrated with `node dist/main.js migrate`), claim up to 1,000 rows in id order
 * with one `DELETE ... RETURNING` (BEGIN pipelined with it), XADD them in one pipelined round trip,
 * COMMIT; repeat until a claim comes back empty. No slots, no dedupe markers, no NOTIFY skipping, no
 * dead letters, no health, no retry: what is left is the price of the round trips themselves on this
 * machine, so the bench can say how far outbox-relay is from it.
 *
 * Started by the bench as its own process (BENCH_DATABASE_URL, BENCH_REDIS_URL, BENCH_STREAM_PREFIX;
 * BENCH_BATCH_SIZE, 1,000 by default, for bench/diagnostics/batch-cost.mjs).
 */
import Redis from "ioredis"
import postgres from "postgres"
import { sleep } from "../../test/support/wait.ts"

const { BENCH_DATABASE_URL, BENCH_REDIS_URL, BENCH_STREAM_PREFIX } = process.env
const sql = postgres(BENCH_DATABASE_URL, { max: 1, onnotice: () => {}, fetch_types: false })
const listener = postgres(BENCH_DATABASE_URL, { max: 1, onnotice: () => {}, fetch_types: false })
const redis = new Redis(BENCH_REDIS_URL, { maxRetriesPerRequest: 3 })
let stopping = false

const claim = `
  DELETE FROM outbox_events AS o
  WHERE o.ctid = ANY(ARRAY(
    SELECT ctid FROM outbox_events WHERE dead_at IS NULL AND published_at IS NULL
    ORDER BY id LIMIT ${Number(process.env.BENCH_BATCH_SIZE ?? 1000)} FOR UPDATE SKIP LOCKED))
  RETURNING o.id, o.event_id::text AS event_id, o.topic, o.event_type, o.aggregate_id,
            o.payload::text AS payload, o.headers::text AS headers, o.occurred_at::text AS occurred_at`

const drainOnce = async () => {
  const [, rows] = await Promise.all([sql.unsafe("BEGIN"), sql.unsafe(claim, [], { prepare: true })])
  if (rows.length === 0) {
    await sql.unsafe("COMMIT")
    return 0
  }
  rows.sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1))
  const pipeline = redis.pipeline()
  for (const row of rows) {
    pipeline.xadd(
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
      row.occurred_at,
      "payload",
      row.payload,
      "headers",
      row.headers
    )
  }
  const replies = await pipeline.exec()
  if (replies.some(([error]) => error)) {
    await sql.unsafe("ROLLBACK")
    throw new Error("XADD failed")
  }
  await sql.unsafe("COMMIT")
  return rows.length
}

let running = false
let again = false
const wake = async () => {
  if (running) {
    again = true
    return
  }
  running = true
  try {
    do {
      again = false
      while (!stopping && (await drainOnce()) > 0) {}
    } while (again && !stopping)
  } catch (error) {
    process.stderr.write(`[floor] ${error.message}\n`)
    await sql.unsafe("ROLLBACK").catch(() => {})
  } finally {
    running = false
  }
}

await listener.listen("outbox_events", () => void wake(), () => void wake())
const poll = setInterval(() => void wake(), 5_000)

const stop = async () => {
  if (stopping) return
  stopping = true
  clearInterval(poll)
  setTimeout(() => process.exit(1), 5_000).unref()
  while (running) await sleep(10)
  await listener.end({ timeout: 1 }).catch(() => {})
  await sql.end({ timeout: 1 }).catch(() => {})
  await redis.quit().catch(() => {})
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
