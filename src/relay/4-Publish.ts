/**
 * The Redis side of the relay (ioredis): turns claimed outbox rows into stream entries.
 *
 * One script call per stream adds that stream's events in id order with an in-flight marker per
 * event (`lua/publish.lua`), so a batch published twice (crash between XADD and COMMIT) adds each
 * event once. A batch with one stream is one call; the calls for several streams go out as one
 * pipeline (one write, one round trip); on a Redis Cluster, where those streams may live on several
 * masters, each call goes on its own, all at once. No auto-pipelining: it holds every command for a turn of the
 * event loop and builds a pipeline around it, which a relay sending one command at a time only pays for.
 *
 * With `RELAY_REDIS_MIN_REPLICAS` above 0, a `WAIT` follows the script calls in the same pipeline and
 * fewer replicas acknowledging in time fails the batch like any transient error: it rolls back and is
 * retried, and the markers keep the retry from adding anything twice.
 *
 * The connection refuses to queue commands while disconnected (`enableOfflineQueue: false`): a batch
 * fails fast with `RedisUnavailable` and the relay's retry schedule decides when to try again.
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Cluster } from "ioredis"
import { readFileSync } from "node:fs"
import { envelopeEntry, envelopeFields, pushEnvelopeValues } from "../shared/Envelope.js"
import { describe, LeaseFenced, RedisUnavailable } from "../shared/Errors.js"
import { makeRedisClient, primaries, type RedisConnection } from "../shared/RedisClient.js"
import { deadLetterKey, fenceKey, inflightKey, streamKey } from "../shared/RedisKeys.js"
import type { DeadLetter, OutboxRow } from "./Database.js"
import { RelayConfig } from "./RelayConfig.js"

/**
 * `lua/publish.lua` with the envelope's field list written in (its `ENVELOPE_*` placeholders), so the
 * script's XADD fields and the values the relay sends come from one definition.
 */
export const publishScript: string = readFileSync(new URL("../../lua/publish.lua", import.meta.url), "utf8")
  .replaceAll("ENVELOPE_FIELD_COUNT", String(envelopeFields.length))
  .replaceAll(
    "ENVELOPE_XADD_ARGS",
    envelopeFields.map((field, i) => `'${field}', ARGV[b${i === 0 ? "" : ` + ${i}`}]`).join(", ")
  )

/** What became of one row. */
export type PublishOutcome =
  | { readonly _tag: "Published"; readonly entryId: string; readonly duplicate: boolean }
  | { readonly _tag: "Rejected"; readonly reason: string }

/** How long markers of a crashed relay may linger before Redis drops them. */
const markerTtl = Duration.hours(1)

type ScriptRedis = RedisConnection & {
  outboxPublish(
    stream: string,
    inflight: string,
    fence: string,
    ...args: Array<string | number>
  ): Promise<Array<string>>
}

interface ScriptPipeline extends ReturnType<RedisConnection["pipeline"]> {
  outboxPublish(stream: string, inflight: string, fence: string, ...args: Array<string | number>): ScriptPipeline
}

