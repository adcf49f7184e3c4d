/**
 * What the relay tests share: a fresh database (cloned from the migrated template) and key prefix per
 * test, the relay layers configured for them, and readers for the streams.
 */
import { Effect, Layer } from "effect"
import { Redis } from "ioredis"
import postgres from "postgres"
import { inject } from "vitest"
import { RelayDaemon, RelayLoop } from "../../src/relay/Relay.js"
import { RelayConfig } from "../../src/relay/RelayConfig.js"
import { loggerLayer } from "../../src/shared/Logging.js"
import { createTestDatabase, uniquePrefix } from "./db.ts"
import { eventually } from "./wait.ts"

export interface TestEnv {
  readonly databaseUrl: string
  readonly redisUrl: string
  readonly prefix: string
  /** RELAY_* settings pointing the relay at this test's database and prefix. */
  readonly env: Record<string, string>
  readonly sql: postgres.Sql
  readonly redis: Redis
  readonly dispose: () => Promise<void>
}

/** A database and a key prefix of its own, with clients for the test's side. */
export const makeTestEnv = async (label: string, settings: Record<string, string> = {}): Promise<TestEnv> => {
  const database = await createTestDatabase(label)
  const redisUrl = inject("redisUrl")
  const prefix = uniquePrefix(label)
  const sql = postgres(database.url, { max: 4, onnotice: () => {}, fetch_types: false })
  const redis = new Redis(redisUrl, { lazyConnect: false, maxRetriesPerRequest: 1 })
  return {
    databaseUrl: database.url,
    redisUrl,
    prefix,
    env: {
      RELAY_DATABASE_URL: database.url,
      RELAY_REDIS_URL: redisUrl,
      RELAY_STREAM_PREFIX: prefix,
      RELAY_HTTP_PORT: "0",
      RELAY_POLL_INTERVAL: "5 seconds",
      RELAY_LOG_LEVEL: "warn",
      ...settings
    },
    sql,
    redis,
    dispose: async () => {
      await sql.end({ timeout: 1 })
      const keys = await redis.keys(`*${prefix}*`)
      if (keys.length > 0) await redis.del(...keys)
      redis.disconnect()
      await database.drop()
    }
  }
}

/** Acquires a TestEnv for the duration of an Effect test. */
export const testEnv = (label: string, settings: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.promise(() => makeTestEnv(label, settings)),
    (env) => Effect.promise(() => env.dispose())
  )

/** The relay loop (LISTEN wake-ups, slow poll, claim/publish/commit) configured by `env`. */
export const relayLayer = (env: Record<string, string>) =>
  RelayLoop.pipe(
    Layer.provide(RelayConfig.layerFrom(env)),
    // Failures the tests provoke on purpose would drown the output; RELAY_LOG_LEVEL=debug shows them.
    Layer.provide(loggerLayer({ logLevel: (process.env.RELAY_LOG_LEVEL as "error") ?? "error", logFormat: "pretty" }))
  )

/** `relayLayer` plus the admin HTTP server (`/readyz`, `/metrics`) on `RELAY_HTTP_PORT`. */
export const daemonLayer = (env: Record<string, string>) =>
  RelayDaemon.pipe(
    Layer.provide(RelayConfig.layerFrom(env)),
    Layer.provide(loggerLayer({ logLevel: (process.env.RELAY_LOG_LEVEL as "error") ?? "error", logFormat: "pretty" }))
  )

export interface StreamEntry {
  readonly id: string
  readonly fields: Record<string, string>
}

/** Every entry of a stream, oldest first. */
export const readStream = async (redis: Redis, key: string): Promise<Array<StreamEntry>> => {
  const entries = await redis.xrange(key, "-", "+")
  return entries.map(([id, flat]) => {
    const fields: Record<string, string> = {}
    for (let i = 0; i < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!
    return { id, fields }
  })
}

/** Waits until a stream holds at least `count` entries (or the time is up) and returns them. */
export const streamWithAtLeast = (redis: Redis, key: string, count: number, timeoutMs = 10_000) =>
  eventually(() => readStream(redis, key), (entries) => entries.length >= count, timeoutMs)

export interface NewEvent {
  readonly topic: string
  readonly event_type?: string
  readonly aggregate_id?: string
  readonly payload?: unknown
  readonly event_id?: string
}

/** Inserts events in one transaction, as a producer would. */
export const insertEvents = (sql: postgres.Sql, events: ReadonlyArray<NewEvent>) =>
  sql.begin(async (tx) => {
    for (const e of events) {
      await tx`
        INSERT INTO outbox_events (topic, event_type, aggregate_id, payload, event_id)
        VALUES (${e.topic}, ${e.event_type ?? "Happened"}, ${e.aggregate_id ?? "agg-1"},
                ${tx.json((e.payload ?? {}) as never)}, coalesce(${e.event_id ?? null}::uuid, gen_random_uuid()))`
    }
  })

/** Number of rows still pending (not published, not dead). */
export const pendingCount = async (sql: postgres.Sql): Promise<number> => {
  const [row] = await sql<
    Array<{ n: number }>
  >`SELECT count(*)::int AS n FROM outbox_events WHERE dead_at IS NULL AND published_at IS NULL`
  return row!.n
}

/**
 * Pending rows once the relay has committed what it already published: entries are visible in the
 * stream a moment before the relay's COMMIT, so a count taken right after reading them can race it.
 */
export const drained = (sql: postgres.Sql, timeoutMs = 5_000) =>
  eventually(() => pendingCount(sql), (n) => n === 0, timeoutMs)
