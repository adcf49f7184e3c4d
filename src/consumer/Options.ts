/**
 * The consumer's options, their defaults, and the checks that refuse a combination that cannot work.
 *
 * The one rule that matters for correctness: `claimIdle` (how long a message must sit unacknowledged
 * before another consumer may take it over) is above `handlerTimeout` (the longest a delivery may
 * run), so a message is never reclaimed while a live handler may still be working on it. Messages a
 * consumer holds but has not finished (queued behind others of their aggregate, or running) have their
 * idle time reset every `claimIdle / 3`, so a long local queue does not make them look abandoned.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type * as Schedule from "effect/Schedule"
import type * as Schema from "effect/Schema"
import { randomBytes } from "node:crypto"
import { hostname } from "node:os"
import type { AnyEvent, EventCatalog, PayloadOf } from "../events/Catalog.js"
import { clusterMismatch, parseRedisUrl } from "../shared/RedisClient.js"
import { defaultHandlerRetry } from "../shared/Retry.js"
import { readPem, type RedisTls } from "../shared/Tls.js"
import type { ConsumedEvent } from "./Envelope.js"
import { ConsumerOptionsInvalid } from "./Errors.js"

/** Where a group created by the consumer starts: every entry already in the stream, or only new ones. */
export type StartFrom = "beginning" | "new"

/** What happens to an entry no handler takes (its type is not in `handlers`): acknowledged, or dead-lettered. */
export type UnknownEvents = "ack" | "dead-letter"

/** A consumer with one handler for every entry. */
export interface ConsumerOptions<P, E, R> extends ConsumerSettings {
  readonly handler: (event: ConsumedEvent<P>) => Effect.Effect<void, E, R>
  /** Decodes `payload` (parsed JSON); a payload it refuses is poison (dead-lettered, not retried). */
  readonly payloadSchema?: Schema.Decoder<P>
  readonly catalog?: undefined
  readonly handlers?: undefined
}

/** Handlers by event type: each gets its event's payload decoded (and upgraded) by the catalog. */
export type CatalogHandlers<Events extends AnyEvent> = {
  readonly [T in Events["type"]]?: (
    event: ConsumedEvent<PayloadOf<Extract<Events, { readonly type: T }>>>
  ) => Effect.Effect<void, any, any>
}

/** The failures of the handlers in `H`. */
export type HandlersError<H> = {
  [K in keyof H]: H[K] extends (event: any) => Effect.Effect<any, infer E, any> ? E : never
}[keyof H]

/** The services the handlers in `H` need. */
export type HandlersContext<H> = {
  [K in keyof H]: H[K] extends (event: any) => Effect.Effect<any, any, infer R> ? R : never
}[keyof H]

/**
 * A consumer routing entries by `event_type` to typed handlers. An entry whose payload its event's
 * schema refuses (after the upgrades) is poison: dead-lettered with the decode error, never retried.
 */
export interface CatalogConsumerOptions<Events extends AnyEvent, H extends CatalogHandlers<Events>>
  extends ConsumerSettings
{
  readonly catalog: EventCatalog<Events>
  /** Keys are event type names of the catalog (checked: a handler for a type it lacks is refused). */
  readonly handlers: H & { readonly [K in Exclude<keyof H, Events["type"]>]: never }
  /** Entries of a type without a handler. Default "ack" (counted in `skipped`). */
  readonly unknownEvents?: UnknownEvents
  readonly handler?: undefined
  readonly payloadSchema?: undefined
}

