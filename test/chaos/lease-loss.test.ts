/**
 * A relay's slot leases are session advisory locks on its claim connection. When that session ends
 * while the connection is idle (pg_terminate_backend, a Postgres restart, a dropped TCP connection),
 * the locks are gone, and the relay must stop claiming those slots until it leases them again:
 * otherwise two relays claim one slot at once (FOR UPDATE SKIP LOCKED lets each skip the other's rows)
 * and an aggregate's events reach its stream out of order. The chaos suite finds this by luck; this
 * checks it directly: after the claim session is terminated, every slot a relay reports as owned
 * (/readyz) is locked by that relay's current claim session, and no slot is owned by two relays.
 */
import pg from "pg"
import { afterAll, describe, expect, it } from "vitest"
import { databaseUrl, type PgServerHandle, startPostgresServer } from "../support/pgServer.js"
import { killAllRelayProcesses, startRelayProcess } from "../support/relayProcess.js"
import { pollUntil, sleep } from "../support/wait.js"
import { type AofRedisHandle, startAofRedis } from "./redisAof.js"

let pgServer: PgServerHandle | undefined
let redis: AofRedisHandle | undefined

afterAll(async () => {
  await killAllRelayProcesses()
  await redis?.dispose()
  await pgServer?.dispose()
})

interface Slots {
  readonly owned: ReadonlyArray<number>
  readonly liveRelays: number
}

const startRelay = async (env: Record<string, string>) => {
  const relay = startRelayProcess(env)
  const line = await relay.waitForLine(
    (_, parsed) => (parsed as { message?: string } | undefined)?.message === "admin http server listening",
    20_000
  )
  const port = (line.parsed as { annotations: { port: number } }).annotations.port
  const slots = async (): Promise<Slots> =>
    ((await (await fetch(`http://127.0.0.1:${port}/readyz`)).json()) as { slots: Slots }).slots
  return { relay, slots }
}

describe("slot leases", () => {
  it("are dropped with the claim session that held them, so no two relays claim one slot", async () => {
    pgServer = await startPostgresServer()
    redis = await startAofRedis()
    const admin = new pg.Client({ connectionString: pgServer.url })
    await admin.connect()
    await admin.query("CREATE DATABASE lease_loss")
    await admin.end()
    const url = databaseUrl(pgServer.url, "lease_loss")
    const env = {
      RELAY_DATABASE_URL: url,
      RELAY_REDIS_URL: redis.url,
      RELAY_STREAM_PREFIX: "lease:",
      RELAY_HTTP_PORT: "0",
      RELAY_LEASE_TIMEOUT: "3 seconds",
      RELAY_POLL_INTERVAL: "1 second",
      RELAY_LOG_LEVEL: "info"
    }
    const sql = new pg.Client({ connectionString: url })
    await sql.connect()
    try {
      const first = await startRelay(env)
      await pollUntil("the first relay to own every slot", async () => {
        if ((await first.slots()).owned.length !== 64) throw new Error("not yet")
      }, { timeoutMs: 15_000 })

      // End the claim session while it is idle between claims.
      const terminated = await sql.query(`
        SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE application_name LIKE 'outbox-relay-claim/%' AND datname = current_database()`)
      expect(terminated.rowCount).toBeGreaterThan(0)
      await sleep(2_000)
      const second = await startRelay(env)
      await sleep(6_000) // a few lease checks and heartbeats

      const locks = await sql.query<{ pid: number; slot: number }>(`
        SELECT a.pid, l.objid::int AS slot
        FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory' AND l.granted
        WHERE a.application_name LIKE 'outbox-relay-claim/%' AND a.datname = current_database() AND l.objsubid = 2`)
      const lockedBy = new Map<number, Set<number>>()
      for (const { pid, slot } of locks.rows) {
        const set = lockedBy.get(pid) ?? new Set()
        set.add(slot)
        lockedBy.set(pid, set)
      }
      const views = await Promise.all([first.slots(), second.slots()])
      const owners = new Map<number, number>()
      for (const view of views) for (const slot of view.owned) owners.set(slot, (owners.get(slot) ?? 0) + 1)
      const doubleOwned = [...owners].filter(([, n]) => n > 1).map(([slot]) => slot).sort((a, b) => a - b)
      // Every slot a relay reports must be locked by some claim session; the two relays' sets are disjoint.
      const locked = new Set(locks.rows.map((r) => r.slot))
      const unlockedButOwned = views.map((view) => view.owned.filter((slot) => !locked.has(slot)).length)
      const report = {
        owned: views.map((v) => v.owned.length),
        lockedPerSession: [...lockedBy.values()].map((s) => s.size),
        unlockedButOwned,
        doubleOwned
      }
      expect(report.doubleOwned, JSON.stringify(report)).toEqual([])
      expect(report.unlockedButOwned, JSON.stringify(report)).toEqual([0, 0])
    } finally {
      await sql.end()
    }
  })
})
