/**
 * The operations commands as an operator runs them: `node dist/main.js status|streams|tail|dlq|outbox`
 * as child processes, next to a running relay, against real Postgres and Redis. What they print (text
 * and `--json`, the latter equal to the API's answer), what they change, that `tail` never consumes
 * and ends cleanly on Ctrl-C, and the one line and exit code of an unknown stream or a server down.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type {
  DeadLetterPage,
  DeadRowPage,
  DeadRowReplay,
  PurgeResult,
  ReplayResult,
  StreamList
} from "../src/ops/Model.js"
import { freePort } from "./support/ports.js"
import { insertEvents, makeTestEnv, streamWithAtLeast, type TestEnv } from "./support/relayHarness.js"
import { killAllRelayProcesses, type RelayProcessHandle, startRelayProcess } from "./support/relayProcess.js"
import { eventually } from "./support/wait.js"

interface Outcome {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
  readonly ms: number
}

/** Runs `node dist/main.js ...args` with the test's settings (plus `env`) to its end. */
const cli = async (t: TestEnv, args: ReadonlyArray<string>, env: Record<string, string> = {}): Promise<Outcome> => {
  const started = Date.now()
  const child = startRelayProcess({ ...t.env, ...env }, args)
  const exit = await child.waitForExit(30_000)
  return {
    code: exit.code,
    stdout: child.stdout().join("\n"),
    stderr: child.stderr().join("\n"),
    ms: Date.now() - started
  }
}

/** Waits for a line of `child` matching `pattern` (from line `since` on). */
const line = (child: RelayProcessHandle, pattern: RegExp, since = 0) =>
  child.waitForLine((text) => pattern.test(text), 15_000, since).then((l) => l.line)

/** Figures that change from one call to the next (ages, idle times): left out when comparing documents. */
const withoutClocks = (value: unknown): unknown =>
  JSON.parse(
    JSON.stringify(value),
    (key, v) => /AgeSeconds$|^idleMs$|^inactiveMs$|^lastHeartbeat$/.test(key) ? undefined : v
  )

/** XINFO GROUPS of `stream`, each group as a record. */
const groups = async (t: TestEnv, stream: string) =>
  ((await t.redis.xinfo("GROUPS", stream)) as Array<Array<unknown>>).map((flat) =>
    Object.fromEntries(Array.from({ length: flat.length / 2 }, (_, i) => [String(flat[2 * i]), flat[2 * i + 1]]))
  )

/** A consumer's dead letter as the consumer library writes it (the envelope plus why and where). */
const consumerDeadLetter = (aggregateId: string, reason: string) => [
  "event_id",
  crypto.randomUUID(),
  "event_type",
  "OrderPlaced",
  "topic",
  "orders",
  "aggregate_id",
  aggregateId,
  "payload",
  JSON.stringify({ aggregateId }),
  "headers",
  "{}",
  "reason",
  reason,
  "group",
  "billing",
  "consumer",
  "c-1",
  "delivery_count",
  "5",
  "entry_id",
  "1-1",
  "dead_at",
  new Date().toISOString()
]

