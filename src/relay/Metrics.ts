/**
 * Every metric the relay exports, defined once. Served as Prometheus text on `/metrics`.
 */
import * as Metric from "effect/Metric"

export const eventsRelayed = Metric.counter("outbox_events_relayed_total", {
  description: "Events added to their stream and removed from the outbox",
  incremental: true
})

export const eventsDuplicateSkipped = Metric.counter("outbox_events_duplicate_skipped_total", {
  description: "Re-published events the stream already held (crash between XADD and COMMIT)",
  incremental: true
})

export const eventsDeadLettered = Metric.counter("outbox_events_dead_lettered_total", {
  description: "Events that can never be published, kept in Postgres marked dead",
  incremental: true
})

export const batchFailures = Metric.counter("outbox_batch_failures_total", {
  description: "Batch attempts that failed transiently (rolled back and retried)",
  incremental: true
})

export const eventsFailed = Metric.counter("outbox_events_failed_total", {
  description: "Claimed events whose publish or commit failed transiently (rolled back, retried)",
  incremental: true
})

export const batchSize = Metric.histogram("outbox_batch_size", {
  description: "Rows per claimed batch",
  boundaries: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]
})

export const publishSeconds = Metric.histogram("outbox_publish_seconds", {
  description: "Redis round trip publishing one batch",
  boundaries: Metric.exponentialBoundaries({ start: 0.0001, factor: 2, count: 18 })
})

export const batchSeconds = Metric.histogram("outbox_batch_seconds", {
  description: "Claim, publish and commit of one batch",
  boundaries: Metric.exponentialBoundaries({ start: 0.0001, factor: 2, count: 18 })
})

/**
 * Time from an event's `created_at` to Redis acknowledging its XADD, per event. Measured against the
 * relay's clock, so clock skew between the database and the relay host shows up here (clamped at 0).
 */
export const latencySeconds = Metric.histogram("outbox_relay_latency_seconds", {
  description: "Time from an event's created_at to its XADD being acknowledged",
  // 0.5 ms up to about 65 s (the last count is +Inf).
  boundaries: Metric.exponentialBoundaries({ start: 0.0005, factor: 2, count: 19 })
})

/**
 * Time from an estimate of the producer's commit to Redis acknowledging the XADD, per event: what the
 * relay adds. The estimate is a lower bound of the commit (`CommitEstimate`), so this errs high.
 */
export const commitLatencySeconds = Metric.histogram("outbox_relay_commit_latency_seconds", {
  description: "Time from an event's estimated commit (a lower bound) to its XADD being acknowledged",
  // 0.1 ms doubling up to about 52 s: the grid of outbox_publish_seconds and outbox_batch_seconds.
  boundaries: Metric.exponentialBoundaries({ start: 0.0001, factor: 2, count: 21 })
})

export const backlog = Metric.gauge("outbox_backlog", {
  description: "Pending rows in outbox_events"
})

export const oldestPendingSeconds = Metric.gauge("outbox_oldest_pending_seconds", {
  description: "Age of the oldest pending row"
})

export const pendingMaxAttempts = Metric.gauge("outbox_pending_max_attempts", {
  description: "Highest attempts among pending rows (rows dead-lettered before and replayed)"
})

export const deadLetters = Metric.gauge("outbox_dead_letters", {
  description: "Rows marked dead in outbox_events"
})

export const ready = Metric.gauge("outbox_ready", {
  description: "1 when Postgres and Redis are reachable"
})

export const listenConnected = Metric.gauge("outbox_listen_connected", {
  description: "1 when the LISTEN connection is up and proven alive"
})

export const slotsOwned = Metric.gauge("outbox_slots_owned", {
  description: "Slots (of 64) this relay leases; with several relays they share the slots"
})

export const redisUsedMemoryBytes = Metric.gauge("outbox_redis_used_memory_bytes", {
  description: "Redis used_memory (INFO memory)"
})

export const redisMaxmemoryBytes = Metric.gauge("outbox_redis_maxmemory_bytes", {
  description: "Redis maxmemory (INFO memory); 0 means no limit"
})

export const redisBackpressure = Metric.gauge("outbox_redis_backpressure", {
  description: "1 while claiming is paused because Redis memory is above RELAY_REDIS_MAX_MEMORY_RATIO of maxmemory"
})

export const streamEntriesTrimmed = Metric.counter("outbox_stream_entries_trimmed_total", {
  description: "Stream entries removed by RELAY_STREAM_TRIM=acked (every consumer group had acknowledged them)",
  incremental: true
})
