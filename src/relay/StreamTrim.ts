/**
 * Consumer-safe trimming (`RELAY_STREAM_TRIM=acked`): every stream under the prefix (dead-letter
 * streams too) is trimmed below what all its consumer groups have acknowledged, one atomic script
 * per stream (`lua/trim-acked.lua`): no pending and no unread entry of any group is ever removed.
 * It runs beside `RELAY_STREAM_MAXLEN` (which trims on every XADD, whoever has read what), on its own
 * connection so the lanes' publishing never waits behind a SCAN (docs/production.md, Consumer-safe
 * trimming).
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import { readFileSync } from "node:fs"
import { scanStreams } from "../ops/StreamInspector.js"
import { describe } from "../shared/Errors.js"
import { makeRedisClient, type RedisConnection } from "../shared/RedisClient.js"
import * as Metrics from "./Metrics.js"
import { RelayConfig } from "./RelayConfig.js"

const trimScript = readFileSync(new URL("../../lua/trim-acked.lua", import.meta.url), "utf8")

type TrimRedis = RedisConnection & {
  outboxTrimAcked(stream: string): Promise<number>
}

/**
 * Opens the trim connection (closed with the scope) and returns one pass over every stream, which
 * logs and goes on when Redis fails (the next pass tries again).
 */
export const makeAckedTrim = Effect.gen(function*() {
  const config = yield* RelayConfig
  const redis = yield* Effect.acquireRelease(
    Effect.sync(() => {
      const client = makeRedisClient(config.redisUrl, {
        name: "outbox-relay-trim",
        commandTimeout: config.redisCommandTimeout,
        tls: config.redisTls,
        cluster: config.redisCluster
      })
      client.defineCommand("outboxTrimAcked", { numberOfKeys: 1, lua: trimScript })
      return client as TrimRedis
    }),
    (client) => Effect.promise(() => client.quit().catch(() => client.disconnect())).pipe(Effect.ignore)
  )
  // Commands fail fast while disconnected; a failed connect is retried by ioredis before the next pass.
  yield* Effect.promise(() => redis.connect().then(() => true, () => false)).pipe(
    Effect.timeoutOption(config.redisCommandTimeout)
  )
  return Effect.gen(function*() {
    const streams = yield* scanStreams(redis, config.streamPrefix).pipe(
      Effect.mapError((unavailable) => new Error(unavailable.error))
    )
    let trimmed = 0
    for (const stream of streams) {
      trimmed += yield* Effect.tryPromise({
        try: () => redis.outboxTrimAcked(stream),
        catch: (cause) => new Error(`trimming ${stream}: ${describe(cause)}`)
      })
    }
    yield* Metric.update(Metrics.streamEntriesTrimmed, trimmed)
    if (trimmed > 0) yield* Effect.logDebug("trimmed acknowledged entries").pipe(Effect.annotateLogs({ trimmed }))
  }).pipe(
    Effect.catch((error) =>
      Effect.logWarning("trimming acknowledged entries failed; will try again").pipe(
        Effect.annotateLogs({ reason: error.message })
      )
    )
  )
})
