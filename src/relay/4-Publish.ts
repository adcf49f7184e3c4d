/**
 * The Redis side of the relay (ioredis): turns claimed outbox rows into stream entries.
 *
 * One script call per stream adds that stream's events in id order and records the call as an attempt
 * (`lua/publish.lua`): a lane abandons its attempts whose transaction did not commit, and a lease change orphans the
 * attempts of the lane that lost the slots, so a batch published twice (crash or failure between XADD and COMMIT) adds
 * each event once. A batch with one stream is one call; the calls for several streams go out as one pipeline (one
 * write, one round trip); on a Redis Cluster, where those streams may live on several masters, each call goes on its
 * own, all at once. No auto-pipelining: it holds every command for a turn of the event loop and builds a pipeline
 * around it, which a relay sending one command at a time only pays for.
 *
 * With `RELAY_REDIS_MIN_REPLICAS` above 0, a `WAIT` follows the script calls in the same pipeline and fewer replicas
 * acknowledging in time fails the batch like any transient error: it rolls back and is retried, and the attempt
 * records keep the retry from adding anything twice.
 *
 * The connection refuses to queue commands while disconnected (`enableOfflineQueue: false`): a batch fails fast with
 * `RedisUnavailable` and the relay's retry schedule decides when to try again.
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
import { attemptsKey, deadLetterKey, fenceKey, legacyInflightKey, orphansKey, streamKey } from "../shared/RedisKeys.js"
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
  | { readonly _tag: "Published"; readonly duplicate: boolean }
  | { readonly _tag: "Rejected"; readonly reason: string }

const added: PublishOutcome = { _tag: "Published", duplicate: false }
const addedBefore: PublishOutcome = { _tag: "Published", duplicate: true }

/**
 * One lane's attempts not yet known to have committed, as (stream, token) pairs. The lane's next
 * `publish` abandons whatever is still here (its transaction failed or its outcome is unknown), and
 * `forgetLater` takes them out once the transaction committed.
 */
export interface PublishLedger {
  unconfirmed: Array<readonly [stream: string, token: string]>
}

export const makeLedger = (): PublishLedger => ({ unconfirmed: [] })

/** How long the records of a crashed relay's attempts, and orphans, may linger before Redis drops them. */
const recordTtl = Duration.hours(1)

/** A script reply: the number of events when all were added, else one "+", "=" or "!<error>" per event. */
type ScriptReply = number | Array<string>

type ScriptRedis = RedisConnection & {
  outboxPublish(...keysAndArgs: Array<string | number>): Promise<ScriptReply>
}

interface ScriptPipeline extends ReturnType<RedisConnection["pipeline"]> {
  outboxPublish(...keysAndArgs: Array<string | number>): ScriptPipeline
}

/** The script's keys for `stream`, in its KEYS order. */
const scriptKeys = (stream: string) =>
  [stream, attemptsKey(stream), orphansKey(stream), fenceKey(stream), legacyInflightKey(stream)] as const

