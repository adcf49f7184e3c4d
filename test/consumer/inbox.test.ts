/**
 * Exactly-once effects with the inbox: consumer processes are SIGKILLed in the middle of their
 * handlers' transactions, again and again, while others of the group reclaim what they held. Every
 * event's effect (a counter bumped in the handler's transaction) must end at exactly 1, although
 * some events were delivered more than once.
 */
import { Redis } from "ioredis"
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import postgres from "postgres"
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest"
import { startConsumer } from "../../src/consumer/startConsumer.js"
import { createTestDatabase, type TestDatabase, uniquePrefix } from "../support/db.js"
import { onProcessExit } from "../support/processes.js"
import { eventually, sleep } from "../support/wait.js"
import { addEvents, pendingCount } from "./helpers.js"

const worker = fileURLToPath(new URL("./fixtures/inboxWorker.mjs", import.meta.url))

describe("inbox", () => {
  let database: TestDatabase
  let sql: postgres.Sql
  let redis: Redis
  const prefix = uniquePrefix("inbox")
  const children = new Set<ChildProcess>()
  const readyWorkers = new WeakSet<ChildProcess>()

  beforeAll(async () => {
    database = await createTestDatabase("inbox")
    sql = postgres(database.url, { max: 2, onnotice: () => {} })
    await sql`CREATE TABLE effects (event_id uuid PRIMARY KEY, n int NOT NULL)`
    await sql`CREATE TABLE deliveries (event_id uuid NOT NULL, worker text NOT NULL, delivery_count int NOT NULL)`
    redis = new Redis(inject("redisUrl"))
  })

  afterAll(async () => {
    for (const child of children) child.kill("SIGKILL")
    const keys = await redis.keys(`${prefix}*`)
    if (keys.length > 0) await redis.del(...keys)
    redis.disconnect()
    await sql.end({ timeout: 1 })
    await database.drop()
  })

  const spawnWorker = (name: string) => {
    const child = spawn(process.execPath, [worker], {
      env: {
        ...process.env,
        REDIS_URL: inject("redisUrl"),
        STREAM: `${prefix}orders`,
        GROUP: "billing",
        DATABASE_URL: database.url,
        WORKER: name
      },
      stdio: ["ignore", "pipe", "pipe"]
    })
    const unregister = onProcessExit(() => child.kill("SIGKILL"))
    children.add(child)
    child.once("exit", () => {
      children.delete(child)
      unregister()
    })
    child.stderr?.on("data", (chunk) => process.stderr.write(`[${name}] ${chunk}`))
    const ready = new Promise<void>((resolve) =>
      child.stdout?.on("data", (chunk) => {
        if (String(chunk).includes("ready")) {
          readyWorkers.add(child)
          resolve()
        }
      })
    )
    return { child, ready }
  }

  it("every effect happens exactly once while consumers are killed mid-transaction", async () => {
    const stream = `${prefix}orders`
    const total = 600
    await addEvents(redis, stream, Array.from({ length: total }, (_, i) => ({ payload: { i } })))
    let next = 0
    await Promise.all([0, 1, 2].map(() => spawnWorker(`w${next++}`).ready))
    // Every 300 ms, SIGKILL a worker that is busy with the backlog and start a fresh one.
    for (let kill = 0; kill < 5; kill++) {
      await sleep(300)
      const ready = [...children].filter((child) => readyWorkers.has(child))
      ready[Math.floor(Math.random() * ready.length)]?.kill("SIGKILL")
      spawnWorker(`w${next++}`)
    }
    const done = await eventually(
      async () => (await sql<Array<{ n: number }>>`SELECT count(*)::int AS n FROM effects`)[0]!.n,
      (n) => n >= total,
      40_000
    )
    expect(done).toBe(total)
    expect(await eventually(() => pendingCount(redis, stream, "billing"), (n) => n === 0, 10_000)).toBe(0)
    // The same events once more (a producer retry, a replayed dead letter): skipped by the inbox.
    const again = await sql<Array<{ event_id: string }>>`SELECT event_id FROM effects ORDER BY event_id LIMIT 50`
    await addEvents(redis, stream, again.map((row) => ({ event_id: row.event_id })))
    expect(
      await eventually(
        () =>
          redis.xinfo("GROUPS", stream).then((groups) => {
            const info = (groups as Array<Array<string | number>>)[0]!
            return Number(info[info.indexOf("entries-read") + 1])
          }),
        (n) => n >= total + 50,
        10_000
      )
    ).toBe(total + 50)
    expect(await eventually(() => pendingCount(redis, stream, "billing"), (n) => n === 0, 10_000)).toBe(0)
    const counts = await sql<
      Array<{ n: number; events: number }>
    >`SELECT n, count(*)::int AS events FROM effects GROUP BY n`
    expect(counts).toEqual([{ n: 1, events: total }])
    const [inbox] = await sql<
      Array<{ n: number }>
    >`SELECT count(*)::int AS n FROM outbox_inbox WHERE consumer_group = 'billing'`
    expect(inbox!.n).toBe(total)
    // The kills did cause redeliveries: the inbox is what kept the effects single.
    const [redelivered] = await sql<
      Array<{ n: number }>
    >`SELECT count(DISTINCT event_id)::int AS n FROM deliveries WHERE delivery_count > 1`
    expect(redelivered!.n).toBeGreaterThan(0)
  })

  it("a handler that overruns its timeout cannot write outside its inbox transaction", async () => {
    const stream = `${prefix}slow`
    const total = 5
    await addEvents(redis, stream, Array.from({ length: total }, (_, i) => ({ payload: { i } })))
    // The first delivery ignores its abort signal and writes its effect after the timeout fired; later
    // deliveries are quick. Each effect must still happen exactly once.
    const consumer = await startConsumer({
      redisUrl: inject("redisUrl"),
      stream,
      group: "slow",
      handlerTimeoutMs: 150,
      claimIdleMs: 400,
      claimIntervalMs: 100,
      blockMs: 100,
      logLevel: "error",
      inbox: { databaseUrl: database.url },
      handler: async (event, { sql: tx }) => {
        if (event.deliveryCount === 1) await sleep(400)
        await tx`INSERT INTO effects (event_id, n) VALUES (${event.eventId}, 1)
                 ON CONFLICT (event_id) DO UPDATE SET n = effects.n + 1`
      }
    })
    try {
      const ids = (await redis.xrange(stream, "-", "+")).map(([, fields]) => fields[fields.indexOf("event_id") + 1]!)
      const effects = () =>
        sql<Array<{ n: number }>>`SELECT n FROM effects WHERE event_id = ANY(${ids}::uuid[])`.then((rows) => rows)
      const done = await eventually(effects, (rows) => rows.length === total, 20_000)
      expect(await eventually(() => pendingCount(redis, stream, "slow"), (n) => n === 0, 10_000)).toBe(0)
      // Time for any late write of an abandoned first attempt to land.
      await sleep(600)
      expect((await effects()).map((row) => row.n)).toEqual(done.map(() => 1))
    } finally {
      await consumer.stop()
    }
  })
})
