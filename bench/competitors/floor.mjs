/**
 * The least work a relay must do, as a yardstick (not a product): BENCH_WORKERS workers (2 by default,
 * as the relay runs two lanes), each on its own connection, claim up to 1,000 rows in id order with one
 * `DELETE ... RETURNING` (BEGIN pipelined with it), XADD them in one pipelined round trip and COMMIT,
 * again at once while rows come back, else after BENCH_POLL_MS (1 ms). With BENCH_WORKERS=listen, one
 * worker woken by the relay's own trigger (LISTEN) instead of polling. Same schema as the relay (migrated
 * with `node dist/main.js migrate`). No slots, no dedupe markers, no order across workers, no dead
 * letters, no health, no retry: what is left is the price of the round trips themselves on this machine,
 * so the bench can say how far outbox-relay is from it.
 *
 * Started by the bench as its own process (BENCH_DATABASE_URL, BENCH_REDIS_URL, BENCH_STREAM_PREFIX;
 * BENCH_BATCH_SIZE, 1,000 by default, for bench/diagnostics/batch-cost.mjs).
 */
import Redis from "ioredis"
import postgres from "postgres"
import { sleep } from "../../test/support/wait.ts"

const { BENCH_DATABASE_URL, BENCH_REDIS_URL, BENCH_STREAM_PREFIX } = process.env
const listenMode = process.env.BENCH_WORKERS === "listen"
const workers = listenMode ? 1 : Number(process.env.BENCH_WORKERS ?? 2)
const pollMs = Number(process.env.BENCH_POLL_MS ?? 1)
const connect = () => postgres(BENCH_DATABASE_URL, { max: 1, onnotice: () => {}, fetch_types: false })
const connections = Array.from({ length: workers }, connect)
const sql = connections[0]
const redis = new Redis(BENCH_REDIS_URL, { maxRetriesPerRequest: 3 })
let stopping = false

const claim = `
  DELETE FROM outbox_events AS o
  WHERE o.ctid = ANY(ARRAY(
    SELECT ctid FROM outbox_events WHERE dead_at IS NULL AND published_at IS NULL
    ORDER BY id LIMIT ${Number(process.env.BENCH_BATCH_SIZE ?? 1000)} FOR UPDATE SKIP LOCKED))
  RETURNING o.id, o.event_id::text AS event_id, o.topic, o.event_type, o.aggregate_id,
            o.payload::text AS payload, o.headers::text AS headers, o.occurred_at::text AS occurred_at`

const drainOnce = async (sql) => {
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

let running = 0
let again = false
const wake = async () => {
  if (running > 0) {
    again = true
    return
  }
  running++
  try {
    do {
      again = false
      while (!stopping && (await drainOnce(sql)) > 0) {}
    } while (again && !stopping)
  } catch (error) {
    process.stderr.write(`[floor] ${error.message}\n`)
    await sql.unsafe("ROLLBACK").catch(() => {})
  } finally {
    running--
  }
}

/** A polling worker: claims again at once while rows come back, else after `pollMs`. */
const poller = async (conn) => {
  running++
  try {
    while (!stopping) {
      if ((await drainOnce(conn)) === 0) await sleep(pollMs)
    }
  } catch (error) {
    process.stderr.write(`[floor] ${error.message}\n`)
    await conn.unsafe("ROLLBACK").catch(() => {})
  } finally {
    running--
  }
}

let listener
let poll
if (listenMode) {
  listener = connect()
  await listener.listen("outbox_events", () => void wake(), () => void wake())
  poll = setInterval(() => void wake(), 5_000)
} else {
  for (const conn of connections) void poller(conn)
}

const stop = async () => {
  if (stopping) return
  stopping = true
  clearInterval(poll)
  setTimeout(() => process.exit(1), 5_000).unref()
  while (running > 0) await sleep(10)
  await listener?.end({ timeout: 1 }).catch(() => {})
  await Promise.all(connections.map((conn) => conn.end({ timeout: 1 }).catch(() => {})))
  await redis.quit().catch(() => {})
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
