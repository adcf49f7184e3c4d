/**
 * Production posture, end to end: Redis that speaks only TLS and wants client certificates, Postgres that
 * accepts only TLS, certificates made by the test with openssl. The daemon relays under the documented
 * least-privileged Postgres role (sql/roles.example.sql) and Redis user (deploy/redis/users.acl) with
 * verify-full on both; a consumer reads over TLS under its own ACL user; the admin API's reads work. A
 * wrong CA stops the daemon at start with one line naming the server.
 */
import { Redis } from "ioredis"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import postgres from "postgres"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { type ConsumedEvent, startConsumer } from "../src/index.js"
import { databaseUrl, type PgServerHandle, startPostgresServer } from "./support/pgServer.js"
import { type RedisServerHandle, startRedisServer } from "./support/redisServer.js"
import { killAllRelayProcesses, projectRoot, startRelayProcess } from "./support/relayProcess.js"
import { makeTestCertificates, type TestCertificates } from "./support/tls.js"
import { eventually } from "./support/wait.js"

let certs: TestCertificates
let pg: PgServerHandle
let redis: RedisServerHandle
/** The owner's connection (the `postgres` superuser, which ran the migrations). */
let owner: postgres.Sql
/** The default Redis user, over TLS with the client certificate. */
let admin: Redis

const database = "outbox_tls"
const port = () => new URL(redis.url).port

/** `user`@127.0.0.1 on the test database, verify-full. */
const pgUrl = (user: string) => `postgres://${user}@127.0.0.1:${pg.port}/${database}?sslmode=verify-full`

/** A Redis URL for one of the users in deploy/redis/users.acl, with its password there. */
const redisUrl = (user: string, password: string) => `rediss://${user}:${password}@127.0.0.1:${port()}`

/** Each `user` line of deploy/redis/users.acl as it is, applied with ACL SETUSER. */
const applyAclFile = async () => {
  const lines = readFileSync(join(projectRoot, "deploy/redis/users.acl"), "utf8").split("\n")
  for (const line of lines.filter((l) => l.startsWith("user "))) {
    // Words, except that a selector "( ... )" is one argument.
    const [, name, ...rules] = line.match(/\([^)]*\)|\S+/g)!
    expect(await admin.call("ACL", "SETUSER", name!, ...rules)).toBe("OK")
  }
}

const relayEnv = (overrides: Record<string, string> = {}) => ({
  RELAY_DATABASE_URL: pgUrl("outbox_relay"),
  RELAY_DATABASE_TLS_CA_FILE: certs.caCert,
  RELAY_REDIS_URL: redisUrl("outbox-relay", "change-me-relay"),
  RELAY_REDIS_TLS_CA_FILE: certs.caCert,
  RELAY_REDIS_TLS_CERT_FILE: certs.clientCert,
  RELAY_REDIS_TLS_KEY_FILE: certs.clientKey,
  RELAY_MIGRATE: "false",
  RELAY_HTTP_PORT: "0",
  RELAY_HEAP_TUNING: "false",
  RELAY_LOG_LEVEL: "info",
  RELAY_POLL_INTERVAL: "200",
  ...overrides
})

beforeAll(async () => {
  certs = makeTestCertificates()
  const serverTls = { cert: certs.serverCert, key: certs.serverKey }
  ;[pg, redis] = await Promise.all([
    startPostgresServer({ tls: serverTls }),
    startRedisServer({
      tls: {
        ...serverTls,
        ca: certs.caCert,
        authClients: "yes",
        client: { cert: certs.clientCert, key: certs.clientKey }
      }
    })
  ])
  const superuser = postgres(pg.url, { max: 1, onnotice: () => {} })
  await superuser.unsafe(`CREATE DATABASE ${database}`)
  await superuser.end()

  // Migrations by the owner, through the daemon's own `migrate` over verify-full with the CA file.
  const migrate = startRelayProcess(relayEnv({ RELAY_DATABASE_URL: pgUrl("postgres") }), ["migrate"])
  expect((await migrate.waitForExit(60_000)).code).toBe(0)
  owner = postgres(databaseUrl(pg.url, database), { max: 2, onnotice: () => {} })
  await owner.unsafe(readFileSync(join(projectRoot, "sql/roles.example.sql"), "utf8")).simple()

  admin = new Redis(redis.url, {
    tls: { ca: readFileSync(certs.caCert), cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) }
  })
  await applyAclFile()
}, 120_000)

afterEach(() => killAllRelayProcesses())

afterAll(async () => {
  admin?.disconnect()
  await owner?.end({ timeout: 1 })
  await Promise.all([pg?.dispose(), redis?.dispose()])
  certs?.dispose()
})

const listening = async (relay: ReturnType<typeof startRelayProcess>) => {
  const line = await relay.waitForLine(
    (_, parsed) => (parsed as { message?: string } | undefined)?.message === "admin http server listening",
    30_000
  )
  return `http://127.0.0.1:${(line.parsed as { annotations: { port: number } }).annotations.port}`
}

