/**
 * The one ioredis factory of the relay and the consumer. Every client fails fast while disconnected
 * (`enableOfflineQueue: false`, no per-request retries) and reconnects in the background: the caller's
 * own retry schedule decides when to try again, so nothing waits in a hidden queue.
 *
 * With `cluster`, the URL's hosts are seed nodes of a Redis Cluster: ioredis follows MOVED and ASK
 * redirections and TRYAGAIN during a resharding itself (they are routing, not failures), while a
 * connection that drops (a failover) fails its commands at once, as on a single Redis.
 */
import * as Duration from "effect/Duration"
import * as Redacted from "effect/Redacted"
import { Cluster, Redis } from "ioredis"
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
  /** The URL's hosts are seed nodes of a Redis Cluster. Default false. */
  readonly cluster?: boolean
}

/** A single Redis or a Redis Cluster: the commands the relay and the consumer send are the same. */
export type RedisConnection = Redis | Cluster

/** A `redis://` or `rediss://` URL split into what ioredis takes; several hosts for a cluster's seeds. */
export interface RedisTarget {
  readonly tls: boolean
  readonly username: string | undefined
  readonly password: string | undefined
  readonly hosts: ReadonlyArray<{ readonly host: string; readonly port: number }>
  readonly db: number
}

const hostPort = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]@/]+))(?::(\d{1,5}))?$/

/**
 * Parses `redis[s]://[user[:password]@]host[:port][,host[:port]...][/db][?query]`; a reason string when it
 * is not one (the URL class cannot read a host list).
 */
export const parseRedisUrl = (text: string): RedisTarget | string => {
  // A query (`?family=6`) is kept for ioredis on a single server; a cluster ignores it.
  const match = /^(rediss?):\/\/(?:([^@/]*)@)?([^/?#]*)(?:\/(\d*))?(?:\?[^#]*)?$/.exec(text.trim())
  if (!match) return "not a redis:// or rediss:// URL"
  const [, scheme, auth, hostList, db] = match
  const hosts: Array<{ host: string; port: number }> = []
  for (const item of hostList!.split(",")) {
    const parts = hostPort.exec(item)
    const port = Number(parts?.[3] ?? 6379)
    if (!parts || !(port >= 1 && port <= 65535)) return `bad host ${JSON.stringify(item)}`
    hosts.push({ host: parts[1] ?? parts[2]!, port })
  }
  const colon = auth?.indexOf(":") ?? -1
  const decode = (part: string | undefined) => part === undefined || part === "" ? undefined : decodeURIComponent(part)
  return {
    tls: scheme === "rediss",
    username: decode(colon < 0 ? auth : auth!.slice(0, colon)),
    password: decode(colon < 0 ? undefined : auth!.slice(colon + 1)),
    hosts,
    db: db ? Number(db) : 0
  }
}

/**
 * Why `target` cannot go with `cluster` (one line; `flag` names the setting that turns cluster mode on),
 * or undefined when it can.
 */
export const clusterMismatch = (target: RedisTarget, cluster: boolean, flag: string): string | undefined =>
  target.hosts.length > 1 && !cluster
    ? `several hosts are a cluster's seeds; set ${flag}`
    : target.db !== 0 && cluster
    ? "a Redis Cluster has only database 0"
    : undefined

/** The URL of the first host of `text` alone (a cluster's first seed), credentials and database kept. */
export const firstHostUrl = (text: string): string => {
  const target = parseRedisUrl(text)
  if (typeof target === "string") return text
  const { host, port } = target.hosts[0]!
  const auth = target.username === undefined && target.password === undefined
    ? ""
    : `${encodeURIComponent(target.username ?? "")}${
      target.password === undefined ? "" : `:${encodeURIComponent(target.password)}`
    }@`
  return `${target.tls ? "rediss" : "redis"}://${auth}${host.includes(":") ? `[${host}]` : host}:${port}/${target.db}`
}

/** A lazily connecting ioredis client; call `connect()` (failures also surface on every command). */
export function makeRedisClient(
  url: Redacted.Redacted<string> | string,
  options: RedisClientOptions & { readonly cluster?: false }
): Redis
export function makeRedisClient(url: Redacted.Redacted<string> | string, options: RedisClientOptions): RedisConnection
export function makeRedisClient(url: Redacted.Redacted<string> | string, options: RedisClientOptions): RedisConnection {
  const timeoutMs = options.commandTimeout === undefined
    ? undefined
    : Math.ceil(Duration.toMillis(Duration.fromInputUnsafe(options.commandTimeout)))
  const connectMs = options.connectTimeout !== undefined
    ? Math.ceil(Duration.toMillis(Duration.fromInputUnsafe(options.connectTimeout)))
    : timeoutMs ?? 5_000
  const text = Redacted.isRedacted(url) ? Redacted.value(url) : url
  const tls = redisTlsOptions(text, options.tls)
  if (options.cluster === true) return makeCluster(text, options, { timeoutMs, connectMs, tls })
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

const makeCluster = (
  text: string,
  options: RedisClientOptions,
  resolved: {
    readonly timeoutMs: number | undefined
    readonly connectMs: number
    readonly tls: ReturnType<typeof redisTlsOptions>
  }
): Cluster => {
  const target = parseRedisUrl(text)
  if (typeof target === "string") throw new Error(`Redis URL: ${target}`)
  const client = new Cluster([...target.hosts], {
    lazyConnect: true,
    enableOfflineQueue: false,
    enableAutoPipelining: options.autoPipelining ?? false,
    clusterRetryStrategy: options.reconnect === false ? () => null : redisReconnectDelay,
    // A dropped node connection fails its commands now; the caller retries once the slots are known again.
    retryDelayOnFailover: 0,
    slotsRefreshTimeout: resolved.connectMs,
    redisOptions: {
      ...(target.username === undefined ? {} : { username: target.username }),
      ...(target.password === undefined ? {} : { password: target.password }),
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: options.resendUnanswered ?? true,
      connectionName: options.name,
      ...(resolved.timeoutMs === undefined ? {} : { commandTimeout: resolved.timeoutMs }),
      connectTimeout: resolved.connectMs,
      ...(resolved.tls === undefined ? {} : { tls: resolved.tls })
    }
  })
  client.on("error", () => {})
  // Node errors reach the cluster's "node error" event; they also surface on the commands.
  client.on("node error", () => {})
  return client
}

/** The masters of a cluster (each one connection of the cluster client), or the one Redis itself. */
export const primaries = (redis: RedisConnection): ReadonlyArray<Redis> =>
  redis instanceof Cluster ? redis.nodes("master") : [redis]
