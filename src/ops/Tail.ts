/**
 * `outbox-relay tail <stream>`: the last entries of a stream, then every new one as it arrives, until
 * interrupted (Ctrl-C ends the command with exit code 0). With `--group g` it starts after g's
 * last-delivered id instead: what the group has not received yet, then what comes.
 *
 * Tail only reads (XREVRANGE through `Operations`, then XREAD): it never joins a group, so it takes
 * nothing from consumers and acknowledges nothing. The blocking XREAD runs on a connection of its own
 * without a command timeout; the `Operations` client keeps its timeout for everything else.
 */
import * as Effect from "effect/Effect"
import type * as Redacted from "effect/Redacted"
import { describe } from "../shared/Errors.js"
import { makeRedisClient, type RedisConnection } from "../shared/RedisClient.js"
import type { RedisTls } from "../shared/Tls.js"
import { NotFound, Unavailable } from "./Errors.js"
import type { Entry } from "./Model.js"
import { Operations } from "./Operations.js"
import { decodeEntry } from "./StreamInspector.js"

export interface TailOptions {
  readonly stream: string
  /** Start after this group's last-delivered id instead of printing the last `count` entries. */
  readonly group: string | undefined
  readonly count: number
}

/** Entries read per XREAD: a backlog after the group's position is printed in pages of this size. */
const readBatch = 100

/** Where the blocking reads go. */
export interface TailConnection {
  readonly redisUrl: Redacted.Redacted<string>
  readonly connectTimeoutMs: number
  readonly tls: RedisTls | undefined
  readonly cluster: boolean
}

/** A connection for blocking reads: no command timeout, no reconnect (a drop ends the tail with why). */
const blockingClient = (connection: TailConnection) =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const client = makeRedisClient(connection.redisUrl, {
          name: "outbox-relay-tail",
          commandTimeout: undefined,
          connectTimeout: connection.connectTimeoutMs,
          resendUnanswered: false,
          reconnect: false,
          tls: connection.tls,
          cluster: connection.cluster
        })
        // ioredis rejects with "Connection is closed"; the reason came with its error event.
        let reason: unknown
        client.once("error", (error) => (reason = error))
        await client.connect().catch((error) => {
          client.disconnect()
          throw reason ?? error
        })
        return client
      },
      catch: (cause) => new Unavailable({ error: `Redis connect failed: ${describe(cause)}` })
    }),
    (client) => Effect.sync(() => client.disconnect())
  )

type XReadReply = Array<[string, Array<[string, Array<string>]>]> | null

const readAfter = (redis: RedisConnection, key: string, after: string) =>
  Effect.tryPromise({
    try: () => redis.call("XREAD", "COUNT", readBatch, "BLOCK", 0, "STREAMS", key, after) as Promise<XReadReply>,
    catch: (cause) => new Unavailable({ error: `Redis XREAD failed: ${describe(cause)}` })
  })

/** Where following starts, after printing what comes before it. */
const startingPoint = Effect.fn("Tail.startingPoint")(
  function*(options: TailOptions, print: (entry: Entry) => Effect.Effect<void>) {
    const ops = yield* Operations
    if (options.group !== undefined) {
      const details = yield* ops.stream(options.stream)
      const group = details.groups.find((g) => g.name === options.group)
      if (!group) {
        return yield* new NotFound({
          error: `stream ${details.key} has no consumer group ${JSON.stringify(options.group)}`
        })
      }
      return { key: details.key, after: group.lastDeliveredId }
    }
    const page = yield* ops.entries(options.stream, { count: options.count, reverse: true })
    const oldestFirst = [...page.entries].reverse()
    for (const entry of oldestFirst) yield* print(entry)
    // An empty stream: everything that arrives is new.
    return { key: page.stream, after: oldestFirst[oldestFirst.length - 1]?.id ?? "0-0" }
  }
)

/** Prints entries with `print` until interrupted; fails only when a server does (or the stream is unknown). */
export const tail = Effect.fn("Tail.tail")(function*(
  options: TailOptions,
  connection: TailConnection,
  print: (entry: Entry) => Effect.Effect<void>
) {
  const start = yield* startingPoint(options, print)
  const redis = yield* blockingClient(connection)
  let after = start.after
  while (true) {
    const reply = yield* readAfter(redis, start.key, after)
    for (const [, entries] of reply ?? []) {
      for (const [id, flat] of entries) {
        yield* print(decodeEntry(id, flat))
        after = id
      }
    }
  }
}, Effect.scoped)