describe("operations commands", () => {
  let t: TestEnv
  let relay: RelayProcessHandle
  let api: string
  let orders: string
  let payments: string
  let deadEventId: string

  beforeAll(async () => {
    t = await makeTestEnv("cli-ops", { RELAY_HTTP_PORT: String(await freePort()), RELAY_LOG_LEVEL: "info" })
    orders = `${t.prefix}orders`
    payments = `${t.prefix}payments`
    relay = startRelayProcess(t.env)
    const listening = await relay.waitForLine(
      (_, parsed) => (parsed as { message?: string } | undefined)?.message === "admin http server listening",
      20_000
    )
    api = `http://127.0.0.1:${(listening.parsed as { annotations: { port: number } }).annotations.port}`

    await insertEvents(t.sql, [
      ...Array.from({ length: 5 }, (_, i) => ({ topic: "orders", aggregate_id: `o-${i + 1}`, payload: { n: i + 1 } })),
      { topic: "payments", event_type: "Paid", aggregate_id: "p-1", payload: { amount: 10 } }
    ])
    await streamWithAtLeast(t.redis, orders, 5)
    await streamWithAtLeast(t.redis, payments, 1)
    // billing has received two of the five orders (pending, not acked): lag 3, pending 2.
    await t.redis.xgroup("CREATE", orders, "billing", "0")
    await t.redis.xreadgroup("GROUP", "billing", "c-1", "COUNT", 2, "STREAMS", orders, ">")
    // Two dead letters from consumers.
    await t.redis.xadd(`{${orders}}:dlq`, "*", ...consumerDeadLetter("o-dead-1", "handler failed 5 times"))
    await t.redis.xadd(`{${orders}}:dlq`, "*", ...consumerDeadLetter("o-dead-2", "payload does not match the schema"))
    // A dead outbox row: dead in the same transaction that inserted it, so the relay never sees it pending.
    deadEventId = await t.sql.begin(async (tx) => {
      const [row] = await tx<Array<{ event_id: string }>>`
        INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
        VALUES ('orders', 'OrderRefunded', 'o-dead-row', '{"refund": 3}') RETURNING event_id::text`
      await tx`UPDATE outbox_events SET dead_at = now(), attempts = 3, last_error = 'Redis said: OOM'
               WHERE aggregate_id = 'o-dead-row'`
      return row!.event_id
    })
  }, 60_000)

  afterAll(async () => {
    await killAllRelayProcesses()
    await t?.dispose()
  })

  it("status: both servers, the outbox, the relay with its lanes and slots, every stream's groups", async () => {
    const text = await cli(t, ["status"])
    expect(text.code, text.stderr).toBe(0)
    expect(text.stdout).toMatch(/^postgres {2}ok$/m)
    expect(text.stdout).toMatch(/^redis {5}ok$/m)
    expect(text.stdout).toMatch(/^backlog +0$/m)
    expect(text.stdout).toMatch(/^dead rows +1$/m)
    // The relay: <address>/<pid>, one lane, all 64 slots.
    expect(text.stdout).toMatch(new RegExp(`^\\S+/${relay.pid} +1 +[01] +[01] +64 +\\d`, "m"))
    expect(text.stdout).toMatch(new RegExp(`^${orders} +5 +billing +3 +2 +2$`, "m"))
    expect(text.stdout).toMatch(new RegExp(`^${payments} +1 +- +- +- +0$`, "m"))

    const json = await cli(t, ["status", "--json"])
    expect(json.code).toBe(0)
    expect(json.stdout.split("\n")).toHaveLength(1)
    const status = JSON.parse(json.stdout)
    expect(status.postgres).toEqual({ ok: true, error: null })
    expect(status.redis).toEqual({ ok: true, error: null })
    expect(status.outbox).toMatchObject({ backlog: 0, dead: 1 })
    expect(status.outbox.relays).toHaveLength(1)
    expect(status.outbox.relays[0]).toMatchObject({ pid: relay.pid })
    expect(status.outbox.relays[0].slots).toHaveLength(64)
    const ordersDetails = status.streams.streams.find((s: { key: string }) => s.key === orders)
    expect(ordersDetails).toMatchObject({ length: 5, deadLetters: 2 })
    expect(ordersDetails.groups).toMatchObject([{ name: "billing", lag: 3, pending: 2 }])
    // The outbox part is the API's /api/outbox document.
    const apiOutbox = await (await fetch(`${api}/api/outbox`)).json()
    expect(withoutClocks(status.outbox)).toEqual(withoutClocks(apiOutbox))
  })

  it("streams: the list (the API's document with --json) and one stream's groups and consumers", async () => {
    const list = await cli(t, ["streams"])
    expect(list.code, list.stderr).toBe(0)
    expect(list.stdout).toMatch(new RegExp(`^${orders} +5 +1 +2 `, "m"))
    expect(list.stdout).toMatch(new RegExp(`^\\{${orders}\\}:dlq +2 +0 +- `, "m"))
    expect(list.stdout).toMatch(new RegExp(`^${payments} +1 +0 +0 `, "m"))

    const json = await cli(t, ["streams", "--json"])
    const fromCli = JSON.parse(json.stdout) as StreamList
    const fromApi = await (await fetch(`${api}/api/streams`)).json()
    expect(withoutClocks(fromCli)).toEqual(withoutClocks(fromApi))
    expect(fromCli.streams.map((s) => s.key)).toEqual([orders, `{${orders}}:dlq`, payments])

    const one = await cli(t, ["streams", orders])
    expect(one.code, one.stderr).toBe(0)
    expect(one.stdout).toMatch(/^length +5$/m)
    expect(one.stdout).toMatch(/^billing +3 +2 +\d+-\d+ +c-1 +2 +\S+$/m)
    const oneJson = JSON.parse((await cli(t, ["streams", orders, "--json"])).stdout)
    const oneApi = await (await fetch(`${api}/api/streams/${encodeURIComponent(orders)}`)).json()
    expect(withoutClocks(oneJson)).toEqual(withoutClocks(oneApi))
  })

  it("tail prints the last entries, then each new one; Ctrl-C ends it with 0; nothing consumed", async () => {
    const before = await groups(t, orders)
    const tail = startRelayProcess(t.env, ["tail", orders, "--count", "2"])
    const first = await line(tail, /o-4/)
    expect(first).toMatch(/^\d+-\d+ {2}\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z {2}Happened {2}o-4 {2}\{"n":4\}$/)
    await line(tail, /o-5/)
    await insertEvents(t.sql, [{
      topic: "orders",
      event_type: "OrderShipped",
      aggregate_id: "o-new",
      payload: { n: 6 }
    }])
    expect(await line(tail, /o-new/)).toMatch(/ {2}OrderShipped {2}o-new {2}\{"n":6\}$/)
    tail.kill("SIGINT")
    const exit = await tail.waitForExit(10_000)
    expect(exit).toEqual({ code: 0, signal: null })
    // Exactly the last two, then the new one; nothing older.
    expect(tail.stdout().map((l) => l.split("  ")[3])).toEqual(["o-4", "o-5", "o-new"])
    expect(tail.stderr()).toEqual([])
    // No group was joined or created, nothing delivered or acknowledged (only the lag grew by the new entry).
    expect(await groups(t, orders)).toEqual(before.map((g) => ({ ...g, lag: Number(g.lag) + 1 })))
  })

  it("tail --group starts after the group's last-delivered entry, then follows (as JSON entries)", async () => {
    const tail = startRelayProcess(t.env, ["tail", orders, "--group", "billing", "--json"])
    await line(tail, /"aggregateId":"o-new"/)
    await insertEvents(t.sql, [{ topic: "orders", aggregate_id: "o-newer", payload: { n: 7 } }])
    await line(tail, /"aggregateId":"o-newer"/)
    tail.kill("SIGINT")
    expect((await tail.waitForExit(10_000)).code).toBe(0)
    const entries = tail.stdout().map((l) => JSON.parse(l) as { aggregateId: string; payload: unknown })
    // billing received o-1 and o-2: what it has not received yet, in order, then the new one.
    expect(entries.map((e) => e.aggregateId)).toEqual(["o-3", "o-4", "o-5", "o-new", "o-newer"])
    expect(entries[0]!.payload).toEqual({ n: 3 })
    expect(await groups(t, orders)).toMatchObject([{ name: "billing", consumers: 1, pending: 2, "entries-read": 2 }])
  })

  it("dlq list, replay and purge a stream's dead letters", async () => {
    const list = await cli(t, ["dlq", "list", orders])
    expect(list.code, list.stderr).toBe(0)
    expect(list.stdout).toMatch(/2 dead letter\(s\) \(2 from consumers, 0 from the relay\)/)
    expect(list.stdout).toMatch(/reason: handler failed 5 times/)

    const page = JSON.parse((await cli(t, ["dlq", "list", orders, "--json"])).stdout) as DeadLetterPage
    expect(page.messages.map((m) => [m.aggregateId, m.source, m.reason])).toEqual([
      ["o-dead-1", "consumer", "handler failed 5 times"],
      ["o-dead-2", "consumer", "payload does not match the schema"]
    ])
    const [first, second] = page.messages

    const lengthBefore = await t.redis.xlen(orders)
    const replay = await cli(t, ["dlq", "replay", orders, "--id", first!.id, "--json"])
    expect(replay.code, replay.stderr).toBe(0)
    const replayed = JSON.parse(replay.stdout) as ReplayResult
    expect(replayed.replayed.map((r) => r.id)).toEqual([first!.id])
    expect(await t.redis.xlen(orders)).toBe(lengthBefore + 1)
    const [[, fields]] =
      (await t.redis.xrange(orders, replayed.replayed[0]!.newId, replayed.replayed[0]!.newId)) as Array<
        [string, Array<string>]
      >
    expect(fields).toContain("o-dead-1")

    // An id that is not there: reported, exit 1; the other one stays.
    const missing = await cli(t, ["dlq", "purge", orders, "--id", "1-1", "--id", second!.id])
    expect(missing.code).toBe(1)
    expect(missing.stdout).toBe(`1 purged from {${orders}}:dlq`)
    expect(missing.stderr).toBe("not found: 1-1")
    expect(await t.redis.xlen(`{${orders}}:dlq`)).toBe(0)

    await t.redis.xadd(`{${orders}}:dlq`, "*", ...consumerDeadLetter("o-dead-3", "boom"))
    const all = await cli(t, ["dlq", "purge", orders, "--all", "--json"])
    expect(all.code).toBe(0)
    expect(JSON.parse(all.stdout) as PurgeResult).toEqual({ purged: 1, notFound: [] })
    expect(await t.redis.exists(`{${orders}}:dlq`)).toBe(0)
  })

  it("outbox dead list and replay: the dead row goes back to pending and the relay publishes it", async () => {
    const list = await cli(t, ["outbox", "dead", "list"])
    expect(list.code, list.stderr).toBe(0)
    expect(list.stdout).toMatch(
      new RegExp(`^${deadEventId} {2}orders {2}OrderRefunded {2}aggregate=o-dead-row attempts=3 `, "m")
    )
    expect(list.stdout).toMatch(/^ {4}error: Redis said: OOM$/m)

    const page = JSON.parse((await cli(t, ["outbox", "dead", "list", "--json"])).stdout) as DeadRowPage
    expect(page.rows.map((r) => [r.eventId, r.lastError, r.payload])).toEqual([[deadEventId, "Redis said: OOM", {
      refund: 3
    }]])
    const otherTopic = JSON.parse((await cli(t, ["outbox", "dead", "list", "--topic", "payments", "--json"])).stdout)
    expect(otherTopic).toEqual({ rows: [] })

    const unknown = crypto.randomUUID()
    const replay = await cli(t, ["outbox", "dead", "replay", "--id", deadEventId, "--id", unknown, "--json"])
    expect(replay.code).toBe(1)
    expect(JSON.parse(replay.stdout) as DeadRowReplay).toEqual({ replayed: [deadEventId], notFound: [unknown] })
    const published = await eventually(
      async () => (await t.redis.xrange(orders, "-", "+")).filter(([, f]) => f.includes(deadEventId)),
      (entries) => entries.length === 1
    )
    expect(published).toHaveLength(1)
    const [{ dead }] = await t.sql<[{ dead: number }]>`
      SELECT count(*)::int AS dead FROM outbox_events WHERE dead_at IS NOT NULL`
    expect(dead).toBe(0)
  })

  it("an unknown stream or group: one line on stderr, exit 1", async () => {
    const cases: Array<[ReadonlyArray<string>, RegExp]> = [
      [["streams", `${t.prefix}missing`], /^no stream ".*missing" under the prefix ".*"$/],
      [["streams", "elsewhere:orders"], /^no stream "elsewhere:orders" under the prefix /],
      [["tail", `${t.prefix}missing`], /^no stream ".*missing" under the prefix /],
      [["tail", orders, "--group", "nobody"], /^stream .* has no consumer group "nobody"$/],
      [["dlq", "list", "elsewhere:orders"], /^no stream "elsewhere:orders" under the prefix /],
      [["dlq", "purge", `${t.prefix}missing`, "--all"], /^no stream ".*missing" under the prefix /]
    ]
    for (const [args, message] of cases) {
      const outcome = await cli(t, args)
      expect(outcome.code, args.join(" ")).toBe(1)
      expect(outcome.stdout, args.join(" ")).toBe("")
      expect(outcome.stderr, args.join(" ")).toMatch(message)
      expect(outcome.stderr.split("\n"), args.join(" ")).toHaveLength(1)
    }
  })

  it("Redis down: status shows Redis failing (and Postgres working), exit 1, promptly", async () => {
    const closed = await freePort()
    const outcome = await cli(t, ["status"], { RELAY_REDIS_URL: `redis://127.0.0.1:${closed}` })
    expect(outcome.code).toBe(1)
    expect(outcome.stdout).toMatch(/^postgres {2}ok$/m)
    expect(outcome.stdout).toMatch(/^redis {5}FAILING: Redis connect failed: .*ECONNREFUSED/m)
    expect(outcome.stdout).toMatch(/^backlog +0$/m)
    expect(outcome.ms).toBeLessThan(10_000)

    const json = await cli(t, ["status", "--json"], { RELAY_REDIS_URL: `redis://127.0.0.1:${closed}` })
    expect(json.code).toBe(1)
    const status = JSON.parse(json.stdout)
    expect(status.redis.ok).toBe(false)
    expect(status.streams).toBeNull()
    expect(status.outbox.relays).toHaveLength(1)

    const tail = await cli(t, ["tail", orders], { RELAY_REDIS_URL: `redis://127.0.0.1:${closed}` })
    expect(tail.code).toBe(1)
    expect(tail.stderr).toMatch(/^Redis connect failed: .*ECONNREFUSED/)
    expect(tail.ms).toBeLessThan(10_000)
  })
})
