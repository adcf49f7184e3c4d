/**
 * RELAY_REDIS_MIN_REPLICAS against a Redis and a local replica of its own (`--replicaof`): a batch
 * commits only once the replica has it; with the replica stopped nothing commits (rows stay pending,
 * retried), and once it is back every event is relayed once, in order, on the replica too.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Metric } from "effect"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import * as Metrics from "../src/relay/Metrics.js"
import { type RedisServerOptions, startRedisServer } from "./support/redisServer.js"
import { insertEvents, pendingCount, relayLayer, testEnv } from "./support/relayHarness.js"
import { eventually, sleep } from "./support/wait.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

const redisServer = (options: RedisServerOptions = {}) =>
  Effect.acquireRelease(promise(() => startRedisServer(options)), (server) => promise(() => server.dispose()))

const redisClient = (url: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const client = new Redis(url, { maxRetriesPerRequest: 1 })
      // The replica is stopped on purpose; its client reconnects quietly.
      client.on("error", () => {})
      return client
    }),
    (client) => Effect.sync(() => client.disconnect())
  )

/** Event ids in a stream, oldest first. */
const eventIds = async (redis: Redis, stream: string) =>
  (await redis.xrange(stream, "-", "+")).map(([, fields]) => fields[fields.indexOf("event_id") + 1]!)

/** Waits until the primary sees `count` replicas online. */
const replicasOnline = (primary: Redis, count: number) =>
  promise(() =>
    eventually(
      async () => /^connected_slaves:(\d+)/m.exec(await primary.info("replication"))?.[1],
      (n) => n === String(count),
      20_000,
      100
    )
  )

describe("waiting for replicas", () => {
  it.live(
    "commits a batch only once a replica has it, and resumes when the replica returns",
    () =>
      Effect.gen(function*() {
        const primaryServer = yield* redisServer()
        const replicaServer = yield* redisServer({ replicaOf: primaryServer.port })
        const primary = yield* redisClient(primaryServer.url)
        const replica = yield* redisClient(replicaServer.url)
        yield* replicasOnline(primary, 1)
        const t = yield* testEnv("replicas", {
          RELAY_REDIS_URL: primaryServer.url,
          RELAY_REDIS_MIN_REPLICAS: "1",
          RELAY_REDIS_COMMAND_TIMEOUT: "1 second",
          RELAY_RETRY_MAX_DELAY: "200 millis",
          RELAY_BATCH_SIZE: "20"
        })
        const stream = `${t.prefix}orders`
        yield* Layer.build(relayLayer(t.env))
        const produced: Array<string> = []
        const produce = (n: number) => {
          const events = Array.from({ length: n }, (_, i) => ({
            topic: "orders",
            event_id: randomUUID(),
            aggregate_id: `agg-${i % 3}`
          }))
          produced.push(...events.map((e) => e.event_id))
          return promise(() => insertEvents(t.sql, events))
        }

        // With the replica up, batches commit as usual.
        yield* produce(100)
        assert.strictEqual(yield* promise(() => eventually(() => pendingCount(t.sql), (n) => n === 0)), 0)
        assert.deepStrictEqual(yield* promise(() => eventIds(replica, stream)), produced)

        // Replica stopped: the primary takes the entries, but no batch commits.
        yield* promise(() => replicaServer.stop())
        const failuresBefore = (yield* Metric.value(Metrics.batchFailures)).count
        yield* produce(50)
        yield* promise(() => sleep(3000))
        assert.strictEqual(yield* promise(() => pendingCount(t.sql)), 50, "a batch committed without its replica")
        assert.isAbove((yield* Metric.value(Metrics.batchFailures)).count, failuresBefore)

        // Replica back: the retried batches commit, and re-publishing added nothing twice.
        yield* promise(() => replicaServer.start())
        yield* replicasOnline(primary, 1)
        assert.strictEqual(
          yield* promise(() => eventually(() => pendingCount(t.sql), (n) => n === 0, 20_000)),
          0
        )
        assert.deepStrictEqual(yield* promise(() => eventIds(primary, stream)), produced)
        const onReplica = yield* promise(() =>
          eventually(() => eventIds(replica, stream), (ids) => ids.length >= produced.length)
        )
        assert.deepStrictEqual(onReplica, produced)
      }).pipe(Effect.scoped, Effect.provideService(Metric.MetricRegistry, new Map())),
    90_000
  )
})
