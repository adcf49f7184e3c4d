/**
 * One batch: claim → publish → commit, with its retry policy.
 *
 * A batch is one transaction: the claim deletes the rows, Redis acknowledges their XADDs, the commit
 * makes the deletion final. A transient failure anywhere rolls the transaction back (the rows are
 * untouched) and the batch is retried with `retryBatch`, for ever. An event that can never be
 * published is kept in Postgres marked dead, mirrored to `{<stream>}:dlq`, and its batch goes on.
 *
 * Order: one batch at a time per lane, rows in id order, one script call per stream adding that
 * stream's rows in order; so within a stream (and so within an aggregate) entries follow outbox ids.
 *
 * Round trips: a batch's COMMIT goes out in front of the lane's next claim, so a busy lane pays two
 * round trips per batch (claim, script) instead of three, and the next script call drops the batch's
 * attempt records instead of a command of their own. Before the lane sleeps, `settle` commits what is
 * left open (docs/design.md, Round trips).
 *
 * Latency from commit: each batch remembers what its claim tells about the next one's rows (they
 * committed after it was sent, when it came back less than full), for `CommitEstimate`.
 *
 * Shutdown: a batch in flight is uninterruptible (each step has a timeout), so SIGTERM lets it commit
 * or roll back before the connections close.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Tracer from "effect/Tracer"
import type { TransientError } from "../shared/Errors.js"
import { isRealTracer } from "../shared/OtlpTracing.js"
import { retryBatch } from "../shared/Retry.js"
import { Wakeups } from "./1-Wakeups.js"
import { ClaimSession } from "./3-ClaimSession.js"
import { makeLedger, StreamPublisher } from "./4-Publish.js"
import { WakeRegistry } from "./7-WakeRegistry.js"
import { startBatchSpan } from "./BatchSpan.js"
import { committedAfter, preciseMillis } from "./CommitEstimate.js"
import type { DeadLetter, OutboxRow } from "./Database.js"
import { Health } from "./Health.js"
import { recordLatency } from "./Latency.js"
import * as Metrics from "./Metrics.js"
import { RelayConfig } from "./RelayConfig.js"

/** What one batch did. */
export interface BatchResult {
  readonly claimed: number
  readonly published: number
  readonly duplicates: number
  readonly dead: number
  /** When the claim was sent (relay clock, `preciseMillis`). */
  readonly sentAt: number
  /** The claim took as many rows as it asked for: more may be waiting. */
  readonly full: boolean
}

/**
 * Characters of payload and headers one batch may hold: with big events a claim takes fewer rows than
 * `RELAY_BATCH_SIZE`, so two lanes' batches stay far inside the relay's bounded heap.
 */
export const batchTextBudget = 16 * 1024 * 1024

/** Rows the next claim asks for, from the last batch's size in rows and in characters of text. */
export const nextClaimLimit = (batchSize: number, rows: number, chars: number, budget = batchTextBudget): number =>
  Math.max(1, Math.min(batchSize, Math.floor((budget * rows) / Math.max(1, chars))))

