/**
 * The consumer for applications without Effect: `startConsumer(options)` resolves once the group
 * exists and the consumer runs; `handle.stop()` stops it gracefully (running handlers finish, the
 * rest stays pending for the group).
 *
 * ```js
 * import { startConsumer } from "outbox-relay"
 * const consumer = await startConsumer({
 *   redisUrl: "redis://127.0.0.1:6379", stream: "outbox:orders", group: "mailer",
 *   handler: async (event) => { await sendMail(event.payload) }
 * })
 * process.once("SIGTERM", () => consumer.stop())
 * ```
 *
 * Or with typed events: `catalog` and `handlers` by event type instead of `handler`; each handler gets
 * its event's payload decoded and upgraded (src/events/Catalog.ts, docs/events.md).
 *
 * Built on the Effect `Consumer` (a `ManagedRuntime` owns its layer); the semantics are the same.
 */
import * as Effect from "effect/Effect"
import * as HttpServer from "effect/http/HttpServer"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Schedule from "effect/Schedule"
import postgres from "postgres"
import type { AnyEvent, EventCatalog, PayloadOf } from "../events/Catalog.js"
import type { RelaySettings } from "../relay/RelayConfig.js"
import { loggerLayer } from "../shared/Logging.js"
import { otlpTracerLayer } from "../shared/OtlpTracing.js"
import { postgresTarget, readPem, sslRootCert } from "../shared/Tls.js"
import { type AnyConsumerOptions, Consumer, make as makeConsumer } from "./Consumer.js"
import { metricsServer } from "./ConsumerMetrics.js"
import type { ConsumerStats } from "./Delivery.js"
import type { ConsumedEvent } from "./Envelope.js"
import { ConsumerOptionsInvalid } from "./Errors.js"
import { withInbox } from "./Inbox.js"
import type { ConsumerTls, StartFrom, UnknownEvents } from "./Options.js"
import { type AnyHandler, directResultAsEffect, PendingCall, withDirectCall } from "./Routing.js"

/** What the handler gets besides the event. `sql` is the inbox transaction (undefined without inbox). */
export interface HandlerContext<Tx> {
  /** Aborted when the delivery times out or the consumer is stopped past `stopTimeoutMs`. */
  readonly signal: AbortSignal
  readonly sql: Tx
}

export type Handler<Tx, P> = (event: ConsumedEvent<P>, context: HandlerContext<Tx>) => Promise<void> | void

export interface InboxOptions {
  /** Your postgres.js client; or `databaseUrl` to let the consumer open (and close) one. */
  readonly sql?: postgres.Sql<any>
  readonly databaseUrl?: string
  /** Schema of `outbox_inbox` (the relay's RELAY_SCHEMA). Default "public". */
  readonly schema?: string
}

