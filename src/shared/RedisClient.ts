/**
 * The one ioredis factory of the relay and the consumer. Every client fails fast while disconnected
 * (`enableOfflineQueue: false`, no per-request retries) and reconnects in the background: the caller's
 * own retry schedule decides when to try again, so nothing waits in a hidden queue.
 */
import * as Duration from "effect/Duration"
import * as Redacted from "effect/Redacted"
import { Redis } from "ioredis"
import { redisReconnectDelay } from "./Retry.js"
import { type RedisTls, redisTlsOptions } from "./Tls.js"

export interface RedisClientOptions {
  /** Shown in `CLIENT LIST`. */
  readonly name: string
  /** Per-command timeout; undefined for a connection that runs blocking reads (no timeout). */
  readonly commandTimeout: Duration.Input | undefined
  /** Connect timeout; defaults to the command timeout, or 5 seconds. */
  readonly connectTimeout?: Duration.Input
  /** Let ioredis gather the commands of one event-loop turn into one pipeline. Default false. */
  readonly autoPipelining?: boolean
  /**
   * Resend commands left unanswered by a dropped connection. Default true; false for blocking reads,
   * whose resent read would deliver entries to a promise nobody awaits any more.
   */
  readonly resendUnanswered?: boolean
  /** Reconnect in the background after a drop. Default true; false for a one-shot command line. */
  readonly reconnect?: boolean
  /** CA and client certificate for a `rediss://` URL (ignored for `redis://`). */
  readonly tls?: RedisTls | undefined
}

/** A lazily connecting ioredis client; call `connect()` (failures also surface on every command). */
export const makeRedisClient = (url: Redacted.Redacted<string> | string, options: RedisClientOptions): Redis => {
  const timeoutMs = options.commandTimeout === undefined
    ? undefined
    : Math.ceil(Duration.toMillis(Duration.fromInputUnsafe(options.commandTimeout)))
  const connectMs = options.connectTimeout !== undefined
    ? Math.ceil(Duration.toMillis(Duration.fromInputUnsafe(options.connectTimeout)))
    : timeoutMs ?? 5_000
  const text = Redacted.isRedacted(url) ? Redacted.value(url) : url
  const tls = redisTlsOptions(text, options.tls)
  const client = new Redis(text, {
    lazyConnect: true,
    enableOfflineQueue: false,
    enableAutoPipelining: options.autoPipelining ?? false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: options.resendUnanswered ?? true,
    connectionName: options.name,
    ...(timeoutMs === undefined ? {} : { commandTimeout: timeoutMs }),
    connectTimeout: connectMs,
    retryStrategy: options.reconnect === false ? () => null : redisReconnectDelay,
    ...(tls === undefined ? {} : { tls })
  })
  // Failures surface on the commands; the event is only here so Node does not crash on it.
  client.on("error", () => {})
  return client
}
