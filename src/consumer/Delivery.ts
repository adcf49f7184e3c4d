/**
 * What happens to one delivery: the decision table of the consumer.
 *
 * | The delivery                                   | Outcome                                        |
 * |------------------------------------------------|------------------------------------------------|
 * | handler succeeds (after retries within it)     | XACK                                           |
 * | handler fails or times out, deliveries left    | left pending: reclaimed after `claimIdle`      |
 * | handler fails on delivery `maxDeliveries`      | dead-lettered (copied to `{<stream>}:dlq`, XACK)  |
 * | delivered more than `maxDeliveries` times      | dead-lettered without running the handler      |
 * |   (consumers died while handling it)           |                                                |
 * | malformed envelope, payload refused by schema  | dead-lettered at once (can never succeed)      |
 * |   (or by its catalog event, after upgrades)    |                                                |
 * | catalog mode: no handler for its event_type    | XACK and counted, or dead-lettered             |
 * |                                                |   (`unknownEvents`)                            |
 *
 * One delivery is bounded by `handlerTimeout`, retries included (a timed-out delivery counts as a
 * failed one). Messages held by a live consumer have their idle time renewed, so they are never
 * handed to another consumer while their handler runs.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Result from "effect/Result"
import { describe } from "../shared/Errors.js"
import { retryRedis } from "../shared/Retry.js"
import type { ConsumerMetrics } from "./ConsumerMetrics.js"
import { awaitWaiting, type HandlerWatch, type Step, Waiting } from "./Dispatcher.js"
import { type ConsumedEvent, parseEnvelope } from "./Envelope.js"
import { HandlerTimedOut } from "./Errors.js"
import type { Delivery, GroupClient } from "./GroupClient.js"
import { inHandlerSpan } from "./HandlerSpan.js"
import type { ResolvedOptions } from "./Options.js"
import { type AnyHandler, directCallOf, PendingCall, type Routed } from "./Routing.js"

/** Counters of what the consumer did, for tests, benchmarks and health checks. */
export interface ConsumerStats {
  /** Deliveries whose handler succeeded (acknowledged). */
  acked: number
  /** Deliveries whose handler failed or timed out. */
  failed: number
  /** Messages copied to the dead-letter stream and acknowledged. */
  deadLettered: number
  /** Entries acknowledged without a handler (catalog mode: a type without a handler, `unknownEvents: "ack"`). */
  skipped: number
}

export interface DeliveryContext<P, E, R> {
  readonly options: ResolvedOptions
  readonly client: GroupClient
  readonly handler: (event: ConsumedEvent<P>) => Effect.Effect<void, E, R>
  readonly decodePayload: ((payload: unknown) => Effect.Effect<P, { readonly message: string }>) | undefined
  /** Catalog mode: picks the handler and decodes the payload per entry (`handler` is then unused). */
  readonly route: ((event: ConsumedEvent<unknown>) => Routed<E, R>) | undefined
  /** Queues the XACK; the acker releases the entry once Redis answered. */
  readonly acknowledge: (id: string) => void
  /** Forgets the entry without acknowledging it (it stays pending for the group). */
  readonly release: (id: string) => void
  readonly stats: ConsumerStats
  readonly metrics: ConsumerMetrics
  /** The application has a tracer: each delivery's handler runs in a span (HandlerSpan.ts). */
  readonly tracing: boolean
}

/** One line for whatever a handler failed with. */
export const describeCause = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  const tag = (error as { _tag?: unknown } | null)?._tag
  const text = describe(error)
  return typeof tag === "string" && !text.includes(tag) ? `${tag}: ${text}` : text
}