export interface BaseConsumerOptions {
  /** redis:// or rediss:// URL; for a cluster, its seed nodes: `redis://host1:port1,host2:port2`. */
  readonly redisUrl: string
  /** The URL's hosts are seed nodes of a Redis Cluster. Default false. */
  readonly cluster?: boolean
  /** For a `rediss://` URL: CA, client certificate and key, as file paths or PEM (see `ConsumerTls`). */
  readonly tls?: ConsumerTls
  /** Stream key: `RELAY_STREAM_PREFIX` + topic, e.g. "outbox:orders". */
  readonly stream: string
  readonly group: string
  /** Unique per process; default `<hostname>-<pid>-<random>`. */
  readonly consumer?: string
  /** Handlers running at once. Default 16. */
  readonly concurrency?: number
  /** Handle the entries of one aggregate_id one after the other, in stream order. Default false. */
  readonly orderByAggregate?: boolean
  /** Only when the group is created: "beginning" (default) or "new". */
  readonly startFrom?: StartFrom
  /** A message delivered this many times without success goes to `{<stream>}:dlq`. Default 5. */
  readonly maxDeliveries?: number
  /** Retries within one delivery (jittered exponential backoff from `retryDelayMs`). Default 3. */
  readonly retries?: number
  readonly retryDelayMs?: number
  /** Longest one delivery may take, retries included. Default 30000. */
  readonly handlerTimeoutMs?: number
  /** Unacknowledged messages idle this long are taken over by another consumer. Default 60000. */
  readonly claimIdleMs?: number
  readonly claimIntervalMs?: number
  /** BLOCK of one XREADGROUP. Default 2000. */
  readonly blockMs?: number
  /** Entries per read (COUNT). Default 500. */
  readonly batchSize?: number
  /** On stop, how long running handlers may take. Default 10000. */
  readonly stopTimeoutMs?: number
  /**
   * Serve the consumers' Prometheus metrics on `http://<metricsHost>:<metricsPort>/metrics` (0 picks a
   * free port; see `ConsumerHandle.metricsUrl`). Default: no server (see `prometheusText()`).
   */
  readonly metricsPort?: number
  /** Host of the metrics server. Default "127.0.0.1". */
  readonly metricsHost?: string
  readonly logLevel?: RelaySettings["logLevel"]
  readonly logFormat?: RelaySettings["logFormat"]
  /**
   * Base URL of an OTLP/HTTP collector (`http://127.0.0.1:4318`): each handler runs in a span whose
   * parent is the producer's span (`headers.traceparent`), exported as OTLP/JSON. Default: no tracing.
   */
  readonly otlpEndpoint?: string
  /** `service.name` of those spans. Default: `OTEL_SERVICE_NAME`, else the group. */
  readonly serviceName?: string
}

/** Options with the inbox: the handler gets the transaction as `sql`. */
export interface InboxConsumerOptions<P = any> extends BaseConsumerOptions {
  readonly inbox: InboxOptions
  readonly handler: Handler<postgres.TransactionSql<any>, P>
  readonly catalog?: undefined
}

/** Options without the inbox. */
export interface PlainConsumerOptions<P = any> extends BaseConsumerOptions {
  readonly inbox?: undefined
  readonly handler: Handler<undefined, P>
  readonly catalog?: undefined
}

/** Handlers by event type of the catalog, each typed by its event's payload. */
export type TypedHandlers<Events extends AnyEvent, Tx> = {
  readonly [T in Events["type"]]?: Handler<Tx, PayloadOf<Extract<Events, { readonly type: T }>>>
}

/**
 * Typed events: entries are routed by `event_type` to `handlers`; a payload its event refuses (after
 * upgrading an older version) is poison, dead-lettered with the decode error and never retried.
 */
export interface CatalogOptions<Events extends AnyEvent> {
  readonly catalog: EventCatalog<Events>
  /** Entries of a type without a handler: "ack" (default; counted in `stats().skipped`) or "dead-letter". */
  readonly unknownEvents?: UnknownEvents
  readonly handler?: undefined
}

/** Typed events without the inbox. */
export interface PlainCatalogConsumerOptions<Events extends AnyEvent = AnyEvent>
  extends BaseConsumerOptions, CatalogOptions<Events>
{
  readonly inbox?: undefined
  readonly handlers: TypedHandlers<Events, undefined>
}

/** Typed events with the inbox: each handler gets the transaction as `sql`. */
export interface InboxCatalogConsumerOptions<Events extends AnyEvent = AnyEvent>
  extends BaseConsumerOptions, CatalogOptions<Events>
{
  readonly inbox: InboxOptions
  readonly handlers: TypedHandlers<Events, postgres.TransactionSql<any>>
}

export type StartConsumerOptions<P = any> =
  | PlainConsumerOptions<P>
  | InboxConsumerOptions<P>
  | PlainCatalogConsumerOptions
  | InboxCatalogConsumerOptions

export interface ConsumerHandle {
  /** This consumer's name in the group. */
  readonly name: string
  /** Stops reading, lets running handlers finish (up to `stopTimeoutMs`), closes the connections. */
  readonly stop: () => Promise<void>
  readonly stats: () => ConsumerStats & { readonly held: number }
  /** Where the metrics server listens (`http://host:port/metrics`), when `metricsPort` was given. */
  readonly metricsUrl: string | undefined
}

