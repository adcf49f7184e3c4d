/**
 * The relay loop: wake-up (notification, reconnect or slow poll) → claim → publish → commit.
 *
 * A batch is one transaction: the claim deletes the rows, Redis acknowledges their XADDs, the commit
 * makes the deletion final. A transient failure anywhere rolls the transaction back (the rows are
 * untouched) and the batch is retried with `retryPublish`, for ever. An event that can never be
 * published is kept in Postgres marked dead, mirrored to `<stream>:dlq`, and its batch goes on.
 *
 * Order: one batch at a time per relay, rows in id order, one script call per stream adding that
 * stream's rows in order; so within a stream (and so within an aggregate) entries follow outbox ids.
 *
 * Shutdown: the loop runs in a scoped fiber; a batch in flight is uninterruptible (each step has a
 * timeout), so SIGTERM lets it commit or roll back before the connections close.
 */
import { Clock, Context, Duration, Effect, Layer, Metric, Queue, Schedule, Scope } from "effect"
import { Database, type DeadLetter, type OutboxRow } from "./Database.js"
import type { TransientError } from "./Errors.js"
import { Health } from "./Health.js"
import * as Metrics from "./Metrics.js"
import { Notifications } from "./Notifications.js"
import { RelayConfig } from "./RelayConfig.js"
import { StreamPublisher } from "./StreamPublisher.js"
import { WakeState } from "./WakeState.js"

/** Jittered exponential backoff, capped, without limit: transient failures are retried for ever. */
export const retryPublish = (base: Duration.Duration, cap: Duration.Duration) =>
  Schedule.min([Schedule.exponential(base), Schedule.spaced(cap)]).pipe(Schedule.jittered)

/** What one batch did. */
export interface BatchResult {
  readonly claimed: number
  readonly published: number
  readonly duplicates: number
  readonly dead: number
}