/** What every consumer takes, whatever its handlers. */
export interface ConsumerSettings {
  /** redis:// or rediss:// URL; for a cluster, its seed nodes: `redis://host1:port1,host2:port2`. */
  readonly redisUrl: string | Redacted.Redacted<string>
  /** The URL's hosts are seed nodes of a Redis Cluster. Default false. */
  readonly cluster?: boolean
  /**
   * For a `rediss://` URL: the CA to verify Redis with and a client certificate and key. Each a file
   * path, or the PEM itself (a Buffer, or a string starting with `-----BEGIN`); files are read once at start.
   */
  readonly tls?: ConsumerTls
  /** The stream key, e.g. `outbox:orders` (`RELAY_STREAM_PREFIX` + topic). */
  readonly stream: string
  readonly group: string
  /** Unique per process; default `<hostname>-<pid>-<random>`. */
  readonly consumer?: string
  /** Used only when the group does not exist yet. Default "beginning" (`XGROUP CREATE ... 0`). */
  readonly startFrom?: StartFrom
  /** Handlers running at once. Default 16. */
  readonly concurrency?: number
  /** Entries of one `aggregate_id` are handled one after the other, in stream order. Default false. */
  readonly orderByAggregate?: boolean
  /**
   * Entries asked for per XREADGROUP (COUNT). Default 500: a read of 500 costs about the round trip of a
   * read of 200, so fast handlers spend less per message (docs/benchmarks.md). At most twice this many are
   * held at once.
   */
  readonly batchSize?: number
  /** BLOCK of one read. Default 2 seconds. */
  readonly block?: Duration.Input
  /** A read not answered within `block + blockGrace` means a dead connection: it is replaced. Default 5 s. */
  readonly blockGrace?: Duration.Input
  /** A message delivered this many times without success is dead-lettered. Default 5. */
  readonly maxDeliveries?: number
  /** Longest one delivery may take, all its retries included. Default 30 seconds. */
  readonly handlerTimeout?: Duration.Input
  /** Retries of a failed handler within one delivery. Default: 3 retries, jittered exponential from 100 ms. */
  readonly retry?: Schedule.Schedule<unknown, unknown>
  /** Idle time after which pending messages (of dead consumers, or failed deliveries) are reclaimed. Default 60 s. */
  readonly claimIdle?: Duration.Input
  /** How often to look for such messages. Default: `claimIdle / 2`, at most 30 seconds. */
  readonly claimInterval?: Duration.Input
  /** On stop, how long handlers already running may take to finish. Default 10 seconds. */
  readonly stopTimeout?: Duration.Input
  /** Timeout of the non-blocking commands (XACK, XAUTOCLAIM, XADD to the DLQ). Default 5 seconds. */
  readonly commandTimeout?: Duration.Input
}

/** TLS files or PEM for a `rediss://` consumer. */
export interface ConsumerTls {
  readonly ca?: string | Buffer
  readonly cert?: string | Buffer
  readonly key?: string | Buffer
}

/** Reads the TLS files named in `tls`; a file that cannot be read, or TLS on `redis://`, is refused. */
const resolveTls = (tls: ConsumerTls | undefined, redisUrl: string) =>
  Effect.gen(function*() {
    if (tls === undefined) return undefined
    if (!redisUrl.startsWith("rediss://")) {
      return yield* new ConsumerOptionsInvalid({ option: "tls", message: "tls needs a rediss:// redisUrl" })
    }
    if ((tls.cert === undefined) !== (tls.key === undefined)) {
      return yield* new ConsumerOptionsInvalid({ option: "tls", message: "tls.cert and tls.key go together" })
    }
    const resolved: { ca?: Buffer | string; cert?: Buffer | string; key?: Buffer | string } = {}
    for (const which of ["ca", "cert", "key"] as const) {
      const value = tls[which]
      if (value === undefined) continue
      if (typeof value !== "string" || value.trimStart().startsWith("-----BEGIN")) {
        resolved[which] = value
        continue
      }
      const read = readPem(value)
      if ("error" in read) {
        return yield* new ConsumerOptionsInvalid({
          option: `tls.${which}`,
          message: `tls.${which} ${JSON.stringify(value)}: ${read.error}`
        })
      }
      resolved[which] = read.pem
    }
    return resolved satisfies RedisTls
  })

/** The options with every default filled in and every duration in milliseconds. */
export interface ResolvedOptions {
  readonly redisUrl: Redacted.Redacted<string>
  readonly cluster: boolean
  readonly tls: RedisTls | undefined
  readonly stream: string
  readonly group: string
  readonly consumer: string
  readonly startFrom: StartFrom
  readonly concurrency: number
  readonly orderByAggregate: boolean
  readonly batchSize: number
  readonly blockMillis: number
  readonly blockGraceMillis: number
  readonly maxDeliveries: number
  readonly handlerTimeoutMillis: number
  readonly retry: Schedule.Schedule<unknown, unknown>
  readonly claimIdleMillis: number
  readonly claimIntervalMillis: number
  readonly renewIntervalMillis: number
  readonly stopTimeoutMillis: number
  readonly commandTimeoutMillis: number
  readonly unknownEvents: UnknownEvents
}

/** `<hostname>-<pid>-<random>`: unique per process, readable in XINFO CONSUMERS. */
export const defaultConsumerName = (): string => `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`

