/**
 * Proves the test support code works before any real test relies on it: template databases, the
 * shared Redis, and throwaway Redis/Postgres servers that stop and start again on the same port.
 */
import { Redis } from "ioredis"
import postgres from "postgres"
import { afterAll, describe, expect, inject, it } from "vitest"
import { createTestDatabase, uniquePrefix } from "./support/db.js"
import { startPostgresServer } from "./support/pgServer.js"
import { startRedisServer } from "./support/redisServer.js"
import { killAllRelayProcesses, startRelayProcess } from "./support/relayProcess.js"

const quiet = { onnotice: () => {} }

describe("test support", () => {
  const cleanups: Array<() => Promise<unknown>> = []
  afterAll(async () => {
    await killAllRelayProcesses()
    for (const cleanup of cleanups.reverse()) await cleanup()
  })

  it("creates a migrated database from the template", async () => {
    const db = await createTestDatabase("selftest")
    cleanups.push(db.drop)
    expect(db.name).toMatch(/^t_selftest_/)
    const sql = postgres(db.url, { max: 1, ...quiet })
    try {
      const [row] = await sql<Array<{ one: number; outbox: string | null }>>`
        select 1 as one, to_regclass('outbox_events')::text as outbox`
      expect(row).toEqual({ one: 1, outbox: "outbox_events" })
    } finally {
      await sql.end()
    }
    await db.drop()
    const admin = postgres(inject("adminDatabaseUrl"), { max: 1, ...quiet })
    try {
      const rows = await admin`select 1 from pg_database where datname = ${db.name}`
      expect(rows).toHaveLength(0)
    } finally {
      await admin.end()
    }
  })

  it("reaches the run's Redis", async () => {
    const redis = new Redis(inject("redisUrl"), { lazyConnect: true, maxRetriesPerRequest: 1 })
    try {
      await redis.connect()
      expect(await redis.ping()).toBe("PONG")
      const key = `${uniquePrefix("selftest")}probe`
      await redis.set(key, "1", "EX", 60)
      expect(await redis.get(key)).toBe("1")
      await redis.del(key)
    } finally {
      redis.disconnect()
    }
    expect(["external", "spawned", "container"]).toContain(inject("serverKind"))
  })

  it("stops and restarts a throwaway Redis on the same port", async () => {
    const server = await startRedisServer({ appendonly: true })
    cleanups.push(server.dispose)
    const connect = async () => {
      const redis = new Redis(server.url, {
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
        connectTimeout: 2_000
      })
      redis.on("error", () => {})
      await redis.connect()
      return redis
    }
    const before = await connect()
    await before.set("k", "v")
    before.disconnect()

    await server.stop()
    await expect(connect()).rejects.toThrow()

    await server.start()
    const after = await connect()
    try {
      expect(await after.ping()).toBe("PONG")
      expect(await after.get("k")).toBe("v") // AOF: the write survived the restart
    } finally {
      after.disconnect()
    }
    await server.kill()
    await server.dispose()
  })

  it("stops and restarts a throwaway Postgres on the same port", async () => {
    const server = await startPostgresServer()
    cleanups.push(server.dispose)
    const query = async () => {
      const sql = postgres(server.url, { max: 1, connect_timeout: 5, ...quiet })
      try {
        const [row] = await sql<Array<{ port: string }>>`show port`
        return row?.port
      } finally {
        await sql.end({ timeout: 1 })
      }
    }
    expect(await query()).toBe(String(server.port))
    await server.stop("fast")
    await expect(query()).rejects.toThrow()
    await server.start()
    expect(await query()).toBe(String(server.port))
    await server.stop("immediate")
    await server.start()
    expect(await query()).toBe(String(server.port))
    await server.dispose()
  })

  it("runs the relay CLI and reads its output and exit", async () => {
    const help = startRelayProcess({ RELAY_DATABASE_URL: "postgres://x@127.0.0.1:1/x" }, ["help"])
    const usage = await help.waitForLine((line) => line.startsWith("USAGE"), 20_000)
    expect(usage.stream).toBe("stdout")
    expect(await help.waitForExit(20_000)).toEqual({ code: 0, signal: null })
    expect(help.stderr()).toEqual([])
    await expect(help.waitForLine((line) => line === "never printed", 1_000)).rejects.toThrow(/ended before/)

    const bogus = startRelayProcess({}, ["bogus"])
    expect((await bogus.waitForExit(20_000)).code).toBe(2)
    expect(bogus.stderr().join("\n")).toContain("Unknown command \"bogus\"")
    expect(bogus.lines().length).toBe(bogus.stdout().length + bogus.stderr().length)
  })
})
