/**
 * The relay and a consumer on a Redis Cluster that speaks only TLS (clients, cluster bus and
 * replication; certificates made with openssl): `rediss://` seeds with `RELAY_REDIS_CLUSTER=true` and
 * the CA file, every event once and in order, and a consumer with `cluster: true` and the CA reads them.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import type { Cluster } from "ioredis"
import { randomUUID } from "node:crypto"
import { startConsumer } from "../src/index.js"
import { redisCli, type RedisClusterHandle, startRedisCluster } from "./support/redisCluster.ts"
import { drained, insertEvents, relayLayer, testEnv } from "./support/relayHarness.js"
import { makeTestCertificates, type TestCertificates } from "./support/tls.ts"
import { eventually } from "./support/wait.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

let certs: TestCertificates
let cluster: RedisClusterHandle
let client: Cluster

beforeAll(async () => {
  certs = makeTestCertificates()
  cluster = await startRedisCluster({
    masters: 3,
    tls: {
      cert: certs.serverCert,
      key: certs.serverKey,
      ca: certs.caCert,
      client: { cert: certs.clientCert, key: certs.clientKey }
    }
  })
  client = cluster.client()
}, 120_000)

afterAll(async () => {
  client?.disconnect()
  await cluster?.dispose()
  certs?.dispose()
})

describe.skipIf(redisCli() === undefined)("redis cluster over TLS", () => {
  it.live(
    "relays to rediss:// seeds with the CA file; a consumer with cluster and tls reads every event in order",
    () =>
      Effect.gen(function*() {
        assert.match(cluster.url, /^rediss:\/\//)
        const t = yield* testEnv("cluster-tls", {
          RELAY_REDIS_URL: cluster.url,
          RELAY_REDIS_CLUSTER: "true",
          RELAY_REDIS_TLS_CA_FILE: certs.caCert,
          RELAY_BATCH_SIZE: "50"
        })
        yield* Layer.build(relayLayer(t.env))
        const topics = 6
        const ids = Array.from({ length: 300 }, () => randomUUID())
        yield* promise(() =>
          insertEvents(t.sql, ids.map((event_id, i) => ({ topic: `t${i % topics}`, aggregate_id: "a", event_id })))
        )
        assert.strictEqual(yield* promise(() => drained(t.sql, 30_000)), 0)
        for (let topic = 0; topic < topics; topic++) {
          const entries = yield* promise(() => client.xrange(`${t.prefix}t${topic}`, "-", "+"))
          const expected = ids.filter((_, i) => i % topics === topic)
          assert.deepStrictEqual(entries.map(([, f]) => f[f.indexOf("event_id") + 1]), expected)
        }
        const handled: Array<string> = []
        const consumer = yield* promise(() =>
          startConsumer({
            redisUrl: cluster.url,
            cluster: true,
            tls: { ca: certs.caCert },
            stream: `${t.prefix}t0`,
            group: "g",
            logLevel: "error",
            handler: (event) => {
              handled.push(event.eventId)
            }
          })
        )
        yield* Effect.addFinalizer(() => promise(() => consumer.stop()))
        yield* promise(() => eventually(async () => handled.length, (n) => n === 50, 20_000))
        assert.deepStrictEqual(handled, ids.filter((_, i) => i % topics === 0))
      }).pipe(Effect.scoped),
    90_000
  )
})
