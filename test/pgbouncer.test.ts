/**
 * PgBouncer (Debian's), started by the test in front of the test's Postgres. Producers may go through
 * it in transaction mode; the relay needs sessions, so `run` refuses a transaction-mode pooler at start
 * with one line and accepts a direct connection or a session-mode pooler.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { randomUUID } from "node:crypto"
import postgres from "postgres"
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest"
import { sharedSessions } from "../src/relay/SessionCheck.js"
import { type PgBouncerHandle, startPgBouncer } from "./support/pgBouncer.js"
import { makeTestEnv, pendingCount, readStream, streamWithAtLeast, type TestEnv } from "./support/relayHarness.js"
import { killAllRelayProcesses, startRelayProcess } from "./support/relayProcess.js"
import { eventually } from "./support/wait.js"

let transactionPool: PgBouncerHandle
let sessionPool: PgBouncerHandle
let t: TestEnv | undefined

beforeAll(async () => {
  const target = inject("adminDatabaseUrl")
  // Four server connections for many clients: producers really share sessions.
  const pools = await Promise.all([
    startPgBouncer({ target, poolMode: "transaction", poolSize: 4 }),
    startPgBouncer({ target, poolMode: "session" })
  ])
  transactionPool = pools[0]
  sessionPool = pools[1]
})
afterAll(async () => {
  await Promise.all([transactionPool?.dispose(), sessionPool?.dispose()])
})
afterEach(async () => {
  killAllRelayProcesses()
  await t?.dispose()
  t = undefined
})

const relayStarted = (_: string, parsed: unknown) =>
  (parsed as { message?: string } | undefined)?.message === "relay started"

const check = (url: string) => Effect.runPromise(sharedSessions(Redacted.make(url), Duration.seconds(10)))

describe("producers through a transaction-mode PgBouncer", () => {
  it("every event reaches its stream once, in order per aggregate, with the relay connected directly", async () => {
    // A slow poll this long means only the trigger's NOTIFY (sent through the pooler) wakes the relay in time.
    t = await makeTestEnv("pgbouncer_producers", { RELAY_POLL_INTERVAL: "1 minute", RELAY_LOG_LEVEL: "info" })
    const relay = startRelayProcess(t.env)
    await relay.waitForLine(relayStarted, 30_000)

    const producers = 24
    const transactions = 30
    const perTransaction = 2
    // postgres.js through the pooler: no named prepared statements, they live in a server session.
    const pooled = postgres(transactionPool.url(t.databaseUrl), {
      max: producers,
      prepare: false,
      onnotice: () => {}
    })
    const ids = new Set<string>()
    try {
      const producing = Array.from({ length: producers }, async (_, producer) => {
        let seq = 0
        for (let i = 0; i < transactions; i++) {
          await pooled.begin(async (tx) => {
            for (let k = 0; k < perTransaction; k++) {
              const eventId = randomUUID()
              ids.add(eventId)
              await tx`INSERT INTO outbox_events (event_id, topic, event_type, aggregate_id, payload)
                       VALUES (${eventId}, 'orders', 'Placed', ${`agg-${producer}`}, ${tx.json({ seq: seq++ })})`
            }
          })
        }
      })
      // Meanwhile the check tells the pooler apart from a session, under that load.
      const [verdict] = await Promise.all([check(transactionPool.url(t.databaseUrl)), ...producing])
      expect(verdict).toBeTypeOf("string")

      const total = producers * transactions * perTransaction
      const entries = await streamWithAtLeast(t.redis, `${t.prefix}orders`, total, 60_000)
      expect(entries).toHaveLength(total)
      expect(new Set(entries.map((e) => e.fields.event_id))).toEqual(ids)
      const seqs = new Map<string, Array<number>>()
      for (const entry of entries) {
        const aggregate = entry.fields.aggregate_id!
        seqs.set(aggregate, [
          ...(seqs.get(aggregate) ?? []),
          (JSON.parse(entry.fields.payload!) as { seq: number }).seq
        ])
      }
      expect(seqs.size).toBe(producers)
      for (const list of seqs.values()) {
        expect(list).toEqual(Array.from({ length: transactions * perTransaction }, (_, i) => i))
      }
      expect(await eventually(() => pendingCount(t!.sql), (n) => n === 0)).toBe(0)

      // Once the relay is idle, a single event through the pooler still wakes it, long before the poll.
      const late = randomUUID()
      await pooled`INSERT INTO outbox_events (event_id, topic, event_type, aggregate_id, payload)
                   VALUES (${late}, 'orders', 'Placed', 'agg-late', '{}')`
      const after = await eventually(
        () => readStream(t!.redis, `${t!.prefix}orders`),
        (es) => es.some((e) => e.fields.event_id === late),
        10_000
      )
      expect(after.map((e) => e.fields.event_id)).toContain(late)
      // The relay's own session check accepted the direct URLs.
      expect(relay.exit()).toBeUndefined()
    } finally {
      await pooled.end({ timeout: 5 })
    }
  }, 120_000)
})

describe("the relay's database URLs", () => {
  it("the check tells a direct connection and a session-mode pooler from a transaction-mode one", async () => {
    t = await makeTestEnv("pgbouncer_check")
    const roundRobin = await startPgBouncer({
      target: inject("adminDatabaseUrl"),
      poolMode: "transaction",
      roundRobin: true
    })
    try {
      for (let i = 0; i < 5; i++) {
        expect(await check(t.databaseUrl)).toBeUndefined()
        expect(await check(sessionPool.url(t.databaseUrl))).toBeUndefined()
        expect(await check(transactionPool.url(t.databaseUrl))).toBeTypeOf("string")
        expect(await check(roundRobin.url(t.databaseUrl))).toBeTypeOf("string")
      }
    } finally {
      await roundRobin.dispose()
    }
  })

  for (
    const [variable, pooled] of [
      ["RELAY_DATABASE_URL", (env: TestEnv) => ({ RELAY_DATABASE_URL: transactionPool.url(env.databaseUrl) })],
      [
        "RELAY_LISTEN_DATABASE_URL",
        (env: TestEnv) => ({ RELAY_LISTEN_DATABASE_URL: transactionPool.url(env.databaseUrl) })
      ]
    ] as const
  ) {
    it(`${variable} through a transaction-mode pooler stops the relay at start: exit 2, one line`, async () => {
      t = await makeTestEnv("pgbouncer_refused")
      const relay = startRelayProcess({ ...t.env, ...pooled(t) })
      const exit = await relay.waitForExit(20_000)
      expect(exit.code).toBe(2)
      const lines = relay.lines().filter((line) => line.trim() !== "")
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatch(new RegExp(`^Invalid ${variable}: it reaches Postgres through a transaction-mode`))
      expect(lines[0]).toContain(`point ${variable} at Postgres directly or at a session-mode pooler`)
      expect(relay.stderr()).toHaveLength(1)
    })
  }

  it("`migrate` through a transaction-mode pooler stops before taking its session lock: exit 2, one line", async () => {
    t = await makeTestEnv("pgbouncer_migrate")
    const migrate = startRelayProcess({ RELAY_DATABASE_URL: transactionPool.url(t.databaseUrl) }, ["migrate"])
    expect((await migrate.waitForExit(20_000)).code).toBe(2)
    expect(migrate.lines().filter((line) => line.trim() !== "")).toEqual([
      expect.stringMatching(/^Invalid RELAY_DATABASE_URL: it reaches Postgres through a transaction-mode pooler/)
    ])
  })

  it("a relay through a session-mode pooler starts and relays every event", async () => {
    t = await makeTestEnv("pgbouncer_session", { RELAY_LOG_LEVEL: "info" })
    const relay = startRelayProcess({ ...t.env, RELAY_DATABASE_URL: sessionPool.url(t.databaseUrl) })
    await relay.waitForLine(relayStarted, 30_000)
    const total = 300
    await t.sql`INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
                SELECT 'orders', 'Placed', 'agg', jsonb_build_object('seq', g) FROM generate_series(1, ${total}) AS g`
    const entries = await streamWithAtLeast(t.redis, `${t.prefix}orders`, total, 20_000)
    expect(entries.map((e) => (JSON.parse(e.fields.payload!) as { seq: number }).seq)).toEqual(
      Array.from({ length: total }, (_, i) => i + 1)
    )
    expect(relay.exit()).toBeUndefined()
    // Every connection of the relay got through the pooler: nothing was retried or failed on the way.
    const complaints = relay.lines().filter((line) => /"level":"(WARN|ERROR|FATAL)"/i.test(line))
    expect(complaints).toEqual([])
  })
})
