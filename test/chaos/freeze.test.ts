/**
 * Frozen relays (`npm run test:chaos`): three relay daemons while producers commit events, and every
 * few seconds one relay frozen with SIGSTOP for longer than RELAY_DATABASE_TIMEOUT, then resumed with
 * SIGCONT. A busy relay almost always has a claim transaction open, so Postgres ends its session while
 * it is frozen (idle_in_transaction_session_timeout), its slot leases go, and the other relays take
 * its slots over and publish its rows. A relay frozen between its claim and its XADDs resumes with the
 * claimed rows in memory: only the fence in Redis (lease epochs, lua/publish.lua) keeps them out.
 *
 * Then, once the outbox drained: every committed event is in its stream exactly once and in aggregate
 * order. stdout gets one line, `lost=0 duplicates=0 out_of_order=0 fenced=N events=N`.
 */
import { Redis } from "ioredis"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import pg from "pg"
import { afterAll, describe, expect, it } from "vitest"
import { databaseUrl, type PgServerHandle, startPostgresServer } from "../support/pgServer.js"
import { killAllRelayProcesses } from "../support/relayProcess.js"
import { sleep } from "../support/wait.js"
import { aggregateId, ledgerDdl, runProducers } from "./producers.js"
import { type AofRedisHandle, startAofRedis } from "./redisAof.js"
import { makeRelayFleet, type RelayFleet } from "./relays.js"
import { account, type LedgerRow, readWholeStream, scanKeys, type StreamEntry } from "./verify.js"

const TOPICS = ["orders", "payments", "shipping"] as const
const PREFIX = "freeze:"
const RELAYS = 3
const EVENTS = 12_000
const PRODUCE_MS = 25_000
/** Longer than RELAY_DATABASE_TIMEOUT (2 s) plus the other relays' lease check. */
const FREEZE_MS = 5_000

let pgServer: PgServerHandle | undefined
let redis: AofRedisHandle | undefined
let fleet: RelayFleet | undefined

afterAll(async () => {
  await fleet?.stopAll(5_000).catch(() => [])
  await killAllRelayProcesses()
  await redis?.dispose()
  await pgServer?.dispose()
})