/** A handler's context; a class, so the lazy `signal` getter is not made again for every call. */
class CallContext<Tx> implements HandlerContext<Tx> {
  controller: AbortController | undefined = undefined
  constructor(readonly sql: Tx) {}
  get signal() {
    return (this.controller ??= new AbortController()).signal
  }
}

/**
 * Calls a handler: undefined when it returned without a promise (no promise, no AbortController, no
 * effect), a `PendingCall` for a promise, else the effect that fails with what it threw. The signal is
 * made only when the handler reads it, and aborted when the delivery is interrupted.
 */
const callHandler = <Tx, P>(
  handler: Handler<Tx, P>,
  event: ConsumedEvent<P>,
  sql: Tx
): Effect.Effect<void, unknown> | PendingCall | undefined => {
  const context = new CallContext(sql)
  let result: Promise<void> | void
  try {
    result = handler(event, context)
  } catch (error) {
    return Effect.fail(error)
  }
  return Predicate.isPromiseLike(result) ? new PendingCall(result, () => context.controller?.abort()) : undefined
}

/** Starts a consumer; rejects when an option is invalid or Redis cannot be reached to create the group. */
export function startConsumer<P = any>(options: InboxConsumerOptions<P>): Promise<ConsumerHandle>
export function startConsumer<P = any>(options: PlainConsumerOptions<P>): Promise<ConsumerHandle>
export function startConsumer<Events extends AnyEvent>(
  options: InboxCatalogConsumerOptions<Events>
): Promise<ConsumerHandle>
// Last, so a mismatched typed handler is reported at the handler itself.
export function startConsumer<Events extends AnyEvent>(
  options: PlainCatalogConsumerOptions<Events>
): Promise<ConsumerHandle>
export function startConsumer<P = any>(options: StartConsumerOptions<P>): Promise<ConsumerHandle> {
  return start(options)
}

/** The inbox URL as postgres.js is to open it: `sslrootcert` read (once) and verified as `verify-full`. */
const inboxTarget = (url: string) => {
  if (!URL.canParse(url)) return { url, ssl: undefined }
  const rootCert = sslRootCert(url)
  const read = rootCert === undefined ? undefined : readPem(rootCert)
  if (read !== undefined && "error" in read) {
    throw new ConsumerOptionsInvalid({
      option: "inbox.databaseUrl",
      message: `inbox.databaseUrl sslrootcert ${JSON.stringify(rootCert)}: ${read.error}`
    })
  }
  return postgresTarget(url, read?.pem)
}

