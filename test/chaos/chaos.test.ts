/**
 * The chaos suite (`npm run test:chaos`): three relay daemons against their own Postgres and their
 * own Redis (AOF, appendfsync always, noeviction) while producers commit 50,000 events over 100
 * aggregates and 5 topics, and on a schedule: a relay SIGKILLed (and restarted) every few seconds,
 * Redis restarted twice (SIGTERM once, SIGKILL once: with appendfsync always neither loses an
 * acknowledged write), Postgres restarted once (fast shutdown), Redis filled to maxmemory for a few
 * seconds, twice, and the relays' Postgres backends terminated (pg_terminate_backend) seven times: on
 * their own, and in the middle of each Redis outage and each OOM window, when the relays sit between
 * retries with idle claim sessions.
 *
 * Then, once the outbox drained: every committed event (the producers' ledger, written in the same
 * transactions) is in its stream exactly once, no rolled-back event is, each aggregate's sequence
 * increases within every stream, nothing is dead-lettered and nothing is left in the outbox.
 *
 * stdout gets exactly one line, `lost=0 duplicates=0 out_of_order=0 dlq=0 events=N`; the timeline of
 * what was done and seen goes to stderr.
 */
import { Redis } from "ioredis"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import pg from "pg"
import { afterAll, describe, expect, it } from "vitest"
import { databaseUrl, type PgServerHandle, startPostgresServer } from "../support/pgServer.js"
import { killAllRelayProcesses } from "../support/relayProcess.js"
import { sleep } from "../support/wait.js"
import { aggregateId, ledgerDdl, type ProductionResult, runProducers } from "./producers.js"
import { type AofRedisHandle, redisCommand, startAofRedis } from "./redisAof.js"
import { makeRelayFleet, type RelayFleet } from "./relays.js"
import { account, type LedgerRow, readWholeStream, scanKeys, type StreamEntry } from "./verify.js"

const TOPICS = ["orders", "payments", "shipping", "inventory", "billing"] as const
const PREFIX = "chaos:"
const AGGREGATES = 100
const PRODUCERS = 4
const EVENTS = 50_000
const RELAYS = 3
/** Production is paced over about this long, so the whole schedule below hits it. */
const PRODUCE_MS = 70_000
const DRAIN_TIMEOUT_MS = 90_000

const between = (min: number, max: number) => min + Math.random() * (max - min)

let pgServer: PgServerHandle | undefined
let redis: AofRedisHandle | undefined
let fleet: RelayFleet | undefined

afterAll(async () => {
  await fleet?.stopAll(5_000).catch(() => [])
  await killAllRelayProcesses()
  await redis?.dispose()
  await pgServer?.dispose()
})

describe("chaos", () => {
  it("relays every committed event exactly once, in aggregate order, through kills and restarts", async () => {
    const t0 = Date.now()
    const timeline: Array<string> = []
    const note = (text: string) => {
      const line = `[chaos +${((Date.now() - t0) / 1000).toFixed(1)}s] ${text}`
      timeline.push(line)
    }
    try {
      await run(t0, note)
    } finally {
      // One block on stderr (vitest prints a header per console call).
      console.error(timeline.join("\n"))
    }
  })
})