describe("frozen relays", () => {
  it("publish nothing late after their sessions ended and their slots moved", async () => {
    const t0 = Date.now()
    const notes: Array<string> = []
    const note = (text: string) => notes.push(`[freeze +${((Date.now() - t0) / 1000).toFixed(1)}s] ${text}`)
    try {
      pgServer = await startPostgresServer()
      redis = await startAofRedis()
      const admin = new pg.Client({ connectionString: pgServer.url })
      await admin.connect()
      await admin.query("CREATE DATABASE frozen")
      await admin.end()
      const dbUrl = databaseUrl(pgServer.url, "frozen")
      fleet = makeRelayFleet(RELAYS, {
        RELAY_DATABASE_URL: dbUrl,
        RELAY_REDIS_URL: redis.url,
        RELAY_STREAM_PREFIX: PREFIX,
        RELAY_HTTP_PORT: "0",
        // Also the server-side idle_in_transaction_session_timeout: a frozen claim session ends after it.
        RELAY_DATABASE_TIMEOUT: "2 seconds",
        RELAY_LEASE_TIMEOUT: "3 seconds",
        RELAY_POLL_INTERVAL: "1 second",
        RELAY_BATCH_SIZE: "100",
        RELAY_RETRY_MAX_DELAY: "1 second",
        RELAY_LOG_LEVEL: "info"
      })
      await fleet.startAll(60_000)
      const db = new pg.Client({ connectionString: dbUrl })
      db.on("error", () => {})
      await db.connect()
      try {
        await db.query(ledgerDdl)
        // A slow claim (a busy database): each claim takes 30 ms more, so a relay spends most of its
        // time inside a claim transaction, and a freeze lands there rather than between batches.
        await db.query(`
          CREATE FUNCTION freeze_slow_claim() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN PERFORM pg_sleep(0.03); RETURN NULL; END $$;
          CREATE TRIGGER freeze_slow_claim BEFORE DELETE ON outbox_events
            FOR EACH STATEMENT EXECUTE FUNCTION freeze_slow_claim()`)
        const dataDirectory =
          (await db.query<{ data_directory: string }>("SHOW data_directory")).rows[0]!.data_directory

        let producing = true
        let freezes = 0
        const freezer = (async () => {
          await sleep(2_000)
          let seat = 0
          while (producing) {
            seat = (seat + 1 + Math.floor(Math.random() * (RELAYS - 1))) % RELAYS
            fleet!.signal(seat, "SIGSTOP")
            note(`relay ${seat} frozen (SIGSTOP)`)
            await sleep(FREEZE_MS)
            fleet!.signal(seat, "SIGCONT")
            freezes++
            note(`relay ${seat} resumed (SIGCONT)`)
            await sleep(500)
          }
        })()
        const production = await runProducers({
          url: dbUrl,
          producers: 3,
          aggregates: 60,
          topics: TOPICS,
          eventsPerProducer: EVENTS / 3,
          maxTxSize: 20,
          rollbackRatio: 0.1,
          targetDurationMs: PRODUCE_MS,
          deadline: t0 + 120_000,
          log: note
        }).finally(() => {
          producing = false
        })
        await freezer
        note(`producers done: ${production.stats.committedEvents} events; ${freezes} freezes`)

        const drainStart = Date.now()
        let pending = -1
        while (Date.now() - drainStart < 30_000) {
          pending = (await db.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM outbox_events WHERE dead_at IS NULL"
          )).rows[0]!.n
          if (pending === 0) break
          await sleep(250)
        }
        note(`drain: ${pending} pending after ${((Date.now() - drainStart) / 1000).toFixed(1)} s`)
        await fleet.stopAll(15_000)

        const ledger = (await db.query<LedgerRow>(
          "SELECT event_id::text AS event_id, aggregate, seq FROM chaos_ledger"
        )).rows
        const reader = new Redis(redis.url, { maxRetriesPerRequest: 3 })
        let entries: Array<StreamEntry> = []
        try {
          for (const key of await scanKeys(reader, `${PREFIX}*`)) {
            if ((await reader.type(key)) === "stream") {
              entries = entries.concat(await readWholeStream(reader, key))
            }
          }
        } finally {
          reader.disconnect()
        }
        const result = account(ledger, production.rolledBack, entries, PREFIX, aggregateId, t0)
        const lines = fleet.allLines().map((l) => l.line)
        const fenced = lines.filter((l) => l.includes("Redis fenced the batch off")).length
        // Sessions Postgres ended while their relay was frozen in a transaction.
        const serverLog = join(dataDirectory, "..", "postgres.log")
        const sessionsEnded = existsSync(serverLog)
          ? readFileSync(serverLog, "utf8").split("\n").filter((l) => l.includes("idle-in-transaction timeout")).length
          : 0
        note(`${fenced} batches fenced off, ${sessionsEnded} sessions ended by idle_in_transaction_session_timeout`)
        const warnings = new Map<string, number>()
        for (const line of lines) {
          const parsed = (() => {
            try {
              return JSON.parse(line) as {
                message?: string
                level?: string
                annotations?: { operation?: string; reason?: string }
              }
            } catch {
              return undefined
            }
          })()
          if (parsed?.message && /warn|error/i.test(String(parsed.level))) {
            const a = parsed.annotations ?? {}
            const key = `${parsed.message} [${a.operation ?? ""}] ${
              String(a.reason ?? "").replace(/\d+/g, "N").slice(0, 80)
            }`
            warnings.set(key, (warnings.get(key) ?? 0) + 1)
          }
        }
        for (const [message, n] of warnings) note(`  relay warning x${n}: ${message}`)
        for (const [kind, list] of Object.entries(result.examples)) for (const e of list) note(`  ${kind}: ${e}`)
        console.log(
          `lost=${result.lost} duplicates=${result.duplicates} out_of_order=${result.outOfOrder} ` +
            `fenced=${fenced} events=${result.committed}`
        )
        expect({
          lost: result.lost,
          duplicates: result.duplicates,
          out_of_order: result.outOfOrder,
          rolled_back_published: result.rolledBackPublished,
          unknown: result.unknown,
          pending
        }).toEqual({ lost: 0, duplicates: 0, out_of_order: 0, rolled_back_published: 0, unknown: 0, pending: 0 })
        expect(result.committed).toBe(production.stats.committedEvents)
        // The freezes really ended sessions (else this proves nothing about fencing).
        expect(freezes).toBeGreaterThanOrEqual(3)
        expect(sessionsEnded).toBeGreaterThan(0)
      } finally {
        await db.end()
      }
    } finally {
      console.error(notes.join("\n"))
    }
  })
})
