/**
 * `node dist/main.js` as a user runs it: bad settings stop it with one clear line, `migrate` is safe
 * to run twice and concurrently, the admin endpoints answer, and SIGTERM stops it cleanly (exit 0,
 * nothing left claimed, nothing lost).
 */
import { readFileSync } from "node:fs"
import postgres from "postgres"
import { afterEach, describe, expect, inject, it } from "vitest"
import { readMigrations } from "../src/relay/Migrator.js"
import { databaseUrl } from "./support/db.js"
import { makeTestEnv, readStream, type TestEnv } from "./support/relayHarness.js"
import { killAllRelayProcesses, startRelayProcess } from "./support/relayProcess.js"

afterEach(() => killAllRelayProcesses())

/** A process's command line, from /proc (Linux). */
const commandLine = (pid: number | undefined) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")

const adminUrl = () => inject("adminDatabaseUrl")

describe("settings", () => {
  // Each setting's bad-value line is checked without a process in test/unit/settings.test.ts; this is
  // what the daemon does with one.
  it("a bad setting stops the daemon with exit code 2 and one line on stderr, secrets not shown", async () => {
    const relay = startRelayProcess({
      RELAY_DATABASE_URL: "postgres://app:hunter2secret@127.0.0.1:1/app",
      RELAY_REDIS_URL: "http://:hunter2secret@cache:6379"
    })
    const exit = await relay.waitForExit(20_000)
    expect(exit.code).toBe(2)
    expect(relay.lines().filter((line) => line.trim() !== "")).toEqual([
      "Invalid RELAY_REDIS_URL=<redacted>: expected a redis:// or rediss:// URL (a cluster's seeds: " +
      "`redis://h1:p1,h2:p2`)"
    ])
    expect(relay.stderr().filter((line) => line.trim() !== "")).toHaveLength(1)
  })
})

describe("migrate", () => {
  it("applies the migrations once, even when two processes run it at the same time", async () => {
    const admin = postgres(adminUrl(), { max: 1, onnotice: () => {} })
    const name = `migrate_${process.pid}_${Date.now()}`
    await admin.unsafe(`CREATE DATABASE ${name}`)
    const url = databaseUrl(adminUrl(), name)
    try {
      const env = { RELAY_DATABASE_URL: url, RELAY_SCHEMA: "relay_schema" }
      const [a, b] = [startRelayProcess(env, ["migrate"]), startRelayProcess(env, ["migrate"])]
      const exits = await Promise.all([a.waitForExit(30_000), b.waitForExit(30_000)])
      expect(exits.map((e) => e.code)).toEqual([0, 0])
      const again = startRelayProcess(env, ["migrate"])
      expect((await again.waitForExit(30_000)).code).toBe(0)
      const db = postgres(url, { max: 1, onnotice: () => {} })
      try {
        const applied = await db`SELECT name FROM relay_schema.outbox_relay_migrations ORDER BY version`
        expect(applied.map((r) => r.name)).toEqual(readMigrations().map((m) => m.name))
        // The producer contract holds in the configured schema, from a session that does not set it.
        const [row] = await db`SELECT relay_schema.outbox_enqueue('orders', 'OrderPlaced', 'o-1', '{"a":1}') AS id`
        expect(row!.id).toMatch(/^[0-9a-f-]{36}$/)
      } finally {
        await db.end()
      }
    } finally {
      await admin.unsafe(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${name}'`)
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name}`)
      await admin.end()
    }
  })
})

describe("daemon", () => {
  let t: TestEnv | undefined
  afterEach(async () => {
    await t?.dispose()
    t = undefined
  })

  it("runs untuned when RELAY_HEAP_TUNING=false", async () => {
    t = await makeTestEnv("untuned", { RELAY_LOG_LEVEL: "info", RELAY_HEAP_TUNING: "false" })
    const relay = startRelayProcess(t.env)
    await relay.waitForLine(
      (_, parsed) => (parsed as { message?: string } | undefined)?.message === "admin http server listening",
      20_000
    )
    expect(commandLine(relay.pid).some((arg) => arg.startsWith("--max-old-space-size"))).toBe(false)
    relay.kill("SIGTERM")
    expect((await relay.waitForExit(10_000)).code).toBe(0)
  })

  it("serves /healthz, /readyz and /metrics, and on SIGTERM exits 0 with nothing claimed or lost", async () => {
    t = await makeTestEnv("sigterm", { RELAY_BATCH_SIZE: "200", RELAY_LOG_LEVEL: "info" })
    const total = 20_000
    await t.sql`INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
                SELECT 'orders', 'Counted', 'agg-' || (g % 10), jsonb_build_object('seq', g)
                FROM generate_series(1, ${total}) AS g`
    const relay = startRelayProcess(t.env)
    const listening = await relay.waitForLine(
      (_, parsed) => (parsed as { message?: string } | undefined)?.message === "admin http server listening",
      20_000
    )
    const port = (listening.parsed as { annotations: { port: number } }).annotations.port
    expect(port).toBeGreaterThan(0)
    const base = `http://127.0.0.1:${port}`
    expect(await (await fetch(`${base}/healthz`)).text()).toBe("ok\n")
    // Heap tuning replaced the process in place: the pid we started now runs with the heap flags
    // (and gets the SIGTERM below).
    // (Node before 22.15 has no process.execve and runs untuned.)
    if ("execve" in process) expect(commandLine(relay.pid)).toContain("--max-old-space-size=1024")

    // Stop it while it is still draining.
    const stream = `${t.prefix}orders`
    while ((await t.redis.xlen(stream)) < 1000) await new Promise((r) => setTimeout(r, 5))
    const ready = await fetch(`${base}/readyz`)
    expect(ready.status).toBe(200)
    expect(await ready.json()).toMatchObject({ ready: true, postgres: { ok: true }, redis: { ok: true } })
    const metrics = await (await fetch(`${base}/metrics`)).text()
    expect(metrics).toMatch(/^outbox_events_relayed_total \d+/m)
    expect(metrics).toMatch(/^outbox_backlog /m)
    relay.kill("SIGTERM")
    const exit = await relay.waitForExit(10_000)
    expect(exit.code).toBe(0)

    // No relay session is left, so no row is claimed; every event is either published or pending.
    const sessions = await t.sql`SELECT count(*)::int AS n FROM pg_stat_activity
                                 WHERE datname = current_database() AND application_name LIKE 'outbox-relay%'`
    expect(sessions[0]!.n).toBe(0)
    const entries = await readStream(t.redis, stream)
    const published = entries.map((e) => (JSON.parse(e.fields.payload!) as { seq: number }).seq)
    const pending = await t.sql<
      Array<{ seq: number }>
    >`SELECT (payload->>'seq')::int AS seq FROM outbox_events ORDER BY id`
    expect(new Set(published).size).toBe(published.length)
    expect(published.length + pending.length).toBe(total)
    expect([...published, ...pending.map((p) => p.seq)].sort((a, b) => a - b)).toEqual(
      Array.from({ length: total }, (_, i) => i + 1)
    )
  })
})