describe("TLS and least privilege", () => {
  it(
    "relays over verify-full TLS as the documented role and ACL user; a consumer reads over TLS as its own",
    async () => {
      const relay = startRelayProcess(relayEnv())
      const base = await listening(relay)

      const total = 200
      await owner`INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
                SELECT 'orders', 'OrderPlaced', 'order-' || (g % 7), jsonb_build_object('seq', g)
                FROM generate_series(1, ${total}) AS g`

      const received: Array<ConsumedEvent> = []
      const consumer = await startConsumer({
        redisUrl: redisUrl("outbox-consumer", "change-me-consumer"),
        tls: { ca: certs.caCert, cert: certs.clientCert, key: certs.clientKey },
        stream: "outbox:orders",
        group: "billing",
        orderByAggregate: true,
        maxDeliveries: 1,
        retries: 0,
        blockMs: 200,
        handler: (event) => {
          // One poison event: dead-lettered by the consumer (XADD to its dead letters, which its ACL allows).
          if ((event.payload as { seq: number }).seq === 13) throw new Error("poison")
          received.push(event)
        }
      })
      try {
        const done = await eventually(() => received.length, (n) => n === total - 1, 30_000)
        expect(done).toBe(total - 1)
        // Order per aggregate held.
        const byAggregate = new Map<string, Array<number>>()
        for (const event of received) {
          byAggregate.set(event.aggregateId, [
            ...(byAggregate.get(event.aggregateId) ?? []),
            (event.payload as { seq: number }).seq
          ])
        }
        for (const seqs of byAggregate.values()) expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
        expect(await eventually(() => admin.xlen("{outbox:orders}:dlq"), (n) => n === 1)).toBe(1)
      } finally {
        await consumer.stop()
      }

      // Every session of the relay's role is TLS.
      const sessions = await owner<Array<{ ssl: boolean }>>`
      SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = 'outbox_relay'`
      expect(sessions.length).toBeGreaterThanOrEqual(3)
      expect(sessions.every((s) => s.ssl)).toBe(true)

      // The admin API's reads work under the relay's ACL user and role.
      for (
        const path of [
          "/api/streams",
          "/api/streams/outbox%3Aorders",
          "/api/streams/outbox%3Aorders/entries?count=2",
          "/api/streams/outbox%3Aorders/pending?group=billing",
          "/api/streams/outbox%3Aorders/dlq",
          "/api/outbox",
          "/api/outbox/dead"
        ]
      ) {
        const response = await fetch(`${base}${path}`)
        expect(response.status, `${path}: ${await response.clone().text()}`).toBe(200)
      }
      expect((await fetch(`${base}/readyz`)).status).toBe(200)

      relay.kill("SIGTERM")
      expect((await relay.waitForExit(15_000)).code).toBe(0)
    },
    90_000
  )

  it("the ACL and the role allow nothing beyond what is listed", async () => {
    const tls = {
      ca: readFileSync(certs.caCert),
      cert: readFileSync(certs.clientCert),
      key: readFileSync(certs.clientKey)
    }
    const asConsumer = new Redis(redisUrl("outbox-consumer", "change-me-consumer"), { tls })
    const asRelay = new Redis(redisUrl("outbox-relay", "change-me-relay"), { tls })
    const relayRole = postgres(pgUrl("outbox_relay"), { max: 1, ssl: { ca: readFileSync(certs.caCert) } })
    try {
      await expect(asConsumer.xadd("outbox:orders", "*", "forged", "1")).rejects.toThrow(/NOPERM/)
      await expect(asConsumer.call("XREADGROUP", "GROUP", "g", "c", "STREAMS", "other:orders", ">")).rejects
        .toThrow(/NOPERM/)
      await expect(asRelay.set("outbox:x", "1")).rejects.toThrow(/NOPERM/)
      await expect(asRelay.xadd("elsewhere", "*", "a", "1")).rejects.toThrow(/NOPERM/)
      await expect(asRelay.call("FLUSHALL")).rejects.toThrow(/NOPERM/)
      await expect(relayRole`INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
                             VALUES ('orders', 'Forged', 'x', '{}')`).rejects.toThrow(/permission denied/)
      await expect(relayRole`TRUNCATE outbox_events`).rejects.toThrow(/permission denied|must be owner/)
      await expect(relayRole`SELECT * FROM outbox_relay_migrations`).rejects.toThrow(/permission denied/)
    } finally {
      asConsumer.disconnect()
      asRelay.disconnect()
      await relayRole.end({ timeout: 1 })
    }
  })

  it.each([
    ["Redis", { RELAY_REDIS_TLS_CA_FILE: "wrong" }, /^Redis at 127\.0\.0\.1:\d+: TLS certificate did not verify \(/],
    [
      "Postgres",
      { RELAY_DATABASE_TLS_CA_FILE: "wrong" },
      /^Postgres at 127\.0\.0\.1:\d+: TLS certificate did not verify \(/
    ]
  ])("a wrong CA for %s stops the daemon at start: exit 1, one line naming the server", async (_, env, expected) => {
    const overrides = Object.fromEntries(Object.keys(env).map((name) => [name, certs.wrongCaCert]))
    const relay = startRelayProcess(relayEnv(overrides))
    const exit = await relay.waitForExit(30_000)
    expect(exit.code).toBe(1)
    const stderr = relay.stderr().filter((line) => line.trim() !== "")
    expect(stderr).toHaveLength(1)
    expect(stderr[0]).toMatch(expected)
    expect(relay.stdout().some((line) => line.includes("admin http server listening"))).toBe(false)
  })
})
