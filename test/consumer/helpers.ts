/**
 * What the consumer tests share: relay-shaped stream entries, a key prefix per test (deleted after),
 * a quiet logger, and the group's pending count (waiting lives in test/support/wait.ts). Every test runs
 * against real Redis (and Postgres for the inbox).
 */
import { Effect, Layer } from "effect"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import { inject } from "vitest"
import { loggerLayer } from "../../src/shared/Logging.js"
import { uniquePrefix } from "../support/db.js"

export interface TestEvent {
  readonly event_type?: string
  readonly aggregate_id?: string
  readonly payload?: unknown
  readonly event_id?: string
  /** Raw payload text, to write malformed entries. */
  readonly rawPayload?: string
}

/** Stream entry fields exactly as the relay writes them. */
export const envelope = (topic: string, e: TestEvent): Array<string> => [
  "event_id",
  e.event_id ?? randomUUID(),
  "event_type",
  e.event_type ?? "Happened",
  "topic",
  topic,
  "aggregate_type",
  "",
  "aggregate_id",
  e.aggregate_id ?? "agg-1",
  "tenant_id",
  "",
  "schema_version",
  "1",
  "occurred_at",
  new Date().toISOString(),
  "payload",
  e.rawPayload ?? JSON.stringify(e.payload ?? {}),
  "headers",
  "{}"
]

/** Appends events to a stream in one pipeline; returns their entry ids. */
export const addEvents = async (
  redis: Redis,
  stream: string,
  events: ReadonlyArray<TestEvent>
): Promise<Array<string>> => {
  const pipeline = redis.pipeline()
  for (const e of events) pipeline.xadd(stream, "*", ...envelope("orders", e))
  const replies = await pipeline.exec()
  return (replies ?? []).map(([error, id]) => {
    if (error) throw error
    return id as string
  })
}

/** A Redis client and a key prefix of its own; keys under the prefix are deleted at the end. */
export const testRedis = (label: string, url: string = inject("redisUrl")) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const redis = new Redis(url, { maxRetriesPerRequest: 1 })
      redis.on("error", () => {})
      return { redis, prefix: uniquePrefix(label), url }
    }),
    ({ prefix, redis }) =>
      Effect.promise(async () => {
        const keys = await redis.keys(`${prefix}*`).catch(() => [])
        if (keys.length > 0) await redis.del(...keys).catch(() => 0)
        redis.disconnect()
      })
  )

/** Logs at RELAY_LOG_LEVEL (default: errors only) so expected failures do not drown the output. */
export const quietLogs = loggerLayer({
  logLevel: (process.env.RELAY_LOG_LEVEL as "error") ?? "error",
  logFormat: "pretty"
})

/** Builds a layer in the current scope with quiet logs. */
export const start = <A, E>(layer: Layer.Layer<A, E>) => Layer.build(layer.pipe(Layer.provide(quietLogs)))

/** Entries of the group not yet acknowledged. */
export const pendingCount = async (redis: Redis, stream: string, group: string): Promise<number> => {
  const [count] = (await redis.xpending(stream, group)) as [number]
  return Number(count)
}
