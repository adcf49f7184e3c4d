/**
 * Postgres crashing (immediate stop: no shutdown checkpoint, recovery on start) in the middle of a
 * drain, three times. Batches in flight are rolled back and published again: every event still
 * enters the stream once, in order per aggregate.
 */
import { Redis } from "ioredis"
import postgres from "postgres"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { databaseUrl, type PgServerHandle, startPostgresServer } from "./support/pgServer.js"
import { type RedisServerHandle, startRedisServer } from "./support/redisServer.js"
import { killAllRelayProcesses, startRelayProcess } from "./support/relayProcess.js"
import { eventually } from "./support/wait.js"

let pg: PgServerHandle | undefined
let redis: RedisServerHandle | undefined
const database = "crash"
const prefix = "crash:"

const env = () => ({
  RELAY_DATABASE_URL: databaseUrl(pg!.url, database),
  RELAY_REDIS_URL: redis!.url,
  RELAY_STREAM_PREFIX: prefix,
  RELAY_HTTP_PORT: "0",
  RELAY_HEAP_TUNING: "false",
  RELAY_POLL_INTERVAL: "200",
  RELAY_DATABASE_TIMEOUT: "2 seconds"
})

beforeAll(async () => {
  ;[pg, redis] = await Promise.all([startPostgresServer(), startRedisServer()])
  const superuser = postgres(pg.url, { max: 1, onnotice: () => {} })
  await superuser.unsafe(`CREATE DATABASE ${database}`)
  await superuser.end()
  const migrate = startRelayProcess(env(), ["migrate"])
  expect((await migrate.waitForExit(60_000)).code).toBe(0)
}, 120_000)

afterAll(async () => {
  await killAllRelayProcesses()
  await Promise.all([pg?.dispose(), redis?.dispose()])
})

describe("Postgres crash", () => {
  it("relays every event once, in order, when Postgres crashes mid-drain and recovers", async () => {
    const reader = new Redis(redis!.url)
    const relay = startRelayProcess(env())
    try {
      const total = 30_000
      const rounds = 3
      for (let round = 0; round < rounds; round++) {
        // One transaction: one WAL flush for the producer, then only the relay's commits.
        const sql = postgres(databaseUrl(pg!.url, database), { max: 1, onnotice: () => {} })
        await sql`INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
                  SELECT 'orders', 'OrderPlaced', 'order-' || (g % 50), jsonb_build_object('seq', g)
                  FROM generate_series(${round * total}::int, ${(round + 1) * total - 1}::int) AS g`
        await sql.end({ timeout: 1 })
        // Mid-drain: part of the backlog is in the stream, a batch likely between XADD and COMMIT.
        await eventually(() => reader.xlen(`${prefix}orders`), (n) => n >= round * total + 4_000, 20_000, 2)
        await pg!.stop("immediate")
        await pg!.start()
      }
      const expected = rounds * total
      const length = await eventually(() => reader.xlen(`${prefix}orders`), (n) => n >= expected, 60_000, 100)
      // A duplicate would show up after the rest arrived.
      await new Promise((r) => setTimeout(r, 1_000))
      const entries = await reader.xrange(`${prefix}orders`, "-", "+")
      const seqs = entries.map(([, fields]) =>
        (JSON.parse(fields[fields.indexOf("payload") + 1]!) as { seq: number }).seq
      )
      expect(new Set(seqs).size, "no event lost").toBe(expected)
      expect(seqs.length, "no event twice").toBe(expected)
      expect(length).toBe(expected)
      // Within an aggregate, in outbox order.
      const last = new Map<number, number>()
      for (const seq of seqs) {
        const aggregate = seq % 50
        expect(seq, `aggregate ${aggregate} in order`).toBeGreaterThan(last.get(aggregate) ?? -1)
        last.set(aggregate, seq)
      }
      const sql = postgres(databaseUrl(pg!.url, database), { max: 1, onnotice: () => {} })
      const [row] = await sql<Array<{ n: number }>>`SELECT count(*)::int AS n FROM outbox_events`
      await sql.end({ timeout: 1 })
      expect(row!.n, "the outbox is empty").toBe(0)
    } finally {
      reader.disconnect()
      relay.kill()
    }
  }, 180_000)
})
