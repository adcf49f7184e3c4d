/**
 * The consumer: reads a Redis stream as a member of a consumer group and hands each entry to a
 * handler, at least once, acknowledging (XACK) only after the handler succeeded.
 *
 * Fibers, all in the layer's scope:
 * - reader: first this consumer's own pending entries (what a previous incarnation, or a lost read,
 *   left unacknowledged), then `XREADGROUP ... BLOCK` for new ones, on its own connection. After any
 *   failure (Redis down, watchdog, group gone) it backs off, recreates the group when missing, and
 *   reads its own pending entries again before new ones.
 * - reclaimer: every `claimInterval`, `XAUTOCLAIM` takes over entries idle for `claimIdle` (their
 *   consumer died, or their delivery failed): that is how a failed message gets its next delivery.
 * - renewer: every `claimIdle / 3`, resets the idle time of entries this consumer holds, so entries
 *   queued behind a slow aggregate are not mistaken for abandoned ones.
 * - acker: sends the XACKs of finished handlers in batches (one command per batch).
 * - poller: every 5 seconds, the group's lag and pending count for the metrics (ConsumerMetrics).
 * - workers (see Dispatcher): the handlers, `concurrency` at a time, in order per aggregate if asked.
 *
 * Stop (scope close, or `stop`): no new reads (the blocked read is cut by closing its connection),
 * queued entries are not started, running handlers get `stopTimeout` to finish, their XACKs are
 * flushed; whatever is not acknowledged stays pending for the group and is reclaimed later.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Tracer from "effect/Tracer"
import type { AnyEvent } from "../events/Catalog.js"
import { isRealTracer } from "../shared/OtlpTracing.js"
import { retryRedis } from "../shared/Retry.js"
import { groupPollEvery, makeConsumerMetrics } from "./ConsumerMetrics.js"
import { type ConsumerStats, makeProcess } from "./Delivery.js"
import { type Dispatcher, makeDispatcher } from "./Dispatcher.js"
import type { ConsumerOptionsInvalid, ConsumerRedisUnavailable } from "./Errors.js"
import { makeGroupClient } from "./GroupClient.js"
import {
  type CatalogConsumerOptions,
  type CatalogHandlers,
  type ConsumerOptions,
  type HandlersContext,
  resolveOptions
} from "./Options.js"
import { type AnyHandler, makeRouter } from "./Routing.js"

export class Consumer extends Context.Service<Consumer, {
  /** This consumer's name in the group. */
  readonly name: string
  /** Stops gracefully (see the module doc); idempotent. The layer's scope closing does the same. */
  readonly stop: Effect.Effect<void>
  /** What it did so far, and how many entries it holds now. */
  readonly stats: Effect.Effect<ConsumerStats & { readonly held: number }>
}>()("outbox-relay/consumer/Consumer") {
  /**
   * A running consumer for as long as the layer lives. Fails to build on bad options or when Redis never
   * answers. Takes one `handler`, or a `catalog` and `handlers` by event type.
   */
  static readonly layer: {
    <P = unknown, E = never, R = never>(
      options: ConsumerOptions<P, E, R>
    ): Layer.Layer<Consumer, ConsumerOptionsInvalid | ConsumerRedisUnavailable, R>
    <Events extends AnyEvent, H extends CatalogHandlers<Events>>(
      options: CatalogConsumerOptions<Events, H>
    ): Layer.Layer<Consumer, ConsumerOptionsInvalid | ConsumerRedisUnavailable, HandlersContext<H>>
  } = (options: ConsumerOptions<any, any, any> | CatalogConsumerOptions<AnyEvent, any>) =>
    Layer.effect(Consumer, make(options as ConsumerOptions<unknown, unknown, never>))
}

/** Options of either kind, as `make` takes them. */
export type AnyConsumerOptions<P, E, R> =
  | ConsumerOptions<P, E, R>
  | CatalogConsumerOptions<AnyEvent, { readonly [type: string]: AnyHandler<E, R> }>