/** Opens the Redis connection (closed with the scope) and defines the publish script on it. */
const make = Effect.gen(function*() {
  const config = yield* RelayConfig
  // Event ids per stream whose markers may go (their deletion committed), not sent yet.
  let queued = new Map<string, Array<string>>()
  const queue = (stream: string, ids: ReadonlyArray<string>) => {
    if (ids.length === 0) return
    const list = queued.get(stream)
    if (list) list.push(...ids)
    else queued.set(stream, [...ids])
  }
  const takeQueued = (stream: string): Array<string> => {
    const ids = queued.get(stream)
    if (!ids) return []
    queued.delete(stream)
    return ids
  }
  const hdelQueued = (client: RedisConnection): Promise<unknown> => {
    const all = queued
    queued = new Map()
    return Promise.all(
      [...all].map(([stream, ids]) => client.hdel(inflightKey(stream), ...ids).catch(() => queue(stream, ids)))
    )
  }
  const redis = yield* Effect.acquireRelease(
    Effect.sync(() => {
      const client = makeRedisClient(config.redisUrl, {
        name: "outbox-relay",
        commandTimeout: config.redisCommandTimeout,
        tls: config.redisTls,
        cluster: config.redisCluster
      })
      client.defineCommand("outboxPublish", { numberOfKeys: 3, lua: publishScript })
      return client as ScriptRedis
    }),
    (client) =>
      Effect.promise(() => hdelQueued(client).then(() => client.quit()).catch(() => client.disconnect())).pipe(
        Effect.ignore
      )
  )
  // Give the first connection a moment so the first batch does not fail needlessly; when Redis is
  // down, go on: ioredis keeps reconnecting and the relay's retries cover the wait.
  yield* Effect.promise(() => redis.connect().then(() => true, () => false)).pipe(
    Effect.timeoutOption(config.redisCommandTimeout)
  )
  const fail = (operation: string) => (cause: unknown) => new RedisUnavailable({ operation, message: describe(cause) })
  const maxLen = String(config.streamMaxLen)
  const ttl = String(Duration.toMillis(markerTtl))

  /**
   * The script's arguments for one stream: the lease epoch of each slot its rows belong to (an unknown
   * one as 0, which any fence refuses), its queued markers to drop, then its rows.
   */
  const scriptArgs = ({ epochs, forgotten, rows }: ScriptCall) => {
    const slots = new Set<number>()
    for (const row of rows) slots.add(row.slot)
    const args: Array<string | number> = [maxLen, ttl, String(slots.size)]
    for (const slot of slots) args.push(String(slot), epochs.get(slot) ?? "0")
    args.push(String(forgotten.length), ...forgotten)
    for (const row of rows) pushEnvelopeValues(args, row)
    return args
  }

  /** One script call per stream: its queued markers to drop, then its rows. */
  interface ScriptCall {
    readonly stream: string
    readonly forgotten: ReadonlyArray<string>
    readonly rows: ReadonlyArray<OutboxRow>
    readonly epochs: ReadonlyMap<number, string>
  }

  const minReplicas = config.redisMinReplicas
  // Half the command timeout, so a replica that does not answer fails the WAIT, not the connection.
  const replicaWaitMs = Math.max(1, Math.floor(Duration.toMillis(config.redisCommandTimeout) / 2))

  const callOne = (call: ScriptCall) =>
    redis.outboxPublish(call.stream, inflightKey(call.stream), fenceKey(call.stream), ...scriptArgs(call))

  /** The calls in one pipeline, with the WAIT when replicas are awaited. */
  const callPipelined = (calls: ReadonlyArray<ScriptCall>): Promise<Array<Array<string>>> => {
    const pipeline = redis.pipeline() as ScriptPipeline
    for (const call of calls) {
      pipeline.outboxPublish(call.stream, inflightKey(call.stream), fenceKey(call.stream), ...scriptArgs(call))
    }
    // WAIT in the same round trip: it returns once the replicas have every write sent before it.
    if (minReplicas > 0) pipeline.wait(minReplicas, replicaWaitMs)
    return pipeline.exec().then((results) => {
      const replies = (results ?? []).map(([error, reply]) => {
        if (error) throw error
        return reply
      })
      if (minReplicas > 0) {
        const acknowledged = Number(replies.pop())
        if (!(acknowledged >= minReplicas)) {
          throw new Error(
            `only ${acknowledged} of ${minReplicas} replicas acknowledged the batch within ${replicaWaitMs} ms ` +
              "(RELAY_REDIS_MIN_REPLICAS)"
          )
        }
      }
      return replies as Array<Array<string>>
    })
  }

  /**
   * One stream's script and its WAIT on a cluster. A pipeline whose script met MOVED (a failover, a moved
   * slot) fails as a whole without ioredis learning the new owner, so the slot map is read again before
   * the batch is retried.
   */
  const callWaiting = (call: ScriptCall): Promise<Array<string>> =>
    callPipelined([call]).then((replies) => replies[0]!, (error: unknown) => {
      if (redis instanceof Cluster && /^(MOVED|ASK) /.test(describe(error))) redis.refreshSlotsCache()
      throw error
    })

  const callScripts = (calls: ReadonlyArray<ScriptCall>): Promise<Array<Array<string>>> => {
    if (calls.length === 1 && minReplicas === 0) return callOne(calls[0]!).then((reply) => [reply])
    if (!config.redisCluster) return callPipelined(calls)
    // A cluster pipeline must stay on one master: one call per stream (with its own WAIT on that master).
    return Promise.all(calls.map((call) => minReplicas === 0 ? callOne(call) : callWaiting(call)))
  }

  const publish = Effect.fnUntraced(function*(rows: ReadonlyArray<OutboxRow>, epochs: ReadonlyMap<number, string>) {
    const groups = groupByStream(config.streamPrefix, rows)
    const calls = groups.map(([stream, group]): ScriptCall => ({
      stream,
      forgotten: takeQueued(stream),
      rows: group.rows,
      epochs
    }))
    const replies = yield* Effect.tryPromise({
      try: () => callScripts(calls),
      catch: (cause): RedisUnavailable | LeaseFenced =>
        cause instanceof Error && cause.message.startsWith("FENCED ")
          ? new LeaseFenced({ message: cause.message.slice("FENCED ".length) })
          : fail("publish")(cause)
    }).pipe(
      // Whether or not a script got as far as dropping its stream's markers, dropping them again
      // is harmless: they go back in the queue.
      Effect.tapError(() => Effect.sync(() => calls.forEach(({ forgotten, stream }) => queue(stream, forgotten))))
    )
    const outcomes = new Array<PublishOutcome>(rows.length)
    groups.forEach(([, group], g) => {
      const reply = replies[g]!
      group.indexes.forEach((rowIndex, i) => {
        const r = reply[i]!
        outcomes[rowIndex] = r.startsWith("!")
          ? { _tag: "Rejected", reason: r.slice(1) }
          : r.startsWith("=")
          ? { _tag: "Published", entryId: r.slice(1), duplicate: true }
          : { _tag: "Published", entryId: r, duplicate: false }
      })
    })
    return outcomes as ReadonlyArray<PublishOutcome>
  })

  const forgetLater = (rows: ReadonlyArray<OutboxRow>) =>
    Effect.sync(() => {
      for (const [stream, group] of groupByStream(config.streamPrefix, rows)) {
        queue(stream, group.rows.map((r) => r.event_id))
      }
    })

  const flushForgotten = Effect.promise(() => hdelQueued(redis).catch(() => undefined))

  const mirrorDeadLetters = (dead: ReadonlyArray<DeadLetter>) =>
    Effect.forEach(dead, ({ reason, row }) =>
      Effect.tryPromise({
        try: () => {
          // A payload too large to publish is not mirrored either; Postgres keeps it.
          const tooLarge = Buffer.byteLength(row.payload) > config.maxPayloadBytes
          return redis.xadd(
            deadLetterKey(streamKey(config.streamPrefix, row.topic)),
            "*",
            ...envelopeEntry(tooLarge ? { ...row, payload: "" } : row),
            "outbox_id",
            row.id,
            "reason",
            reason,
            "attempts",
            String(row.attempts + 1),
            "dead_at",
            new Date().toISOString()
          )
        },
        catch: fail("mirrorDeadLetter")
      }), { discard: true })

  const ping = Effect.tryPromise({ try: () => redis.ping(), catch: fail("ping") }).pipe(Effect.asVoid)

  const memory = Effect.tryPromise({
    try: async () => {
      const nodes = primaries(redis)
      if (nodes.length === 0) throw new Error("no cluster master known yet")
      return fullest((await Promise.all(nodes.map((node) => node.info("memory")))).map(parseMemoryInfo))
    },
    catch: fail("info")
  })

  return StreamPublisher.of({ publish, forgetLater, flushForgotten, mirrorDeadLetters, ping, memory })
})

