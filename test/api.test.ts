/**
 * The admin API as an operator uses it: against a running relay (the daemon, on its admin port) and
 * real Postgres and Redis, every endpoint, what it refuses and why, the token rules, and what it
 * answers while a server is down.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import { createServer } from "node:http"
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest"
import { ApiRoutes } from "../src/ops/ApiServer.js"
import { Operations } from "../src/ops/Operations.js"
import { RelayConfig } from "../src/relay/RelayConfig.js"
import { freePort } from "./support/ports.js"
import { insertEvents, makeTestEnv, streamWithAtLeast, type TestEnv } from "./support/relayHarness.js"
import { killAllRelayProcesses, startRelayProcess } from "./support/relayProcess.js"
import { eventually } from "./support/wait.js"

const token = "test-token-0123456789abcdef"

interface Reply {
  readonly status: number
  readonly body: any
}

const request = async (base: string, path: string, init: RequestInit = {}): Promise<Reply> => {
  const response = await fetch(`${base}${path}`, init)
  const text = await response.text()
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, body }
}

const post = (base: string, path: string, body: unknown, bearer?: string) =>
  request(base, path, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(bearer === undefined ? {} : { authorization: `Bearer ${bearer}` })
    },
    body: JSON.stringify(body)
  })

/** The API alone (no relay), in this process, on a free port, with `env` as its settings. */
const serveApi = async (env: Record<string, string>) => {
  const scope = Effect.runSync(Scope.make())
  const layer = HttpRouter.serve(ApiRoutes.pipe(Layer.provide(Operations.layer)), {
    disableLogger: true,
    disableListenLog: true
  }).pipe(
    Layer.provideMerge(NodeHttpServer.layer(createServer, { host: "127.0.0.1", port: 0 })),
    Layer.provide(RelayConfig.layerFrom(env))
  )
  const context = await Effect.runPromise(Layer.buildWithScope(layer, scope))
  const address = Context.get(context, HttpServer.HttpServer).address as { port: number }
  return {
    base: `http://127.0.0.1:${address.port}`,
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

describe("admin API", () => {
  let t: TestEnv
  let base: string

  beforeAll(async () => {
    t = await makeTestEnv("api", {
      RELAY_ADMIN_TOKEN: token,
      RELAY_TOPIC_PATTERN: "^(orders|users)$",
      RELAY_LOG_LEVEL: "info"
    })
    const relay = startRelayProcess(t.env)
    const listening = await relay.waitForLine(
      (_, parsed) => (parsed as { message?: string } | undefined)?.message === "admin http server listening",
      20_000
    )
    base = `http://127.0.0.1:${(listening.parsed as { annotations: { port: number } }).annotations.port}`
  })

  afterAll(async () => {
    await killAllRelayProcesses()
    await t?.dispose()
  })

  it("lists streams, shows groups and consumers, decodes entries and pages through them", async () => {
    await insertEvents(t.sql, [
      ...Array.from({ length: 5 }, (_, i) => ({ topic: "orders", aggregate_id: `o-${i}`, payload: { n: i } })),
      { topic: "users", event_type: "UserJoined", aggregate_id: "u-1", payload: { name: "Ada" } }
    ])
    const orders = `${t.prefix}orders`
    const entries = await streamWithAtLeast(t.redis, orders, 5)
    await streamWithAtLeast(t.redis, `${t.prefix}users`, 1)
    // A group that read three entries (pending, not acked), and left two undelivered.
    await t.redis.xgroup("CREATE", orders, "billing", "0")
    await t.redis.xreadgroup("GROUP", "billing", "worker-1", "COUNT", 3, "STREAMS", orders, ">")

    const list = await request(base, "/api/streams")
    expect(list.status).toBe(200)
    expect(list.body.prefix).toBe(t.prefix)
    const summary = list.body.streams.find((s: { key: string }) => s.key === orders)
    expect(summary).toMatchObject({
      topic: "orders",
      deadLetter: false,
      length: 5,
      firstId: entries[0]!.id,
      lastId: entries[4]!.id,
      groupCount: 1,
      deadLetters: 0
    })
    expect(summary.memoryBytes).toBeGreaterThan(0)
    expect(summary.firstEntryAgeSeconds).toBeGreaterThanOrEqual(0)
    expect(list.body.streams.map((s: { topic: string }) => s.topic)).toContain("users")

    const details = await request(base, `/api/streams/${encodeURIComponent(orders)}`)
    expect(details.status).toBe(200)
    expect(details.body.groups).toEqual([
      expect.objectContaining({
        name: "billing",
        pending: 3,
        lag: 2,
        lastDeliveredId: entries[2]!.id,
        entriesRead: 3,
        consumers: [expect.objectContaining({ name: "worker-1", pending: 3 })]
      })
    ])

    const oldest = await request(base, `/api/streams/${orders}/entries?count=2`)
    expect(oldest.status).toBe(200)
    expect(oldest.body.entries.map((e: { payload: unknown }) => e.payload)).toEqual([{ n: 0 }, { n: 1 }])
    expect(oldest.body.entries[0]).toMatchObject({
      id: entries[0]!.id,
      topic: "orders",
      eventType: "Happened",
      aggregateId: "o-0",
      headers: {},
      decodeError: null
    })
    const more = await request(base, `/api/streams/${orders}/entries?count=2&start=${oldest.body.next}`)
    expect(more.body.entries.map((e: { payload: unknown }) => e.payload)).toEqual([{ n: 2 }, { n: 3 }])
    const newest = await request(base, `/api/streams/${orders}/entries?reverse=true&count=1`)
    expect(newest.body.entries.map((e: { payload: unknown }) => e.payload)).toEqual([{ n: 4 }])
    const all = await request(base, `/api/streams/${orders}/entries`)
    expect(all.body.entries).toHaveLength(5)
    expect(all.body.next).toBeNull()

    const pending = await request(base, `/api/streams/${orders}/pending?group=billing`)
    expect(pending.status).toBe(200)
    expect(pending.body.entries.map((e: { id: string }) => e.id)).toEqual(entries.slice(0, 3).map((e) => e.id))
    expect(pending.body.entries[0]).toMatchObject({ consumer: "worker-1", deliveries: 1 })
    const ofNobody = await request(base, `/api/streams/${orders}/pending?group=billing&consumer=worker-2`)
    expect(ofNobody.body.entries).toEqual([])
    const notIdleYet = await request(base, `/api/streams/${orders}/pending?group=billing&minIdleMs=600000`)
    expect(notIdleYet.body.entries).toEqual([])
  })

  it("answers bad input with 400 naming the field, and names outside the prefix with 404", async () => {
    await insertEvents(t.sql, [{ topic: "orders", aggregate_id: "bad-input" }])
    const orders = `${t.prefix}orders`
    await streamWithAtLeast(t.redis, orders, 1)
    for (
      const [path, field] of [
        [`/api/streams/${orders}/entries?count=0`, "count"],
        [`/api/streams/${orders}/entries?count=1001`, "count"],
        [`/api/streams/${orders}/entries?count=ten`, "count"],
        [`/api/streams/${orders}/entries?start=yesterday`, "start"],
        [`/api/streams/${orders}/entries?reverse=maybe`, "reverse"],
        [`/api/streams/${orders}/pending`, "group"],
        [`/api/streams/${orders}/pending?group=nobody`, "group"],
        [`/api/streams/${orders}/pending?group=g&minIdleMs=-1`, "minIdleMs"],
        [`/api/outbox/dead?count=5000`, "count"]
      ] as const
    ) {
      const reply = await request(base, path)
      expect(reply.status, path).toBe(400)
      expect(reply.body.field, path).toBe(field)
      expect(reply.body.error, path).toEqual(expect.any(String))
    }

    // Keys the API must not read: another prefix, a key under the prefix that is not a stream, the
    // relay's own bookkeeping, and names that try to smuggle in a second command.
    await t.redis.xadd("elsewhere:orders", "*", "secret", "1")
    await t.redis.set(`${t.prefix}plain`, "x")
    for (
      const name of [
        "elsewhere:orders",
        `${t.prefix}plain`,
        `{${orders}}:inflight`,
        `${t.prefix}nope`,
        `${orders}\r\nFLUSHALL`,
        `${t.prefix}*`
      ]
    ) {
      const reply = await request(base, `/api/streams/${encodeURIComponent(name)}`)
      expect(reply.status, name).toBe(404)
      expect(reply.body.error).toContain("no stream")
      const entries = await request(base, `/api/streams/${encodeURIComponent(name)}/entries`)
      expect(entries.status, name).toBe(404)
    }
    await t.redis.del("elsewhere:orders")
    expect(await t.redis.dbsize()).toBeGreaterThan(0)
  })

  it("reports and replays dead letters; replay and purge need the token", async () => {
    await insertEvents(t.sql, [{ topic: "users", aggregate_id: "dlq-probe" }])
    const users = `${t.prefix}users`
    await streamWithAtLeast(t.redis, users, 1)
    const dlq = `{${users}}:dlq`
    const envelope = (n: number) => [
      "event_id",
      `00000000-0000-4000-8000-00000000000${n}`,
      "event_type",
      "UserJoined",
      "topic",
      "users",
      "aggregate_id",
      `u-${n}`,
      "payload",
      JSON.stringify({ n }),
      "headers",
      "{}"
    ]
    const consumerDead = async (n: number, reason: string) =>
      (await t.redis.xadd(
        dlq,
        "*",
        ...envelope(n),
        "reason",
        reason,
        "delivery_count",
        "5",
        "group",
        "mailer",
        "consumer",
        "c-1",
        "entry_id",
        "1-1"
      ))!
    const first = await consumerDead(1, "handler failed 5 times")
    const second = await consumerDead(2, "handler failed 5 times")
    const third = await consumerDead(3, "payload does not match the schema")
    const relayDead = (await t.redis.xadd(dlq, "*", ...envelope(4), "outbox_id", "99", "reason", "too large"))!

    const summary = await request(base, `/api/streams/${users}/dlq`)
    expect(summary.status).toBe(200)
    expect(summary.body).toMatchObject({
      stream: users,
      deadLetterStream: dlq,
      count: 4,
      byReason: { "handler failed 5 times": 2, "payload does not match the schema": 1, "too large": 1 },
      bySource: { consumer: 3, relay: 1 },
      oldest: { id: first },
      newest: { id: relayDead },
      complete: true
    })
    const listed = await request(base, `/api/streams/${users}/dlq/messages?count=3`)
    expect(listed.body.messages.map((m: { id: string }) => m.id)).toEqual([first, second, third])
    expect(listed.body.messages[0]).toMatchObject({
      source: "consumer",
      reason: "handler failed 5 times",
      payload: { n: 1 },
      metadata: { group: "mailer", delivery_count: "5" }
    })
    const rest = await request(base, `/api/streams/${users}/dlq/messages?start=${listed.body.next}`)
    expect(rest.body.messages).toEqual([expect.objectContaining({ id: relayDead, source: "relay" })])

    // The token rules: none, wrong, right.
    const none = await post(base, `/api/streams/${users}/dlq/replay`, { ids: [first] })
    expect(none.status).toBe(401)
    const wrong = await post(base, `/api/streams/${users}/dlq/replay`, { ids: [first] }, `${token}x`)
    expect(wrong.status).toBe(401)
    expect(await t.redis.xlen(dlq)).toBe(4)

    const before = await t.redis.xlen(users)
    const replayed = await post(base, `/api/streams/${users}/dlq/replay`, { ids: [first, relayDead, "1-0"] }, token)
    expect(replayed.status).toBe(200)
    expect(replayed.body.replayed).toEqual([{ id: first, newId: expect.any(String) }])
    expect(replayed.body.skipped.map((s: { id: string }) => s.id).sort()).toEqual(["1-0", relayDead].sort())
    expect(await t.redis.xlen(users)).toBe(before + 1)
    const [back] = await t.redis.xrevrange(users, "+", "-", "COUNT", 1)
    expect(back![1]).toContain("00000000-0000-4000-8000-000000000001")

    const badBody = await post(base, `/api/streams/${users}/dlq/purge`, { ids: [] }, token)
    expect(badBody.status).toBe(400)
    const purged = await post(base, `/api/streams/${users}/dlq/purge`, { ids: [second, "2-2"] }, token)
    expect(purged.body).toEqual({ purged: 1, notFound: ["2-2"] })
    const purgedAll = await post(base, `/api/streams/${users}/dlq/purge`, { all: true }, token)
    expect(purgedAll.body).toEqual({ purged: 2, notFound: [] })
    expect(await t.redis.exists(dlq)).toBe(0)
  })

  it("shows the outbox, its dead rows and live relays, and replays dead rows with the token", async () => {
    // A topic outside RELAY_TOPIC_PATTERN is dead-lettered by the relay, with the reason.
    await insertEvents(t.sql, [
      { topic: "payments", aggregate_id: "p-1", payload: { amount: 3 } },
      { topic: "payments", aggregate_id: "p-2" }
    ])
    const overview = await eventually(
      () => request(base, "/api/outbox"),
      (reply) => reply.body.dead >= 2,
      15_000
    )
    expect(overview.status).toBe(200)
    expect(overview.body.backlog).toBe(0)
    expect(overview.body.deadByTopic).toEqual([
      expect.objectContaining({ topic: "payments", count: 2, reason: expect.stringContaining("topic") })
    ])
    expect(overview.body.relays).toHaveLength(1)
    const [relay] = overview.body.relays
    expect(relay.slots).toHaveLength(64)
    expect(relay.lanes.length).toBeGreaterThanOrEqual(1)
    expect(relay.lanes[0]).toMatchObject({ connected: true, heartbeatAgeSeconds: expect.any(Number) })
    expect(JSON.stringify(overview.body)).not.toContain("postgres://")

    const dead = await request(base, "/api/outbox/dead?topic=payments&count=10")
    expect(dead.status).toBe(200)
    expect(dead.body.rows.map((r: { aggregateId: string }) => r.aggregateId).sort()).toEqual(["p-1", "p-2"])
    const p1 = dead.body.rows.find((r: { aggregateId: string }) => r.aggregateId === "p-1")
    expect(p1).toMatchObject({ topic: "payments", payload: { amount: 3 }, lastError: expect.any(String) })
    expect((await request(base, "/api/outbox/dead?topic=orders")).body.rows).toEqual([])

    expect((await post(base, "/api/outbox/dead/replay", { all: true })).status).toBe(401)
    expect((await post(base, "/api/outbox/dead/replay", { ids: ["not-a-uuid"] }, token)).status).toBe(400)
    const unknown = "00000000-0000-4000-8000-0000000000ff"
    const replay = await post(base, "/api/outbox/dead/replay", { ids: [p1.eventId, unknown] }, token)
    expect(replay.status).toBe(200)
    expect(replay.body).toEqual({ replayed: [p1.eventId], notFound: [unknown] })
    // Replayed, the row is pending again: the relay claims it and (the topic still refused) kills it again.
    const [row] = await t.sql`SELECT attempts FROM outbox_events WHERE event_id = ${p1.eventId}`
    expect(row).toBeDefined()
  })

  it("serves the OpenAPI document and the docs page from the relay", async () => {
    const openapi = await request(base, "/api/openapi.json")
    expect(openapi.status).toBe(200)
    expect(openapi.body.openapi).toMatch(/^3\./)
    expect(Object.keys(openapi.body.paths)).toEqual(expect.arrayContaining([
      "/api/streams",
      "/api/streams/{stream}",
      "/api/streams/{stream}/entries",
      "/api/streams/{stream}/pending",
      "/api/streams/{stream}/dlq",
      "/api/streams/{stream}/dlq/messages",
      "/api/streams/{stream}/dlq/replay",
      "/api/streams/{stream}/dlq/purge",
      "/api/outbox",
      "/api/outbox/dead",
      "/api/outbox/dead/replay"
    ]))
    const docs = await fetch(`${base}/api/docs`)
    expect(docs.status).toBe(200)
    const html = await docs.text()
    expect(html).toContain("<html")
    expect(html).not.toMatch(/<script[^>]+src="https?:/)
  })
})

describe("admin API without a token, or with a server down", () => {
  it("answers every mutation with 403 and how to enable it when no token is set", async () => {
    const api = await serveApi({ RELAY_DATABASE_URL: inject("adminDatabaseUrl"), RELAY_REDIS_URL: inject("redisUrl") })
    try {
      for (
        const [path, body] of [
          ["/api/streams/outbox:orders/dlq/replay", { all: true }],
          ["/api/streams/outbox:orders/dlq/purge", { all: true }],
          ["/api/outbox/dead/replay", { all: true }]
        ] as const
      ) {
        const reply = await post(api.base, path, body, "anything-at-all-here")
        expect(reply.status, path).toBe(403)
        expect(reply.body.error).toContain("RELAY_ADMIN_TOKEN")
      }
    } finally {
      await api.close()
    }
  })

  it("answers 503 with the reason when Redis or Postgres is down, and recovers nothing it should not", async () => {
    const closed = await freePort()
    const api = await serveApi({
      RELAY_DATABASE_URL: `postgres://postgres@127.0.0.1:${closed}/nothing`,
      RELAY_REDIS_URL: `redis://127.0.0.1:${closed}`,
      RELAY_DATABASE_TIMEOUT: "2 seconds",
      RELAY_REDIS_COMMAND_TIMEOUT: "2 seconds"
    })
    try {
      const streams = await request(api.base, "/api/streams")
      expect(streams.status).toBe(503)
      expect(streams.body.error).toMatch(/Redis/)
      const outbox = await request(api.base, "/api/outbox")
      expect(outbox.status).toBe(503)
      expect(outbox.body.error).toMatch(/ECONNREFUSED|connect/i)
      expect(JSON.stringify(outbox.body)).not.toContain(`127.0.0.1:${closed}/nothing`)
    } finally {
      await api.close()
    }
  })
})