/** Builds the function that takes one delivery to its outcome. Never fails. */
export const makeProcess = <P, E, R>(ctx: DeliveryContext<P, E, R>, clock: Clock.Clock) => {
  const { client, metrics, options, stats } = ctx
  const annotations = (delivery: Delivery) => ({
    stream: options.stream,
    group: options.group,
    entry_id: delivery.id,
    delivery_count: delivery.deliveryCount
  })

  const deadLetter = (delivery: Delivery, reason: string) =>
    Effect.gen(function*() {
      const now = new Date(yield* Clock.currentTimeMillis).toISOString()
      yield* client.deadLetter(delivery, [
        "reason",
        reason,
        "delivery_count",
        String(delivery.deliveryCount),
        "dead_at",
        now,
        "group",
        options.group,
        "consumer",
        options.consumer,
        "entry_id",
        delivery.id
      ]).pipe(Effect.retry(retryRedis), Effect.orDie)
      stats.deadLettered++
      metrics.deadLettered()
      ctx.release(delivery.id)
      yield* Effect.logWarning("message dead-lettered").pipe(Effect.annotateLogs({ ...annotations(delivery), reason }))
    })

  /**
   * The handler with its retries. Hot path: the first attempt runs without the retry machinery; only
   * a failure replays itself through the schedule (so the schedule's first delay still comes before
   * the second attempt). The deadline in `watch` is watched by the dispatcher's sweeper, which
   * interrupts an overrunning handler (see Dispatcher); no timer per message.
   */
  const withRetries = (handler: AnyHandler<E, R>, event: ConsumedEvent<P>, first: Effect.Effect<void, E, R>) =>
    // `first` is the first attempt (or what is left of it after a direct call).
    Effect.catchCause(first, (cause) => {
      if (Cause.hasInterruptsOnly(cause)) return Effect.failCause(cause)
      const attempt = Effect.suspend(() => handler(event))
      let replayed = false
      const again = Effect.suspend(() =>
        replayed ? (metrics.retried(), attempt) : (replayed = true, Effect.failCause(cause))
      )
      return Effect.retry(again, options.retry)
    })

  const runHandler = (handler: AnyHandler<E, R>, event: ConsumedEvent<P>, watch: HandlerWatch) =>
    Effect.suspend(() => {
      watch.deadline = clock.currentTimeMillisUnsafe() + options.handlerTimeoutMillis
      const handled = withRetries(handler, event, Effect.suspend(() => handler(event)))
      return Effect.exit(ctx.tracing ? inHandlerSpan(handled, event, options.group) : handled)
    })

  /** Settles a delivery whose handler ran `seconds`. */
  const onHandled = (delivery: Delivery, seconds: number) => (exit: Exit.Exit<void, unknown>): Effect.Effect<void> => {
    metrics.handled(Exit.isSuccess(exit), seconds)
    if (Exit.isSuccess(exit)) {
      stats.acked++
      ctx.acknowledge(delivery.id)
      return Effect.void
    }
    stats.failed++
    const reason = Cause.hasInterruptsOnly(exit.cause) ? "handler interrupted" : describeCause(exit.cause)
    if (delivery.deliveryCount >= options.maxDeliveries) {
      return deadLetter(delivery, `handler failed on delivery ${delivery.deliveryCount}: ${reason}`)
    }
    ctx.release(delivery.id)
    return Effect.logWarning("handler failed; message left pending for a later delivery").pipe(
      Effect.annotateLogs({ ...annotations(delivery), reason })
    )
  }

  /** Settles a delivery once its handler is done (all attempts). */
  const settle = (delivery: Delivery, watch: HandlerWatch) => (exit: Exit.Exit<void, unknown>): Effect.Effect<void> => {
    // The deadline says when the handler started: one clock reading for the duration.
    const seconds = (clock.currentTimeMillisUnsafe() - watch.deadline + options.handlerTimeoutMillis) / 1000
    watch.deadline = 0
    if (Exit.isSuccess(exit)) {
      stats.acked++
      metrics.handled(true, seconds)
      ctx.acknowledge(delivery.id)
      return Effect.void
    }
    return Effect.uninterruptible(onHandled(delivery, seconds)(exit))
  }

  /** Settles a delivery whose handler's first attempt succeeded, in plain JavaScript. */
  const succeeded = (delivery: Delivery, watch: HandlerWatch, started: number) => {
    watch.deadline = 0
    stats.acked++
    metrics.handled(true, (clock.currentTimeMillisUnsafe() - started) / 1000)
    ctx.acknowledge(delivery.id)
  }

  /**
   * A handler's promise as a `Waiting` for the dispatcher: a resolved promise settles the delivery
   * right in its `then` (no effect per message); only a rejection builds the retry and dead-letter
   * path. Once aborted (timeout, stop: whoever interrupted settles the delivery), a promise settling
   * later settles nothing.
   */
  const waitFor = (
    delivery: Delivery,
    event: ConsumedEvent<P>,
    watch: HandlerWatch,
    handler: AnyHandler<E, R>,
    call: PendingCall,
    started: number
  ): Waiting<R> => {
    let aborted = false
    return new Waiting<R>((done) => {
      call.promise.then(() => {
        if (aborted) return
        succeeded(delivery, watch, started)
        done(undefined)
      }, (error: E) => {
        if (aborted) return
        done(Effect.flatMap(Effect.exit(withRetries(handler, event, Effect.fail(error))), settle(delivery, watch)))
      })
    }, () => {
      aborted = true
      call.abort()
    })
  }

  /**
   * Runs the handler, then settles the delivery; settling is never cut in half by a timeout (the
   * success path is synchronous, the others uninterruptible). A worker interrupted mid-handler gets a
   * fresh watch, so the deadline only needs clearing here.
   *
   * A handler with a direct call (plain JavaScript, no tracer) runs its first attempt right here:
   * when it returns without a promise and succeeds, the delivery is settled with no effect at all
   * (undefined); a promise is left to the dispatcher to wait for (`waitFor`); a failure and its retries go through the
   * effect.
   */
  const handle = (
    delivery: Delivery,
    event: ConsumedEvent<P>,
    watch: HandlerWatch,
    handler: AnyHandler<E, R> = ctx.handler
  ): Step<R> => {
    const direct = ctx.tracing ? undefined : directCallOf(handler)
    if (direct === undefined) return Effect.flatMap(runHandler(handler, event, watch), settle(delivery, watch))
    const started = clock.currentTimeMillisUnsafe()
    watch.deadline = started + options.handlerTimeoutMillis
    const rest = direct(event)
    if (rest === undefined) {
      succeeded(delivery, watch, started)
      return undefined
    }
    if (rest instanceof PendingCall) return waitFor(delivery, event, watch, handler, rest, started)
    return Effect.flatMap(Effect.exit(withRetries(handler, event, rest)), settle(delivery, watch))
  }

  const stepAsEffect = (step: Step<R>): Effect.Effect<void, never, R> =>
    step === undefined ? Effect.void : step instanceof Waiting ? awaitWaiting(step) : step

  const decodeThenHandle = (delivery: Delivery, event: ConsumedEvent<unknown>, watch: HandlerWatch) =>
    Effect.flatMap(Effect.result(ctx.decodePayload!(event.payload)), (decoded) =>
      Result.isFailure(decoded)
        ? deadLetter(delivery, `payload refused by the schema: ${decoded.failure.message}`)
        : stepAsEffect(handle(delivery, { ...event, payload: decoded.success }, watch)))

  // Types already reported: the first entry of a type logs, the rest only count.
  const reportedUnknown = new Set<string>()
  const skip = (delivery: Delivery, eventType: string, inCatalog: boolean): Effect.Effect<void> => {
    if (options.unknownEvents === "dead-letter") {
      return deadLetter(delivery, `no handler for event type ${JSON.stringify(eventType)}`)
    }
    stats.skipped++
    metrics.skipped()
    ctx.acknowledge(delivery.id)
    if (reportedUnknown.has(eventType) || reportedUnknown.size >= 100) return Effect.void
    reportedUnknown.add(eventType)
    // A type of the catalog without a handler here is expected (a consumer handles what it needs).
    return (inCatalog
      ? Effect.logInfo("no handler for this event type here; its entries are acknowledged and counted")
      : Effect.logWarning("event type not in the catalog; its entries are acknowledged and counted")).pipe(
        Effect.annotateLogs({ ...annotations(delivery), event_type: eventType })
      )
  }

  const routeThenHandle = (delivery: Delivery, event: ConsumedEvent<unknown>, watch: HandlerWatch): Step<R> => {
    const routed = ctx.route!(event)
    if (routed._tag === "Handle") return handle(delivery, routed.event as ConsumedEvent<P>, watch, routed.handler)
    if (routed._tag === "Poison") return deadLetter(delivery, `payload refused by the catalog: ${routed.reason}`)
    return skip(delivery, event.eventType, routed.inCatalog)
  }

  // Plain function, not Effect.gen: this runs once per message. Undefined: settled already.
  const process = (delivery: Delivery, watch: HandlerWatch): Step<R> => {
    if (delivery.fields === null) {
      // Deleted from the stream (trimmed) while pending: nothing left to handle.
      ctx.acknowledge(delivery.id)
      return undefined
    }
    if (delivery.deliveryCount > options.maxDeliveries) {
      return deadLetter(
        delivery,
        `delivered ${delivery.deliveryCount} times (maxDeliveries ${options.maxDeliveries}) without being acknowledged`
      )
    }
    const envelope = parseEnvelope(options.stream, delivery.id, delivery.fields, delivery.deliveryCount)
    if (Result.isFailure(envelope)) return deadLetter(delivery, `malformed entry: ${envelope.failure}`)
    if (ctx.route !== undefined) return routeThenHandle(delivery, envelope.success, watch)
    if (ctx.decodePayload !== undefined) return decodeThenHandle(delivery, envelope.success, watch)
    return handle(delivery, envelope.success as ConsumedEvent<P>, watch)
  }

  /** Settles a delivery whose handler the dispatcher interrupted for overrunning `handlerTimeout`. */
  const timedOut = (delivery: Delivery): Effect.Effect<void> =>
    // It ran at least the whole timeout.
    onHandled(delivery, options.handlerTimeoutMillis / 1000)(
      Exit.fail(new HandlerTimedOut({ entryId: delivery.id, timeoutMillis: options.handlerTimeoutMillis }))
    )

  return { process, timedOut }
}