const run = async (t0: number, note: (text: string) => void) => {
  // --- Servers and relays -------------------------------------------------------------------
  pgServer = await startPostgresServer()
  {
    const admin = new pg.Client({ connectionString: pgServer.url })
    await admin.connect()
    await admin.query(`CREATE DATABASE chaos`)
    await admin.end()
  }
  const dbUrl = databaseUrl(pgServer.url, "chaos")
  redis = await startAofRedis()
  const redisUrl = redis.url
  const env = {
    RELAY_DATABASE_URL: dbUrl,
    RELAY_REDIS_URL: redisUrl,
    RELAY_STREAM_PREFIX: PREFIX,
    RELAY_HTTP_PORT: "0",
    RELAY_LEASE_TIMEOUT: "3 seconds",
    RELAY_POLL_INTERVAL: "1 second",
    RELAY_BATCH_SIZE: "200",
    RELAY_RETRY_MAX_DELAY: "2 seconds",
    RELAY_LOG_LEVEL: "info"
  }
  fleet = makeRelayFleet(RELAYS, env)
  // The relays migrate the fresh database themselves (concurrently, under the migrator's lock).
  await fleet.startAll(60_000)
  note(`postgres on ${pgServer.port} (${pgServer.kind}), redis on ${redis.port}, ${RELAYS} relays started`)

  /** A short-lived connection for the test's own statements (Postgres restarts under it). */
  const query = async <Row>(text: string): Promise<Array<Row>> => {
    const client = new pg.Client({ connectionString: dbUrl, connectionTimeoutMillis: 3_000, query_timeout: 30_000 })
    client.on("error", () => {})
    try {
      await client.connect()
      return (await client.query(text)).rows as Array<Row>
    } finally {
      await client.end().catch(() => {})
    }
  }
  await query(ledgerDdl)
  // Name the session in each server log line: the log tells which client did what (see the end).
  await query(`ALTER SYSTEM SET log_line_prefix = '%m [%p] %a '`)
  await query(`SELECT pg_reload_conf()`)
  const [{ data_directory: dataDirectory }] = await query<{ data_directory: string }>(`SHOW data_directory`) as [
    { data_directory: string }
  ]

  // --- Chaos schedule -----------------------------------------------------------------------
  let producing = true
  const counters = { relayKills: 0, redisRestarts: 0, pgRestarts: 0, terminated: 0, oomWindows: 0 }

  const terminateRelayBackends = async () => {
    const [row] = await query<{ n: number }>(`
        SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
        WHERE application_name LIKE 'outbox-relay%' AND datname = 'chaos'`)
    counters.terminated += row!.n
    note(`pg_terminate_backend: ${row!.n} relay backends`)
  }
  const restartRedis = async (how: "stop" | "kill") => {
    await (how === "stop" ? redis!.stop() : redis!.kill())
    note(`redis ${how === "stop" ? "stopped (SIGTERM)" : "killed (SIGKILL)"}`)
    // Faults come together: the relays also lose their Postgres sessions while Redis is away.
    const down = Date.now()
    await terminateRelayBackends()
    await sleep(Math.max(0, 1_000 - (Date.now() - down)))
    await redis!.start()
    counters.redisRestarts++
    note("redis started again (AOF loaded)")
  }
  const restartPostgres = async () => {
    await pgServer!.stop("fast")
    note("postgres stopped (fast shutdown)")
    await sleep(1_000)
    await pgServer!.start()
    counters.pgRestarts++
    note("postgres started again")
  }
  const fillRedis = async (ms: number) => {
    const used = await redisCommand(redisUrl, async (r) => {
      const info = await r.info("memory")
      const used = Number(/used_memory:(\d+)/.exec(info)![1])
      await r.config("SET", "maxmemory-policy", "noeviction")
      await r.config("SET", "maxmemory", String(used + 1024))
      return used
    })
    counters.oomWindows++
    note(`redis maxmemory set to used_memory + 1 KB (${used} bytes): writes fail with OOM`)
    const full = Date.now()
    await sleep(ms / 2)
    // ... and while Redis is full (the relays are between retries, their claim sessions idle).
    await terminateRelayBackends()
    await sleep(Math.max(0, ms - (Date.now() - full)))
    await raiseMaxmemory()
    note("redis maxmemory raised again (0: no limit)")
  }
  const raiseMaxmemory = async () => {
    for (let attempt = 0;; attempt++) {
      try {
        await redisCommand(redisUrl, (r) => r.config("SET", "maxmemory", "0"))
        return
      } catch (error) {
        if (attempt >= 50) throw error
        await sleep(200)
      }
    }
  }

  const schedule: Array<[atMs: number, what: string, run: () => Promise<void>]> = [
    [6_000, "terminate relay backends", terminateRelayBackends],
    [12_000, "restart redis (stop)", () => restartRedis("stop")],
    [20_000, "fill redis", () => fillRedis(4_000)],
    [29_000, "terminate relay backends", terminateRelayBackends],
    [36_000, "restart postgres", restartPostgres],
    [47_000, "restart redis (kill)", () => restartRedis("kill")],
    [55_000, "fill redis", () => fillRedis(4_000)],
    [63_000, "terminate relay backends", terminateRelayBackends]
  ]
  const chaosStart = Date.now()
  const scheduled = (async () => {
    for (const [atMs, what, run] of schedule) {
      const wait = chaosStart + atMs - Date.now()
      if (wait > 0) await sleep(wait)
      try {
        await run()
      } catch (error) {
        note(`chaos step "${what}" failed: ${(error as Error).message}`)
        throw error
      }
    }
  })()
  // Awaited after production; until then a failure must not become an unhandled rejection.
  scheduled.catch(() => {})
  const killer = (async () => {
    await sleep(3_000)
    while (producing || Date.now() - chaosStart < schedule[schedule.length - 1]![0]) {
      const seat = Math.floor(Math.random() * RELAYS)
      const restartAfter = Math.round(between(300, 1_500))
      await fleet!.killAndRestart(seat, restartAfter)
      counters.relayKills++
      note(`relay ${seat} SIGKILLed, restarted after ${restartAfter} ms`)
      await sleep(between(2_500, 4_500))
    }
  })()
  killer.catch(() => {})

  // --- Production ---------------------------------------------------------------------------
  const progress = setInterval(() => {
    void query<{ committed: number; pending: number }>(`
        SELECT (SELECT count(*) FROM chaos_ledger)::int AS committed,
               (SELECT count(*) FROM outbox_events WHERE dead_at IS NULL)::int AS pending`).then(
      ([row]) => note(`progress: ${row!.committed} committed, ${row!.pending} pending in the outbox`),
      () => {}
    )
  }, 10_000)
  let production: ProductionResult
  try {
    production = await runProducers({
      url: dbUrl,
      producers: PRODUCERS,
      aggregates: AGGREGATES,
      topics: TOPICS,
      eventsPerProducer: Math.ceil(EVENTS / PRODUCERS),
      maxTxSize: 20,
      rollbackRatio: 0.1,
      targetDurationMs: PRODUCE_MS,
      deadline: t0 + 200_000,
      log: note
    })
  } finally {
    producing = false
    clearInterval(progress)
  }
  const produced = Date.now()
  const s = production.stats
  note(
    `producers done: ${s.committedEvents} events in ${s.committedTx} committed transactions, ` +
      `${s.rolledBackTx} rolled back (${production.rolledBack.size} events); ${s.failedAttempts} failed attempts, ` +
      `retries resolved: ${s.resolvedCommitted} had committed, ${s.resolvedNotCommitted} had not`
  )
  for (const [error, n] of s.errors) note(`  producer error x${n}: ${error}`)
  await Promise.all([scheduled, killer])

  // --- Drain --------------------------------------------------------------------------------
  await raiseMaxmemory()
  fleet.ensureRunning()
  const drainStart = Date.now()
  let pending = -1
  while (Date.now() - drainStart < DRAIN_TIMEOUT_MS) {
    try {
      const [row] = await query<{ n: number }>(`SELECT count(*)::int AS n FROM outbox_events WHERE dead_at IS NULL`)
      pending = row!.n
      if (pending === 0) break
    } catch {
      // retry
    }
    await sleep(250)
  }
  note(
    `drain: ${pending} pending after ${((Date.now() - drainStart) / 1000).toFixed(1)} s (production ended ${
      ((drainStart - produced) / 1000).toFixed(1)
    } s before)`
  )
  if (pending !== 0) {
    // Who owns what, who holds which lock, where the rows wait.
    const bySlot = await query<{ slot: number; n: number; min_id: string }>(`
      SELECT slot, count(*)::int AS n, min(id)::text AS min_id FROM outbox_events
      WHERE dead_at IS NULL GROUP BY slot ORDER BY slot`)
    note(`pending by slot: ${bySlot.map((r) => `${r.slot}:${r.n}`).join(" ")}`)
    const sessions = await query<
      { pid: number; app: string; state: string; xact: string | null; slots: string | null }
    >(`
      SELECT a.pid, a.application_name AS app, a.state, (now() - a.xact_start)::text AS xact,
             string_agg(l.objid::text, ',' ORDER BY l.objid)
               FILTER (WHERE l.locktype = 'advisory' AND l.objsubid = 2) AS slots
      FROM pg_stat_activity a LEFT JOIN pg_locks l ON l.pid = a.pid AND l.granted
      WHERE a.datname = 'chaos' AND a.application_name LIKE 'outbox-relay%'
      GROUP BY 1, 2, 3, 4 ORDER BY 2, 1`)
    for (const r of sessions) {
      note(`  session ${r.pid} ${r.app} ${r.state} xact=${r.xact ?? "-"} slot locks=${r.slots ?? "none"}`)
    }
    for (const view of await fleet.readiness()) {
      const slots = (view.body as { slots?: { owned?: Array<number>; liveRelays?: number } }).slots
      note(
        `  relay ${view.seat} (pid ${view.pid}): ${
          slots
            ? `owns ${slots.owned?.join(",")} (live relays ${slots.liveRelays})`
            : JSON.stringify(view.body).slice(0, 300)
        }`
      )
    }
    const wake = await query<{ relay_id: string; awake: string; seen: string }>(`
      SELECT relay_id, (awake_until - now())::text AS awake, (now() - seen_at)::text AS seen
      FROM outbox_relay_wake ORDER BY seen_at DESC`)
    for (const r of wake) note(`  registry ${r.relay_id} awake_until-now=${r.awake} seen ${r.seen} ago`)
  }
  const exits = await fleet.stopAll(15_000)
  note(`relays stopped with SIGTERM: exit ${exits.join(", ")}`)

  // --- Accounting ---------------------------------------------------------------------------
  const ledger = await query<LedgerRow>(`SELECT event_id::text AS event_id, aggregate, seq FROM chaos_ledger`)
  const [outbox] = await query<{ dead: number; left: number }>(`
      SELECT count(*) FILTER (WHERE dead_at IS NOT NULL)::int AS dead, count(*)::int AS left FROM outbox_events`)
  const reader = new Redis(redisUrl, { maxRetriesPerRequest: 3 })
  let entries: Array<StreamEntry> = []
  let dlqEntries = 0
  const keys: Record<string, Array<string>> = { streams: [], dlq: [], other: [] }
  try {
    for (const key of await scanKeys(reader, "*")) {
      const type = await reader.type(key)
      if (key.startsWith(`{${PREFIX}`) && key.endsWith("}:dlq")) {
        keys.dlq!.push(key)
        dlqEntries += type === "stream" ? await reader.xlen(key) : 1
      } else if (key.startsWith(PREFIX) && type === "stream") {
        keys.streams!.push(key)
        entries = entries.concat(await readWholeStream(reader, key))
      } else {
        keys.other!.push(`${key} (${type})`)
      }
    }
  } finally {
    reader.disconnect()
  }
  const result = account(ledger, production.rolledBack, entries, PREFIX, aggregateId, t0)
  const dlq = outbox!.dead + dlqEntries
  const unpublished = outbox!.left - outbox!.dead

  // Relay logs: what the relays saw of the chaos.
  const seen = new Map<string, number>()
  for (const { line } of fleet.allLines()) {
    let parsed: { message?: string; level?: string; annotations?: Record<string, unknown> } | undefined
    try {
      parsed = JSON.parse(line) as typeof parsed
    } catch {
      seen.set(`(not JSON) ${line.slice(0, 100)}`, (seen.get(`(not JSON) ${line.slice(0, 100)}`) ?? 0) + 1)
      continue
    }
    if (!parsed?.message || !/warn|error|fatal/i.test(String(parsed.level ?? ""))) continue
    const a = parsed.annotations ?? {}
    const reason = String(a.reason ?? a.error ?? "").replace(/\d+/g, "N").slice(0, 90)
    const key = `${parsed.message}${a.operation ? ` [${String(a.operation)}]` : ""}${reason ? `: ${reason}` : ""}`
    seen.set(key, (seen.get(key) ?? 0) + 1)
  }
  note(`relay warnings/errors (${fleet.allLines().length} log lines in all):`)
  for (const [key, n] of [...seen].sort((a, b) => b[1] - a[1]).slice(0, 25)) note(`  x${n} ${key}`)
  const oomSeen = [...seen].filter(([key]) => /OOM/.test(key)).reduce((n, [, c]) => n + c, 0)
  for (const exit of fleet.unexpectedExits()) {
    note(
      `relay ${exit.seat}#${exit.generation} exited on its own (${exit.code ?? exit.signal}, started: ${exit.started}):`
    )
    for (const line of exit.tail) note(`    ${line.slice(0, 300)}`)
  }
  note(
    `keys: ${keys.streams!.length} streams (${entries.length} entries), ${keys.dlq!.length} dlq, other: ${
      keys.other!.join(" ") || "none"
    }`
  )
  note(
    `chaos: ${counters.relayKills} relay kills, ${counters.redisRestarts} redis restarts, ` +
      `${counters.pgRestarts} postgres restarts, ` +
      `${counters.terminated} backends terminated, ${counters.oomWindows} OOM windows (${oomSeen} OOM failures logged)`
  )
  note(
    `rolled back published=${result.rolledBackPublished} unknown=${result.unknown} ` +
      `mismatched=${result.mismatched} unpublished=${unpublished}`
  )
  for (const [kind, list] of Object.entries(result.examples)) for (const e of list) note(`  ${kind}: ${e}`)
  // What the server saw: a COMMIT arriving on a session without a transaction means a client went on
  // after its session had been replaced under it (its transaction was rolled back with the old one).
  const serverLog = join(dataDirectory, "..", "postgres.log")
  if (existsSync(serverLog)) {
    const lines = readFileSync(serverLog, "utf8").split("\n")
    const stray = lines.filter((l) => l.includes("there is no transaction in progress"))
    note(`postgres log: ${stray.length} "there is no transaction in progress" warnings`)
    for (const line of stray.slice(0, 8)) note(`  ${line}`)
  }
  // Every relay log line, for a post-mortem.
  const logFile = join(tmpdir(), `outbox-chaos-relays-${t0}.log`)
  writeFileSync(logFile, fleet.allLines().map((l) => `${l.seat}#${l.generation} ${l.line}`).join("\n") + "\n")
  note(`relay logs: ${logFile}`)
  note(`total ${((Date.now() - t0) / 1000).toFixed(1)} s`)

  console.log(
    `lost=${result.lost} duplicates=${result.duplicates} out_of_order=${result.outOfOrder} ` +
      `dlq=${dlq} events=${result.committed}`
  )

  expect({
    lost: result.lost,
    duplicates: result.duplicates,
    out_of_order: result.outOfOrder,
    dlq,
    rolled_back_published: result.rolledBackPublished,
    unknown: result.unknown,
    mismatched: result.mismatched,
    unpublished
  }).toEqual({
    lost: 0,
    duplicates: 0,
    out_of_order: 0,
    dlq: 0,
    rolled_back_published: 0,
    unknown: 0,
    mismatched: 0,
    unpublished: 0
  })
  expect(result.committed).toBeGreaterThanOrEqual(EVENTS)
  expect(result.committed).toBe(s.committedEvents)
  // The chaos really happened.
  expect(counters.relayKills).toBeGreaterThanOrEqual(10)
  expect(counters).toMatchObject({ redisRestarts: 2, pgRestarts: 1, oomWindows: 2 })
  expect(counters.terminated).toBeGreaterThan(0)
  expect(oomSeen, "the relays hit OOM while Redis was full").toBeGreaterThan(0)
  expect(s.failedAttempts, "the producers saw the Postgres restart").toBeGreaterThan(0)
  // A relay that had started never gives up on its own: transient failures are retried for ever.
  expect(fleet.unexpectedExits().filter((e) => e.started)).toEqual([])
}