const start = async <P>(options: StartConsumerOptions<P>): Promise<ConsumerHandle> => {
  if (options.otlpEndpoint !== undefined && !/^https?:\/\/[^/\s]/.test(options.otlpEndpoint)) {
    throw new ConsumerOptionsInvalid({ option: "otlpEndpoint", message: "otlpEndpoint must be an http(s) URL" })
  }
  const ms = (value: number | undefined) => value === undefined ? undefined : Math.max(0, value)
  let inboxClient: postgres.Sql<any> | undefined
  const ownClient = options.inbox !== undefined && options.inbox.sql === undefined
  if (options.inbox !== undefined) {
    const target = options.inbox.sql === undefined ? inboxTarget(options.inbox.databaseUrl ?? "") : undefined
    inboxClient = options.inbox.sql ??
      postgres(target!.url, {
        ...(target!.ssl === undefined ? {} : { ssl: target!.ssl }),
        max: options.concurrency ?? 16,
        onnotice: () => {},
        fetch_types: false
      })
  }
  const inbox = options.inbox === undefined ? undefined : {
    sql: inboxClient!,
    group: options.group,
    ...(options.inbox.schema ? { schema: options.inbox.schema } : {})
  }
  /** A promise handler as an Effect one, in its own inbox transaction when there is an inbox. */
  const wrap = (userHandler: Handler<any, any>): AnyHandler<unknown, never> =>
    inbox !== undefined
      ? withInbox<unknown, unknown, never>(
        inbox,
        (event, tx) =>
          // With the inbox, the handler must not outlive its transaction: a query it sends after the
          // rollback would run outside it (postgres.js runs it in autocommit), so its effect would escape
          // the inbox. Interrupting it waits until its promise settles.
          Effect.suspend(() => directResultAsEffect(callHandler(userHandler, event, tx), true))
      )
      : withDirectCall((event) => callHandler(userHandler, event, undefined))
  const handling = options.catalog === undefined
    ? { handler: wrap(options.handler) }
    : {
      catalog: options.catalog,
      handlers: Object.fromEntries(
        Object.entries(options.handlers as Record<string, Handler<any, any> | undefined>).flatMap(([type, h]) =>
          h === undefined ? [] : [[type, wrap(h)]]
        )
      ),
      ...(options.unknownEvents === undefined ? {} : { unknownEvents: options.unknownEvents })
    }

  const consumerLayer = Layer.effect(
    Consumer,
    makeConsumer({
      redisUrl: options.redisUrl,
      ...(options.cluster === undefined ? {} : { cluster: options.cluster }),
      ...(options.tls === undefined ? {} : { tls: options.tls }),
      stream: options.stream,
      group: options.group,
      ...handling,
      retry: Schedule.exponential(`${options.retryDelayMs ?? 100} millis`).pipe(
        Schedule.jittered,
        Schedule.upTo({ times: options.retries ?? 3 })
      ),
      ...(options.consumer === undefined ? {} : { consumer: options.consumer }),
      ...(options.concurrency === undefined ? {} : { concurrency: options.concurrency }),
      ...(options.orderByAggregate === undefined ? {} : { orderByAggregate: options.orderByAggregate }),
      ...(options.startFrom === undefined ? {} : { startFrom: options.startFrom }),
      ...(options.maxDeliveries === undefined ? {} : { maxDeliveries: options.maxDeliveries }),
      ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }),
      ...(ms(options.handlerTimeoutMs) === undefined ? {} : { handlerTimeout: ms(options.handlerTimeoutMs)! }),
      ...(ms(options.claimIdleMs) === undefined ? {} : { claimIdle: ms(options.claimIdleMs)! }),
      ...(ms(options.claimIntervalMs) === undefined ? {} : { claimInterval: ms(options.claimIntervalMs)! }),
      ...(ms(options.blockMs) === undefined ? {} : { block: ms(options.blockMs)! }),
      ...(ms(options.stopTimeoutMs) === undefined ? {} : { stopTimeout: ms(options.stopTimeoutMs)! })
    } as AnyConsumerOptions<unknown, unknown, never>)
  ).pipe(Layer.provide(loggerLayer({ logLevel: options.logLevel ?? "info", logFormat: options.logFormat ?? "json" })))
  // The tracer's scope closes after the consumer's, so `stop` sends the last handler spans.
  const tracedConsumer = options.otlpEndpoint === undefined ? consumerLayer : consumerLayer.pipe(
    Layer.provide(otlpTracerLayer({
      endpoint: options.otlpEndpoint,
      serviceName: options.serviceName ?? process.env.OTEL_SERVICE_NAME ?? options.group
    }))
  )
  const layer = options.metricsPort === undefined
    ? tracedConsumer
    : Layer.merge(tracedConsumer, metricsServer({ port: options.metricsPort, host: options.metricsHost }))

  const closeInbox = async () => {
    if (ownClient && inboxClient) await inboxClient.end({ timeout: 5 }).catch(() => {})
  }
  const runtime = ManagedRuntime.make(layer)
  try {
    const { consumer, metricsUrl } = await runtime.runPromise(Effect.gen(function*() {
      const consumer = yield* Consumer
      const server = yield* Effect.serviceOption(HttpServer.HttpServer)
      const metricsUrl = Option.isSome(server) ? `${HttpServer.formatAddress(server.value.address)}/metrics` : undefined
      return { consumer, metricsUrl }
    }))
    let stopping: Promise<void> | undefined
    return {
      name: consumer.name,
      stop: () => (stopping ??= runtime.dispose().finally(closeInbox)),
      stats: () => runtime.runSync(consumer.stats),
      metricsUrl
    }
  } catch (error) {
    await runtime.dispose().catch(() => {})
    await closeInbox()
    throw error
  }
}