export class StreamPublisher extends Context.Service<StreamPublisher, {
  /**
   * Publishes rows (in id order); one outcome per row, same order. `epochs` are the lease epochs of
   * the rows' slots: when Redis has seen a newer one for any of them, nothing is added (`LeaseFenced`).
   */
  readonly publish: (
    rows: ReadonlyArray<OutboxRow>,
    epochs: ReadonlyMap<number, string>
  ) => Effect.Effect<ReadonlyArray<PublishOutcome>, RedisUnavailable | LeaseFenced>
  /**
   * Queues the markers of rows whose deletion committed: the next `publish` call for their stream
   * drops them before it adds anything (no command of their own), or `flushForgotten` does.
   */
  readonly forgetLater: (rows: ReadonlyArray<OutboxRow>) => Effect.Effect<void>
  /** Drops every queued marker now (when the relay goes idle, and before it stops). Best effort. */
  readonly flushForgotten: Effect.Effect<void>
  /** Mirrors dead letters to `{<stream>}:dlq`. */
  readonly mirrorDeadLetters: (dead: ReadonlyArray<DeadLetter>) => Effect.Effect<void, RedisUnavailable>
  readonly ping: Effect.Effect<void, RedisUnavailable>
  /** Redis memory from `INFO memory`, for the metrics; on a cluster, the fullest master's. */
  readonly memory: Effect.Effect<RedisMemory, RedisUnavailable>
}>()("outbox-relay/StreamPublisher") {
  static readonly layer = Layer.effect(this, make)
}

/** Redis memory use and limit in bytes; `maxmemory` 0 means no limit. */
export interface RedisMemory {
  readonly usedMemory: number
  readonly maxmemory: number
}

/** Reads `used_memory` and `maxmemory` from `INFO memory` text (NaN when a field is missing). */
export const parseMemoryInfo = (info: string): RedisMemory => {
  const field = (name: string) => {
    const match = new RegExp(`^${name}:(\\d+)\\r?$`, "m").exec(info)
    return match ? Number(match[1]) : Number.NaN
  }
  return { usedMemory: field("used_memory"), maxmemory: field("maxmemory") }
}

interface StreamGroup {
  readonly rows: Array<OutboxRow>
  readonly indexes: Array<number>
}

/**
 * Groups rows by stream, keeping id order inside each group. Keyed by topic (one topic, one stream),
 * so the stream key is built once per group instead of once per row.
 */
const groupByStream = (prefix: string, rows: ReadonlyArray<OutboxRow>): Array<[string, StreamGroup]> => {
  const groups = new Map<string, StreamGroup>()
  rows.forEach((row, index) => {
    let group = groups.get(row.topic)
    if (!group) groups.set(row.topic, group = { rows: [], indexes: [] })
    group.rows.push(row)
    group.indexes.push(index)
  })
  return [...groups].map(([topic, group]) => [streamKey(prefix, topic), group])
}

/** The memory of the master closest to its limit (a cluster pauses claiming when any master is full). */
export const fullest = (nodes: ReadonlyArray<RedisMemory>): RedisMemory => {
  const ratio = (m: RedisMemory) => m.maxmemory > 0 ? m.usedMemory / m.maxmemory : 0
  return nodes.reduce((worst, node) => ratio(node) > ratio(worst) ? node : worst)
}