export class Relay extends Context.Service<Relay, {
  /** Relays one batch once; fails on a transient error (the batch is rolled back). */
  readonly relayBatch: Effect.Effect<BatchResult, TransientError>
  /** Relays one batch, retrying transient failures (with backoff, for ever) until it succeeds. */
  readonly relayBatchRetrying: Effect.Effect<BatchResult>
  /** Relays batches until one comes back short, retrying transient failures; returns rows claimed. */
  readonly drain: Effect.Effect<number>
}>()("outbox-relay/Relay") {
  static readonly layer = Layer.effect(
    Relay,
    Effect.gen(function*() {
      const config = yield* RelayConfig
      const database = yield* Database
      const publisher = yield* StreamPublisher
      const health = yield* Health

      const relayBatch = Effect.gen(function*() {
        const started = yield* Clock.currentTimeMillis
        const batch = yield* database.claimBatch(config.batchSize)
        if (batch.rows.length === 0) {
          yield* batch.commit([])
          return { claimed: 0, published: 0, duplicates: 0, dead: 0 }
        }
        const dead: Array<DeadLetter> = []
        const publishable: Array<OutboxRow> = []
        for (const row of batch.rows) {
          const reason = rejectReason(row, config.topicPattern, config.maxPayloadBytes)
          if (reason === undefined) publishable.push(row)
          else dead.push({ row, reason })
        }
        const publishStarted = yield* Clock.currentTimeMillis
        const outcomes = yield* publisher.publish(publishable)
        const publishEnded = yield* Clock.currentTimeMillis
        const published: Array<OutboxRow> = []
        let duplicates = 0
        outcomes.forEach((outcome, i) => {
          const row = publishable[i]!
          if (outcome._tag === "Rejected") {
            dead.push({ row, reason: `redis refused the entry: ${outcome.reason}` })
          } else {
            published.push(row)
            if (outcome.duplicate) duplicates++
          }
        })
        yield* batch.commit(dead)
        // Markers are only dropped once the deletion is durable; not awaited (same connection, so it
        // is written before the next batch's scripts anyway).
        if (published.length > 0) yield* Effect.forkDetach(publisher.forget(published))
        if (dead.length > 0) yield* reportDead(dead)
        const ended = yield* Clock.currentTimeMillis
        yield* Effect.all([
          Metric.update(Metrics.eventsRelayed, published.length),
          Metric.update(Metrics.eventsDuplicateSkipped, duplicates),
          Metric.update(Metrics.eventsDeadLettered, dead.length),
          Metric.update(Metrics.batchSize, batch.rows.length),
          Metric.update(Metrics.publishSeconds, (publishEnded - publishStarted) / 1000),
          Metric.update(Metrics.batchSeconds, (ended - started) / 1000)
        ], { discard: true })
        return { claimed: batch.rows.length, published: published.length, duplicates, dead: dead.length }
      }).pipe(Effect.scoped, Effect.uninterruptible)

      const reportDead = (dead: ReadonlyArray<DeadLetter>) =>
        Effect.gen(function*() {
          for (const { reason, row } of dead) {
            yield* Effect.logWarning("event dead-lettered").pipe(Effect.annotateLogs({
              event_id: row.event_id,
              outbox_id: row.id,
              topic: row.topic,
              reason
            }))
          }
          yield* publisher.mirrorDeadLetters(dead).pipe(
            Effect.catch((error) =>
              Effect.logWarning("dead letters kept in Postgres but not mirrored to Redis").pipe(
                Effect.annotateLogs({ reason: error.message, count: dead.length })
              )
            )
          )
        })

      let failing = false
      const relayBatchWithRetry = relayBatch.pipe(
        Effect.tap(() =>
          Effect.gen(function*() {
            if (failing) {
              failing = false
              yield* Effect.logInfo("relaying again after transient failures")
            }
            yield* health.report("postgres")
            yield* health.report("redis")
          })
        ),
        Effect.tapError((error) =>
          Effect.gen(function*() {
            failing = true
            yield* Metric.update(Metrics.batchFailures, 1)
            yield* health.report(error._tag === "DatabaseUnavailable" ? "postgres" : "redis", error.message)
            yield* Effect.logWarning("batch failed; rolled back, will retry").pipe(
              Effect.annotateLogs({ error: error._tag, operation: error.operation, reason: error.message })
            )
          })
        ),
        Effect.retry(retryPublish(config.retryBaseDelay, config.retryMaxDelay)),
        // The schedule never ends, so no error gets past the retry.
        Effect.orDie
      )

      const drain = Effect.gen(function*() {
        let total = 0
        while (true) {
          const result = yield* relayBatchWithRetry
          total += result.claimed
          if (result.claimed < config.batchSize) return total
        }
      })

      return Relay.of({ relayBatch, relayBatchRetrying: relayBatchWithRetry, drain })
    })
  )

  /**
   * The daemon: drains at start, then after every wake-up or `RELAY_POLL_INTERVAL`, until its scope
   * closes. While it keeps finding rows it tells producers to skip NOTIFY, and hands over correctly
   * before sleeping (`WakeState`). Also keeps the backlog gauges fresh.
   */
  static readonly layerDaemon = Layer.effectDiscard(
    Effect.gen(function*() {
      const config = yield* RelayConfig
      const relay = yield* Relay
      const notifications = yield* Notifications
      const database = yield* Database
      const wake = yield* WakeState
      const scope = yield* Scope.Scope
      yield* Effect.logInfo("relay started").pipe(Effect.annotateLogs({
        schema: config.schema,
        streamPrefix: config.streamPrefix,
        batchSize: config.batchSize,
        pollInterval: Duration.format(config.pollInterval)
      }))

      /** The flag is a hint to producers: failing to set it only costs notifications. */
      const markAwake = wake.markAwake.pipe(
        Effect.catch((error) => Effect.logDebug("could not mark the relay awake", error.message))
      )

      /**
       * Clears the flag and waits (claiming meanwhile, never blocking producers) until every producer
       * that saw it set has finished. Returns true when it found rows on the way (stay awake).
       */
      const handOver = Effect.gen(function*() {
        let cleared = yield* Effect.orElseSucceed(Effect.as(wake.markAsleep, true), () => false)
        let delayMs = 0.2
        while (true) {
          if (cleared) {
            const done = yield* Effect.orElseSucceed(wake.handoverDone, () => false)
            if (done) return false
          } else {
            // The flag could not be cleared: it lapses with its lease, then producers notify again.
            const now = yield* Clock.currentTimeMillis
            if (now > (yield* wake.flagExpiresAt)) return false
            cleared = yield* Effect.orElseSucceed(Effect.as(wake.markAsleep, true), () => false)
          }
          yield* Effect.sleep(Duration.micros(BigInt(Math.round(delayMs * 1000))))
          delayMs = Math.min(delayMs * 2, 5)
          if ((yield* relay.relayBatchRetrying).claimed > 0) return true
        }
      })

      // Slot leases are checked at most this often (and on every wake-up after that).
      const leaseCheckMs = Math.min(1000, Duration.toMillis(config.leaseTimeout) / 5)
      let lastRebalance = -Infinity
      /** Rebalances slot leases when due; true when this relay gained slots (drain them). */
      const maybeRebalance = Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        if (now - lastRebalance < leaseCheckMs) return false
        lastRebalance = now
        const before = (yield* database.lease).owned
        return yield* database.rebalance.pipe(
          Effect.tap((lease) => Metric.update(Metrics.slotsOwned, lease.owned.length)),
          Effect.tap((lease) =>
            lease.owned.length === before.length ? Effect.void : Effect.logInfo("slot leases changed").pipe(
              Effect.annotateLogs({ owned: lease.owned.length, liveRelays: lease.liveRelays, target: lease.target })
            )
          ),
          Effect.map((lease) => lease.owned.some((slot) => !before.includes(slot))),
          Effect.catch((error) => Effect.as(Effect.logWarning("slot rebalance failed").pipe(Effect.annotateLogs({ reason: error.message })), false))
        )
      })

      /** Claims until a claim comes back empty and no producer relies on this relay being awake. */
      const drainCycle = Effect.gen(function*() {
        let busyClaims = 0
        while (true) {
          yield* maybeRebalance
          const result = yield* relay.relayBatchRetrying
          if (result.claimed > 0) {
            // Two claims with rows in a row: producers are busy, so spare them their NOTIFYs.
            if (++busyClaims >= 2) yield* markAwake
            continue
          }
          if (!(yield* wake.isAwake)) return
          const stillBusy = yield* handOver
          if (!stillBusy) {
            // The last claim, after every producer that skipped its NOTIFY has committed.
            if ((yield* relay.relayBatchRetrying).claimed === 0) return
          }
          busyClaims = 2
          yield* markAwake
        }
      })

      /** Sleeps until a notification, new slots, or the slow poll. */
      const tickMs = Math.min(Duration.toMillis(config.pollInterval), leaseCheckMs)
      const idle = Effect.gen(function*() {
        const since = yield* Clock.currentTimeMillis
        while (true) {
          const woken = yield* Effect.raceFirst(
            Effect.as(Queue.take(notifications.wakeups), true),
            Effect.as(Effect.sleep(Duration.millis(tickMs)), false)
          )
          if (woken) return
          if (yield* maybeRebalance) return
          if ((yield* Clock.currentTimeMillis) - since >= Duration.toMillis(config.pollInterval)) return
        }
      })

      yield* Effect.forkIn(
        Effect.forever(Effect.andThen(drainCycle, idle)).pipe(
          Effect.onInterrupt(() => Effect.logInfo("relay stopped: no batch in flight"))
        ),
        scope
      )
      const refreshStats = database.stats.pipe(
        Effect.flatMap((stats) =>
          Effect.all([
            Metric.update(Metrics.backlog, stats.pending),
            Metric.update(Metrics.oldestPendingSeconds, stats.oldestPendingSeconds),
            Metric.update(Metrics.deadLetters, stats.dead)
          ], { discard: true })
        ),
        Effect.ignore
      )
      yield* Effect.forkIn(Effect.repeat(refreshStats, Schedule.spaced(config.metricsInterval)), scope)
      // Retained published rows (RELAY_RETENTION) are purged in the background, in small batches.
      yield* Effect.forkIn(
        Effect.repeat(
          database.purgePublished.pipe(
            Effect.tap((purged) => purged > 0 ? Effect.logDebug("purged published rows", purged) : Effect.void),
            Effect.ignore
          ),
          Schedule.spaced("10 seconds")
        ),
        scope
      )
    })
  )
}

/** Why a row can never be published, or undefined when it can. */
export const rejectReason = (row: OutboxRow, topicPattern: RegExp, maxPayloadBytes: number): string | undefined => {
  if (!topicPattern.test(row.topic)) {
    return `topic ${JSON.stringify(row.topic)} does not match RELAY_TOPIC_PATTERN ${topicPattern.source}`
  }
  // Cheap bound first: a UTF-8 byte is at least one UTF-16 unit and at most three.
  if (row.payload.length * 3 > maxPayloadBytes) {
    const bytes = Buffer.byteLength(row.payload)
    if (bytes > maxPayloadBytes) {
      return `payload is ${bytes} bytes, over RELAY_MAX_PAYLOAD_BYTES (${maxPayloadBytes})`
    }
  }
  return undefined
}