/** Starts a consumer in the current scope (`Consumer.layer` wraps this). */
export const make = Effect.fnUntraced(function*<P, E, R>(userOptions: AnyConsumerOptions<P, E, R>) {
  const options = yield* resolveOptions(userOptions)
  const route = userOptions.catalog === undefined
    ? undefined
    : yield* makeRouter<E, R>(userOptions.catalog, userOptions.handlers)
  const scope = yield* Scope.Scope
  const client = yield* makeGroupClient(options)
  const logContext = { stream: options.stream, group: options.group, consumer: options.consumer }
  const stats: ConsumerStats = { acked: 0, failed: 0, deadLettered: 0, skipped: 0 }
  const metrics = yield* makeConsumerMetrics(options.stream, options.group)

  // The group must exist before `make` returns: with startFrom "new", entries added after that are seen.
  yield* client.ensureGroup(options.startFrom === "new" ? "$" : "0").pipe(
    Effect.retry(
      Schedule.max([retryRedis, Schedule.during(Duration.millis(Math.max(options.commandTimeoutMillis, 2_000)))])
    )
  )

  const acks = yield* Queue.unbounded<string>()
  let unacked = 0
  // Handler spans only when the application installed a tracer (Effect's default exports nothing).
  const tracing = isRealTracer(yield* Tracer.Tracer)
  const decode = userOptions.payloadSchema === undefined
    ? undefined
    : Schema.decodeUnknownEffect(userOptions.payloadSchema)
  // Catalog mode has no single handler: every entry goes through `route`.
  const noHandler = () => Effect.die(new Error("catalog consumer without a route"))
  const clock = yield* Clock.Clock
  const delivery = makeProcess({
    options,
    client,
    handler: userOptions.handler ?? noHandler,
    decodePayload: decode,
    route,
    acknowledge: (id) => {
      dispatcher.finish(id)
      unacked++
      Queue.offerUnsafe(acks, id)
    },
    release: (id) => dispatcher.release(id),
    tracing,
    stats,
    metrics
  }, clock)
  const dispatcher: Dispatcher<R> = yield* makeDispatcher({
    concurrency: options.concurrency,
    orderByAggregate: options.orderByAggregate,
    maxInFlight: options.batchSize * 2,
    batchSize: options.batchSize,
    handlerTimeoutMillis: options.handlerTimeoutMillis,
    process: delivery.process,
    timedOut: delivery.timedOut
  })
  yield* dispatcher.start

  /** Logs the first failure of a streak and the recovery, not every retry. */
  const failureLog = (loop: string) => {
    let failing = false
    return {
      failed: (error: ConsumerRedisUnavailable) =>
        failing ? Effect.void : Effect.sync(() => (failing = true)).pipe(
          Effect.andThen(Effect.logWarning(`consumer ${loop} failed; retrying`)),
          Effect.annotateLogs({ ...logContext, operation: error.operation, reason: error.message })
        ),
      succeeded: Effect.suspend(() =>
        failing
          ? Effect.sync(() => (failing = false)).pipe(
            Effect.andThen(Effect.logInfo(`consumer ${loop} working again`)),
            Effect.annotateLogs(logContext)
          )
          : Effect.void
      )
    }
  }

  const dispatchAll = dispatcher.dispatchAll

  /** Re-reads this consumer's own pending list from the start, dispatching what is not held already. */
  const readOwnPending = Effect.gen(function*() {
    let cursor = "0"
    while (true) {
      const deliveries = yield* client.readOwnPending(cursor, options.batchSize)
      if (deliveries.length === 0) return
      yield* dispatcher.awaitRoom
      yield* dispatchAll(deliveries)
      cursor = deliveries[deliveries.length - 1]!.id
    }
  })

  const readLog = failureLog("read")
  const readLoop = Effect.gen(function*() {
    yield* readOwnPending
    while (true) {
      yield* dispatcher.awaitRoom
      const deliveries = yield* client.readNew(options.batchSize)
      yield* readLog.succeeded
      yield* dispatchAll(deliveries)
    }
  }).pipe(
    Effect.catch((error: ConsumerRedisUnavailable) =>
      Effect.gen(function*() {
        yield* readLog.failed(error)
        if (error.message.includes("NOGROUP")) {
          // The stream or the group is gone (Redis restarted without persistence, or XGROUP DESTROY):
          // recreate it from the beginning, so nothing added since is skipped.
          yield* client.ensureGroup("0").pipe(Effect.ignore)
        }
        return yield* Effect.fail(error)
      })
    ),
    Effect.retry(retryRedis),
    Effect.orDie
  )

  const reclaimLog = failureLog("reclaim")
  const reclaimOnce = Effect.gen(function*() {
    let cursor = "0-0"
    do {
      yield* dispatcher.awaitRoom
      const { next, deliveries } = yield* client.reclaimIdle(cursor, options.batchSize)
      if (deliveries.length > 0) {
        metrics.reclaimed(deliveries.length)
        yield* Effect.logInfo("reclaimed idle messages").pipe(
          Effect.annotateLogs({ ...logContext, count: deliveries.length })
        )
      }
      yield* dispatchAll(deliveries)
      cursor = next
    } while (cursor !== "0-0")
    yield* reclaimLog.succeeded
  }).pipe(Effect.catch((error: ConsumerRedisUnavailable) => reclaimLog.failed(error)))

  const renewLog = failureLog("renew")
  const renewOnce = Effect.suspend(() => client.renew(dispatcher.held())).pipe(
    Effect.tap((lost) =>
      lost.length === 0 ? Effect.void : Effect.logWarning("held messages were taken over by another consumer").pipe(
        Effect.annotateLogs({ ...logContext, entry_ids: lost.slice(0, 10).join(",") })
      )
    ),
    Effect.andThen(renewLog.succeeded),
    Effect.catch((error: ConsumerRedisUnavailable) => renewLog.failed(error))
  )

  const ackLog = failureLog("ack")
  const ackLoop = Effect.forever(Effect.gen(function*() {
    const ids = yield* Queue.takeAll(acks)
    yield* client.ack(ids).pipe(
      // A missing group has nothing left to acknowledge.
      Effect.catchIf((error) => error.message.includes("NOGROUP"), () => Effect.void),
      Effect.tapError(ackLog.failed),
      Effect.retry(retryRedis),
      Effect.orDie
    )
    yield* ackLog.succeeded
    for (const id of ids) dispatcher.release(id)
    unacked -= ids.length
  }))

  /** The group's lag and pending count, and what this consumer holds, into their gauges. */
  const pollGroup = Effect.suspend(() => {
    metrics.inFlight(dispatcher.heldCount())
    return client.groupInfo
  }).pipe(
    Effect.tap((info) => Effect.sync(() => metrics.group(info))),
    Effect.ignore
  )

  const reader = yield* Effect.forkIn(readLoop, scope)
  const reclaimer = yield* Effect.forkIn(
    Effect.repeat(reclaimOnce, Schedule.spaced(Duration.millis(options.claimIntervalMillis))),
    scope
  )
  const renewer = yield* Effect.forkIn(
    Effect.repeat(Effect.delay(renewOnce, Duration.millis(options.renewIntervalMillis)), Schedule.forever),
    scope
  )
  const acker = yield* Effect.forkIn(ackLoop, scope)
  const poller = yield* Effect.forkIn(Effect.repeat(pollGroup, groupPollEvery), scope)

  const waitForAcks = Effect.gen(function*() {
    while (unacked > 0) yield* Effect.sleep("5 millis")
  }).pipe(Effect.timeoutOption(Duration.millis(options.commandTimeoutMillis)))

  // `stop` runs in the caller's fiber or in a finalizer; either way, log with this consumer's logger.
  const context = yield* Effect.context<never>()
  const stop = yield* Effect.cached(
    Effect.gen(function*() {
      yield* Effect.logInfo("consumer stopping").pipe(Effect.annotateLogs(logContext))
      yield* dispatcher.close
      yield* client.closeBlocking
      yield* Fiber.interruptAll([reader, reclaimer])
      const finished = yield* dispatcher.awaitRunning.pipe(
        Effect.timeoutOption(Duration.millis(options.stopTimeoutMillis))
      )
      if (finished._tag === "None") {
        yield* Effect.logWarning(
          "handlers still running after stopTimeout were interrupted; their messages stay pending"
        )
          .pipe(Effect.annotateLogs(logContext))
        // Bounded: a worker settling a timed-out delivery while Redis is down would otherwise hold us.
        yield* dispatcher.interruptRunning.pipe(Effect.timeoutOption(Duration.millis(options.commandTimeoutMillis)))
      }
      yield* waitForAcks
      yield* Fiber.interruptAll([renewer, acker, poller])
      metrics.inFlight(0)
      yield* Effect.logInfo("consumer stopped").pipe(Effect.annotateLogs({ ...logContext, ...stats }))
    }).pipe(Effect.uninterruptible, Effect.provideContext(context))
  )
  // Registered last, so it runs first when the scope closes: before the connections are closed.
  yield* Scope.addFinalizer(scope, stop)

  yield* Effect.logInfo("consumer started").pipe(Effect.annotateLogs(logContext))
  return Consumer.of({
    name: options.consumer,
    stop,
    stats: Effect.sync(() => ({ ...stats, held: dispatcher.heldCount() }))
  })
})