const make = Effect.gen(function*() {
  const config = yield* RelayConfig
  const session = yield* ClaimSession
  const publisher = yield* StreamPublisher
  const health = yield* Health
  const registry = yield* WakeRegistry
  const notifications = (yield* Wakeups).notifications
  // Read directly, not as an effect per reading: a batch takes five.
  const clock = yield* Clock.Clock
  // Decided once per lane: without a tracer (no RELAY_OTLP_ENDPOINT) a batch makes no span and reads no headers.
  const tracing = isRealTracer(yield* Tracer.Tracer)
  // This lane's publish attempts not yet known to have committed.
  const ledger = makeLedger()
  // Rows the next claim asks for; the first assumes events as big as RELAY_MAX_PAYLOAD_BYTES allows.
  let limit = nextClaimLimit(config.batchSize, 1, config.maxPayloadBytes)
  // The last claim, when it bounds the commits of the next one's rows from below.
  let lastClaim: { readonly sentAt: number; readonly slotsVersion: number } | undefined

  /**
   * One batch. Its COMMIT is left for the lane's next claim (same round trip) or `settle`, and its
   * attempt records are dropped by the next script call for the stream, unless it has dead
   * letters: those are recorded and committed before it returns.
   */
  const runBatch = Effect.gen(function*() {
    const started = preciseMillis(clock)
    // Rows this claim finds committed after the previous claim was sent, if that one came back less
    // than full on the same slots. Taken once: a failure from here on leaves the next claim nothing.
    const previous = lastClaim
    lastClaim = undefined
    const slotsVersion = session.slotsVersion()
    const since = previous !== undefined && previous.slotsVersion === slotsVersion ? previous.sentAt : -Infinity
    const asked = limit
    const batch = yield* session.claimBatch(asked)
    const repliedAt = preciseMillis(clock)
    const full = batch.rows.length >= asked
    const thisClaim = full ? undefined : { sentAt: started, slotsVersion }
    if (batch.rows.length === 0) {
      lastClaim = thisClaim
      return { claimed: 0, published: 0, duplicates: 0, dead: 0, sentAt: started, full }
    }
    const span = tracing ? yield* startBatchSpan(batch.rows) : undefined
    const dead: Array<DeadLetter> = []
    const publishable: Array<OutboxRow> = []
    let chars = 0
    for (const row of batch.rows) {
      chars += row.payload.length + row.headers.length
      const reason = rejectReason(row, config.topicPattern, config.maxPayloadBytes)
      if (reason === undefined) publishable.push(row)
      else dead.push({ row, reason })
    }
    limit = nextClaimLimit(config.batchSize, batch.rows.length, chars)
    const publishStarted = preciseMillis(clock)
    const outcomes = yield* publisher.publish(publishable, session.epochs(), ledger).pipe(
      Effect.tapError(() => Metric.update(Metrics.eventsFailed, batch.rows.length))
    )
    const publishEnded = preciseMillis(clock)
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
    if (dead.length === 0) {
      // Attempt records are only dropped once the deletion is durable.
      yield* batch.commitLater(publisher.forgetLater(ledger))
    } else {
      yield* batch.commit(dead).pipe(
        Effect.tapError(() => Metric.update(Metrics.eventsFailed, batch.rows.length))
      )
      yield* publisher.forgetLater(ledger)
      yield* reportDead(dead)
    }
    const ended = preciseMillis(clock)
    const commitBound = committedAfter(since, repliedAt, notifications, registry.skipsFrom(since))
    // One step for the updates (each `Metric.update` is an effect of its own). Latency is measured
    // to the moment the XADDs were acknowledged, with the clock reading already taken for that.
    yield* Effect.contextWith((context: Context.Context<never>) => {
      Metrics.eventsRelayed.updateUnsafe(published.length, context)
      recordLatency(published, publishEnded, commitBound, context)
      Metrics.eventsDuplicateSkipped.updateUnsafe(duplicates, context)
      Metrics.eventsDeadLettered.updateUnsafe(dead.length, context)
      Metrics.batchSize.updateUnsafe(batch.rows.length, context)
      Metrics.publishSeconds.updateUnsafe((publishEnded - publishStarted) / 1000, context)
      Metrics.batchSeconds.updateUnsafe((ended - started) / 1000, context)
      return Effect.void
    })
    if (span !== undefined) {
      span.attribute("outbox.published", published.length)
      span.attribute("outbox.duplicates", duplicates)
      span.attribute("outbox.dead_lettered", dead.length)
    }
    lastClaim = thisClaim
    return {
      claimed: batch.rows.length,
      published: published.length,
      duplicates,
      dead: dead.length,
      sentAt: started,
      full
    }
  }).pipe(
    Effect.scoped,
    // Another relay leases these slots now (this one was paused past the end of its session): the
    // claim is rolled back with the scope; drop what is left of the session and lease again.
    Effect.catchTag("LeaseFenced", (error) =>
      Effect.gen(function*() {
        yield* session.dropLeases
        yield* Metric.update(Metrics.batchFailures, 1)
        yield* Effect.logWarning("slot leases lost: Redis fenced the batch off; rolled back, leasing again").pipe(
          Effect.annotateLogs({ reason: error.message })
        )
        return { claimed: 0, published: 0, duplicates: 0, dead: 0, sentAt: -Infinity, full: false }
      })),
    Effect.uninterruptible
  )

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
  const withRetry = (batch: Effect.Effect<BatchResult, TransientError>) => {
    const attempt = batch.pipe(
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
      )
    )
    return attempt.pipe(
      // The retry schedule is only set up once a batch has failed (it allocates on every run); the
      // failure seen first counts as its first attempt, so the delays are those of a plain retry.
      Effect.catch((error) => {
        let first: TransientError | undefined = error
        const again = Effect.suspend(() => {
          const failed = first
          first = undefined
          return failed === undefined ? attempt : Effect.fail(failed)
        })
        return Effect.retry(again, retryBatch(config.retryBaseDelay, config.retryMaxDelay))
      }),
      // The schedule never ends, so no error gets past the retry.
      Effect.orDie
    )
  }
  const settle = session.settle.pipe(
    Effect.catch((error) =>
      Effect.gen(function*() {
        // Rows the last claim took may be back: committed long before it was sent.
        lastClaim = undefined
        // The batch's rows are back (or deleted: a failed COMMIT's outcome is unknown); its attempts
        // become orphans below, so publishing them again adds nothing.
        yield* Metric.update(Metrics.batchFailures, 1)
        yield* health.report("postgres", error.message)
        yield* Effect.logWarning("deferred commit failed; the batch will be claimed again").pipe(
          Effect.annotateLogs({ operation: error.operation, reason: error.message })
        )
      })
    ),
    // Nothing is open any more: an attempt not confirmed by now never committed.
    Effect.andThen(publisher.abandonLater(ledger)),
    Effect.andThen(publisher.flushForgotten),
    Effect.uninterruptible
  )

  return Batch.of({ next: withRetry(runBatch), settle })
})

export class Batch extends Context.Service<Batch, {
  /**
   * Relays the next batch, retrying transient failures (with backoff, for ever) until it succeeds.
   * Its COMMIT goes out with the next claim (one round trip for both) or with `settle`.
   */
  readonly next: Effect.Effect<BatchResult>
  /** Commits what `next` left open and sends the queued attempt tokens; failures are logged, not raised. */
  readonly settle: Effect.Effect<void>
}>()("outbox-relay/relay/Batch") {
  static readonly layer = Layer.effect(this, make)
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