/** Opens the Redis connection (closed with the scope) and defines the publish script on it. */
const make = Effect.gen(function*() {
  const config = yield* RelayConfig
  // Attempt tokens per stream not sent yet: committed ones whose records may go, failed ones whose
  // records become orphans. The next call for the stream carries them (no command of their own).
  const committed = new Map<string, Array<string>>()
  const failed = new Map<string, Array<string>>()
  const queue = (into: Map<string, Array<string>>, stream: string, tokens: ReadonlyArray<string>) => {
    if (tokens.length === 0) return
    const list = into.get(stream)
    if (list) list.push(...tokens)
    else into.set(stream, [...tokens])
  }
  const take = (from: Map<string, Array<string>>, stream: string): Array<string> => {
    const tokens = from.get(stream)
    if (!tokens) return []
    from.delete(stream)
    return tokens
  }
  // Tokens are unique per relay process and call: this process's tag and a counter.
  const tag = Math.random().toString(36).slice(2, 10)
  let callCount = 0
  const redis = yield* Effect.acquireRelease(
    Effect.sync(() => {
      const client = makeRedisClient(config.redisUrl, {
        name: "outbox-relay",
        commandTimeout: config.redisCommandTimeout,
        tls: config.redisTls,
        cluster: config.redisCluster
      })
      client.defineCommand("outboxPublish", { numberOfKeys: 5, lua: publishScript })
      return client as ScriptRedis
    }),
    (client) =>
      Effect.promise(() => flushQueued(client).then(() => client.quit()).catch(() => client.disconnect())).pipe(
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
  const ttl = String(Duration.toMillis(recordTtl))

  /**
   * The script's keys and arguments for one stream: the lease epoch of each slot its rows belong to (an
   * unknown one as 0, which any fence refuses), the queued tokens, this call's token and record, its rows.
   */
  const scriptArgs = ({ abandoned, epochs, forgotten, rows, stream, token }: ScriptCall) => {
    const slots = new Set<number>()
    for (const row of rows) slots.add(row.slot)
    const args: Array<string | number> = [...scriptKeys(stream), maxLen, ttl, String(slots.size)]
    let header = ""
    for (const slot of slots) {
      const epoch = epochs.get(slot) ?? "0"
      args.push(String(slot), epoch)
      header += header === "" ? `${slot}:${epoch}` : `,${slot}:${epoch}`
    }
    args.push(String(forgotten.length), ...forgotten, String(abandoned.length), ...abandoned)
    let ids = ""
    for (const row of rows) ids += ids === "" ? row.event_id : `,${row.event_id}`
    args.push(token, rows.length === 0 ? "" : `${header}|${ids}`)
    for (const row of rows) pushEnvelopeValues(args, row)
    return args
  }

  /** One script call per stream: its queued tokens, then its rows under a token of its own. */
  interface ScriptCall {
    readonly stream: string
    readonly token: string
    readonly forgotten: ReadonlyArray<string>
    readonly abandoned: ReadonlyArray<string>
    readonly rows: ReadonlyArray<OutboxRow>
    readonly epochs: ReadonlyMap<number, string>
  }

  /** A call carrying only a stream's queued tokens. */
  const tokensOnly = (stream: string): ScriptCall => ({
    stream,
    token: "",
    forgotten: take(committed, stream),
    abandoned: take(failed, stream),
    rows: [],
    epochs: new Map()
  })

  /** Sends every queued token now, one call per stream; tokens of a failed call are queued again. */
  const flushQueued = (client: ScriptRedis): Promise<unknown> =>
    Promise.all(
      [...new Set([...committed.keys(), ...failed.keys()])].map((stream) => {
        const call = tokensOnly(stream)
        return client.outboxPublish(...scriptArgs(call)).catch(() => requeue(call))
      })
    )

  /** Whether or not a call got as far as handling its tokens, sending them again is harmless. */
  const requeue = (call: ScriptCall) => {
    queue(committed, call.stream, call.forgotten)
    queue(failed, call.stream, call.abandoned)
  }
  const minReplicas = config.redisMinReplicas
  // Half the command timeout, so a replica that does not answer fails the WAIT, not the connection.
  const replicaWaitMs = Math.max(1, Math.floor(Duration.toMillis(config.redisCommandTimeout) / 2))

  const callOne = (call: ScriptCall) => redis.outboxPublish(...scriptArgs(call))

  /** The calls in one pipeline, with the WAIT when replicas are awaited. */
  const callPipelined = (calls: ReadonlyArray<ScriptCall>): Promise<Array<ScriptReply>> => {
    const pipeline = redis.pipeline() as ScriptPipeline
    for (const call of calls) pipeline.outboxPublish(...scriptArgs(call))
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
      return replies as Array<ScriptReply>
    })
  }

  /**
   * One stream's script and its WAIT on a cluster. A pipeline whose script met MOVED (a failover, a moved
   * slot) fails as a whole without ioredis learning the new owner, so the slot map is read again before
   * the batch is retried.
   */
  const callWaiting = (call: ScriptCall): Promise<ScriptReply> =>
    callPipelined([call]).then((replies) => replies[0]!, (error: unknown) => {
      if (redis instanceof Cluster && /^(MOVED|ASK) /.test(describe(error))) redis.refreshSlotsCache()
      throw error
    })

  const callScripts = (calls: ReadonlyArray<ScriptCall>): Promise<Array<ScriptReply>> => {
    if (calls.length === 1 && minReplicas === 0) return callOne(calls[0]!).then((reply) => [reply])
    if (!config.redisCluster) return callPipelined(calls)
    // A cluster pipeline must stay on one master: one call per stream (with its own WAIT on that master).
    return Promise.all(calls.map((call) => minReplicas === 0 ? callOne(call) : callWaiting(call)))
  }

  const publish = Effect.fnUntraced(function*(
    rows: ReadonlyArray<OutboxRow>,
    epochs: ReadonlyMap<number, string>,
    ledger: PublishLedger
  ) {
    // Attempts of this lane still unconfirmed did not commit: their records become orphans, with this
    // call for their stream (before it looks anything up) or a later one.
    for (const [stream, token] of ledger.unconfirmed) queue(failed, stream, [token])
    ledger.unconfirmed = []
    const groups = groupByStream(config.streamPrefix, rows)
    const calls = groups.map(([stream, group]): ScriptCall => {
      const token = `${tag}:${++callCount}`
      ledger.unconfirmed.push([stream, token])
      return {
        stream,
        token,
        forgotten: take(committed, stream),
        abandoned: take(failed, stream),
        rows: group.rows,
        epochs
      }
    })
    const replies = yield* Effect.tryPromise({
      try: () => callScripts(calls),
      catch: (cause): RedisUnavailable | LeaseFenced =>
        cause instanceof Error && cause.message.startsWith("FENCED ")
          ? new LeaseFenced({ message: cause.message.slice("FENCED ".length) })
          : fail("publish")(cause)
    }).pipe(
      Effect.tapError(() => Effect.sync(() => calls.forEach(requeue)))
    )
    const outcomes = new Array<PublishOutcome>(rows.length)
    groups.forEach(([, group], g) => {
      const reply = replies[g]!
      group.indexes.forEach((rowIndex, i) => {
        const r = typeof reply === "number" ? "+" : reply[i]!
        outcomes[rowIndex] = r === "+"
          ? added
          : r === "="
          ? addedBefore
          : { _tag: "Rejected", reason: r.slice(1) }
      })
    })
    return outcomes as ReadonlyArray<PublishOutcome>
  })

  const forgetLater = (ledger: PublishLedger) =>
    Effect.sync(() => {
      for (const [stream, token] of ledger.unconfirmed) queue(committed, stream, [token])
      ledger.unconfirmed = []
    })

  const abandonLater = (ledger: PublishLedger) =>
    Effect.sync(() => {
      for (const [stream, token] of ledger.unconfirmed) queue(failed, stream, [token])
      ledger.unconfirmed = []
    })

  const flushForgotten = Effect.promise(() => flushQueued(redis).catch(() => undefined))

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

  return StreamPublisher.of({ publish, forgetLater, abandonLater, flushForgotten, mirrorDeadLetters, ping, memory })
})

export class StreamPublisher extends Context.Service<StreamPublisher, {
  /**
   * Publishes rows (in id order); one outcome per row, same order. `epochs` are the lease epochs of
   * the rows' slots: when Redis has seen a newer one for any of them, nothing is added (`LeaseFenced`).
   * The lane's `ledger` gets this attempt; what it still held is abandoned first.
   */
  readonly publish: (
    rows: ReadonlyArray<OutboxRow>,
    epochs: ReadonlyMap<number, string>,
    ledger: PublishLedger
  ) => Effect.Effect<ReadonlyArray<PublishOutcome>, RedisUnavailable | LeaseFenced>
  /**
   * The ledger's attempts committed: their records may go. Queued: the next `publish` call for their
   * stream drops them before it adds anything (no command of their own), or `flushForgotten` does.
   */
  readonly forgetLater: (ledger: PublishLedger) => Effect.Effect<void>
  /** The ledger's attempts did not commit (or may not have): queued to become orphans, like `forgetLater`. */
  readonly abandonLater: (ledger: PublishLedger) => Effect.Effect<void>
  /** Sends every queued token now (when the relay goes idle, and before it stops). Best effort. */
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
