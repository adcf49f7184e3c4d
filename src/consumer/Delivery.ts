/**
 * What happens to one delivery: the decision table of the consumer.
 *
 * | The delivery                                   | Outcome                                        |
 * |------------------------------------------------|------------------------------------------------|
 * | handler succeeds (after retries within it)     | XACK                                           |
 * | handler fails or times out, deliveries left    | left pending: reclaimed after `claimIdle`      |
 * | handler fails on delivery `maxDeliveries`      | dead-lettered (copied to `<stream>:dlq`, XACK)  |
 * | delivered more than `maxDeliveries` times      | dead-lettered without running the handler      |
 * |   (consumers died while handling it)           |                                                |
 * | malformed envelope, payload refused by schema  | dead-lettered at once (can never succeed)      |
 *
 * One delivery is bounded by `handlerTimeout`, retries included, so it ends before `claimIdle` and the
 * message is never handed to another consumer while its handler may still run.
 */
import { Cause, Clock, Effect, Exit, Result, Schedule } from "effect"
import { describe } from "../Errors.js"
import { type ConsumedEvent, parseEnvelope } from "./Envelope.js"
import { HandlerTimedOut } from "./Errors.js"
import type { Delivery, GroupClient } from "./GroupClient.js"
import type { ResolvedOptions } from "./Options.js"

/** Counters of what the consumer did, for tests, benchmarks and health checks. */
export interface ConsumerStats {
  /** Deliveries whose handler succeeded (acknowledged). */
  acked: number
  /** Deliveries whose handler failed or timed out. */
  failed: number
  /** Messages copied to the dead-letter stream and acknowledged. */
  deadLettered: number
}

export interface DeliveryContext<P, E, R> {
  readonly options: ResolvedOptions
  readonly client: GroupClient
  readonly handler: (event: ConsumedEvent<P>) => Effect.Effect<void, E, R>
  readonly decodePayload: ((payload: unknown) => Effect.Effect<P, { readonly message: string }>) | undefined
  /** Queues the XACK; the acker releases the entry once Redis answered. */
  readonly acknowledge: (id: string) => void
  /** Forgets the entry without acknowledging it (it stays pending for the group). */
  readonly release: (id: string) => void
  readonly stats: ConsumerStats
}

/** Backoff for Redis commands that must eventually happen (dead-lettering): forever, capped at 2 s. */
export const redisRetry = Schedule.min([Schedule.exponential("50 millis"), Schedule.spaced("2 seconds")]).pipe(
  Schedule.jittered
)

/** One line for whatever a handler failed with. */
export const describeCause = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  const tag = (error as { _tag?: unknown } | null)?._tag
  const text = describe(error)
  return typeof tag === "string" && !text.includes(tag) ? `${tag}: ${text}` : text
}

/** Builds the function that takes one delivery to its outcome. Never fails. */
export const makeProcess = <P, E, R>(ctx: DeliveryContext<P, E, R>) => {
  const { client, options, stats } = ctx
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
        "reason", reason, "delivery_count", String(delivery.deliveryCount), "dead_at", now,
        "group", options.group, "consumer", options.consumer, "entry_id", delivery.id
      ]).pipe(Effect.retry(redisRetry), Effect.orDie)
      stats.deadLettered++
      ctx.release(delivery.id)
      yield* Effect.logWarning("message dead-lettered").pipe(Effect.annotateLogs({ ...annotations(delivery), reason }))
    })

  const runHandler = (event: ConsumedEvent<P>) =>
    Effect.suspend(() => ctx.handler(event)).pipe(
      Effect.retry(options.retry),
      Effect.timeoutOrElse({
        duration: options.handlerTimeoutMillis,
        orElse: () => Effect.fail(new HandlerTimedOut({ entryId: event.id, timeoutMillis: options.handlerTimeoutMillis }))
      }),
      Effect.exit
    )

  return (delivery: Delivery): Effect.Effect<void, never, R> =>
    Effect.gen(function*() {
      if (delivery.fields === null) {
        // Deleted from the stream (trimmed) while pending: nothing left to handle.
        ctx.acknowledge(delivery.id)
        return
      }
      if (delivery.deliveryCount > options.maxDeliveries) {
        return yield* deadLetter(
          delivery,
          `delivered ${delivery.deliveryCount} times (maxDeliveries ${options.maxDeliveries}) without being acknowledged`
        )
      }
      const envelope = parseEnvelope(options.stream, delivery.id, delivery.fields, delivery.deliveryCount)
      if (Result.isFailure(envelope)) return yield* deadLetter(delivery, `malformed entry: ${envelope.failure}`)
      let event = envelope.success as ConsumedEvent<P>
      if (ctx.decodePayload !== undefined) {
        const decoded = yield* Effect.result(ctx.decodePayload(envelope.success.payload))
        if (Result.isFailure(decoded)) {
          return yield* deadLetter(delivery, `payload refused by the schema: ${decoded.failure.message}`)
        }
        event = { ...envelope.success, payload: decoded.success }
      }
      const exit = yield* runHandler(event)
      if (Exit.isSuccess(exit)) {
        stats.acked++
        ctx.acknowledge(delivery.id)
        return
      }
      stats.failed++
      const reason = Cause.hasInterruptsOnly(exit.cause) ? "handler interrupted" : describeCause(exit.cause)
      if (delivery.deliveryCount >= options.maxDeliveries) {
        return yield* deadLetter(delivery, `handler failed on delivery ${delivery.deliveryCount}: ${reason}`)
      }
      ctx.release(delivery.id)
      yield* Effect.logWarning("handler failed; message left pending for a later delivery").pipe(
        Effect.annotateLogs({ ...annotations(delivery), reason })
      )
    })
}
