/**
 * graphile-worker used as an outbox relay: the producer's transaction calls
 * `graphile_worker.add_job('publish', payload)`; this worker's `publish` task XADDs the event to the
 * stream. Started by the bench as its own process.
 *
 * BENCH_MODE=best    the settings graphile-worker publishes for its own performance figures
 *                    (worker.graphile.org/docs/performance): concurrentJobs 24, maxPoolSize 25,
 *                    localQueue { size: 500 }, completeJobBatchDelay 0, failJobBatchDelay 0.
 * BENCH_MODE=default graphile-worker's defaults (concurrency 1, pool 10, no local queue, no batching).
 */
import { Logger, run } from "graphile-worker"
import Redis from "ioredis"

const { BENCH_DATABASE_URL, BENCH_REDIS_URL, BENCH_STREAM_PREFIX, BENCH_MODE = "best" } = process.env
const redis = new Redis(BENCH_REDIS_URL, { lazyConnect: false, maxRetriesPerRequest: 3 })

const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") process.stderr.write(`[graphile ${level}] ${message}\n`)
})

const taskList = {
  publish: async (payload, helpers) => {
    const p = payload
    await redis.xadd(
      BENCH_STREAM_PREFIX + p.topic,
      "*",
      "event_id",
      helpers.job.id,
      "event_type",
      p.event_type,
      "topic",
      p.topic,
      "aggregate_id",
      p.aggregate_id,
      "occurred_at",
      new Date(helpers.job.created_at).toISOString(),
      "payload",
      JSON.stringify(p.payload)
    )
  }
}

const options = BENCH_MODE === "best"
  ? {
    concurrency: 24,
    maxPoolSize: 25,
    preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } }
  }
  : {}

const runner = await run({ connectionString: BENCH_DATABASE_URL, taskList, logger, noHandleSignals: true, ...options })
let stopping = false
const stop = async () => {
  if (stopping) return
  stopping = true
  setTimeout(() => process.exit(1), 10_000).unref()
  await runner.stop().catch(() => {})
  await redis.quit().catch(() => {})
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
await runner.promise
