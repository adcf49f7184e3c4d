/**
 * The chaos suite's Redis: AOF on with `appendfsync always` from the first command on (so an
 * acknowledged write survives SIGTERM and SIGKILL alike) and `maxmemory-policy noeviction` (so a
 * memory limit makes writes fail with OOM instead of dropping keys), from test/support/redisServer.ts.
 */
import { Redis } from "ioredis"
import { type RedisServerHandle, startRedisServer } from "../support/redisServer.js"

export type AofRedisHandle = RedisServerHandle

/** Runs one command on a short-lived connection (never queued while Redis is away). */
export const redisCommand = async <A>(url: string, run: (redis: Redis) => Promise<A>): Promise<A> => {
  const redis = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    connectTimeout: 2_000
  })
  redis.on("error", () => {})
  try {
    await redis.connect()
    return await run(redis)
  } finally {
    redis.disconnect()
  }
}

export const startAofRedis = (): Promise<AofRedisHandle> =>
  startRedisServer({ appendonly: true, appendfsync: "always", noeviction: true })