const millis = (option: string, input: Duration.Input | undefined, fallback: number, min = 1) =>
  Effect.gen(function*() {
    if (input === undefined) return fallback
    const duration = Duration.fromInput(input)
    if (
      duration._tag === "None" || !Number.isFinite(Duration.toMillis(duration.value)) ||
      Duration.toMillis(duration.value) < min
    ) {
      return yield* new ConsumerOptionsInvalid({
        option,
        message: `${option} must be a finite duration of at least ${min} ms`
      })
    }
    return Math.ceil(Duration.toMillis(duration.value))
  })

const positiveInt = (option: string, value: number | undefined, fallback: number, max: number) =>
  Effect.gen(function*() {
    if (value === undefined) return fallback
    if (!Number.isInteger(value) || value < 1 || value > max) {
      return yield* new ConsumerOptionsInvalid({ option, message: `${option} must be an integer from 1 to ${max}` })
    }
    return value
  })

/** Fills in defaults; fails with `ConsumerOptionsInvalid` naming the first option that cannot work. */
export const resolveOptions = Effect.fnUntraced(function*(
  options: ConsumerSettings & { readonly unknownEvents?: UnknownEvents | undefined }
) {
  const required = (option: string, value: string) =>
    value === "" ? new ConsumerOptionsInvalid({ option, message: `${option} must not be empty` }) : undefined
  for (const [option, value] of [["stream", options.stream], ["group", options.group]] as const) {
    const error = required(option, value ?? "")
    if (error) return yield* error
  }
  const handlerTimeoutMillis = yield* millis("handlerTimeout", options.handlerTimeout, 30_000)
  const claimIdleMillis = yield* millis("claimIdle", options.claimIdle, Math.max(60_000, handlerTimeoutMillis * 2))
  if (claimIdleMillis <= handlerTimeoutMillis) {
    return yield* new ConsumerOptionsInvalid({
      option: "claimIdle",
      message: `claimIdle (${claimIdleMillis} ms) must be above handlerTimeout (${handlerTimeoutMillis} ms), ` +
        "or messages could be reclaimed while their handler is still running"
    })
  }
  const startFrom = options.startFrom ?? "beginning"
  if (startFrom !== "beginning" && startFrom !== "new") {
    return yield* new ConsumerOptionsInvalid({ option: "startFrom", message: `startFrom must be "beginning" or "new"` })
  }
  const unknownEvents = options.unknownEvents ?? "ack"
  if (unknownEvents !== "ack" && unknownEvents !== "dead-letter") {
    return yield* new ConsumerOptionsInvalid({
      option: "unknownEvents",
      message: `unknownEvents must be "ack" or "dead-letter"`
    })
  }
  const redisUrl = typeof options.redisUrl === "string" ? Redacted.make(options.redisUrl) : options.redisUrl
  const target = parseRedisUrl(Redacted.value(redisUrl))
  const cluster = options.cluster ?? false
  if (typeof target === "string") {
    return yield* new ConsumerOptionsInvalid({ option: "redisUrl", message: `redisUrl: ${target}` })
  }
  const mismatch = clusterMismatch(target, cluster, "cluster: true")
  if (mismatch !== undefined) {
    return yield* new ConsumerOptionsInvalid({ option: "redisUrl", message: `redisUrl: ${mismatch}` })
  }
  return {
    redisUrl,
    cluster,
    tls: yield* resolveTls(options.tls, Redacted.value(redisUrl)),
    stream: options.stream,
    group: options.group,
    consumer: options.consumer ?? defaultConsumerName(),
    startFrom,
    concurrency: yield* positiveInt("concurrency", options.concurrency, 16, 100_000),
    orderByAggregate: options.orderByAggregate ?? false,
    batchSize: yield* positiveInt("batchSize", options.batchSize, 500, 100_000),
    blockMillis: yield* millis("block", options.block, 2_000),
    blockGraceMillis: yield* millis("blockGrace", options.blockGrace, 5_000),
    maxDeliveries: yield* positiveInt("maxDeliveries", options.maxDeliveries, 5, 1_000_000),
    handlerTimeoutMillis,
    retry: options.retry ?? defaultHandlerRetry,
    claimIdleMillis,
    claimIntervalMillis: yield* millis("claimInterval", options.claimInterval, Math.min(claimIdleMillis / 2, 30_000)),
    renewIntervalMillis: Math.max(10, Math.floor(claimIdleMillis / 3)),
    stopTimeoutMillis: yield* millis("stopTimeout", options.stopTimeout, 10_000, 0),
    commandTimeoutMillis: yield* millis("commandTimeout", options.commandTimeout, 5_000),
    unknownEvents
  } satisfies ResolvedOptions
})
