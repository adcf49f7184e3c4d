/**
 * The relay and a consumer on a real Redis Cluster of three masters with a replica each (spawned here,
 * joined by `redis-cli --cluster create`): events over many topics land spread across the masters, each
 * once and in order per aggregate; moving slots between masters (`redis-cli --cluster reshard`) and a
 * manual failover (`CLUSTER FAILOVER` on a replica) while events flow lose and duplicate nothing; a
 * consumer dead-letters and replays on the cluster (its stream and dead letters share a slot). The relay
 * and the consumer run as the users of deploy/redis/users.acl.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { type Cluster, Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import { readFileSync } from "node:fs"
import { replayDeadLettersAsync, startConsumer } from "../src/index.js"
import { listStreams } from "../src/ops/StreamInspector.js"
import { attemptsKey, deadLetterKey, fenceKey, legacyInflightKey, orphansKey } from "../src/shared/RedisKeys.js"
import { redisCli, type RedisClusterHandle, startRedisCluster } from "./support/redisCluster.ts"
import { drained, insertEvents, pendingCount, relayLayer, testEnv } from "./support/relayHarness.js"
import { eventually, sleep } from "./support/wait.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

let cluster: RedisClusterHandle
let client: Cluster

/**
 * The users of deploy/redis/users.acl on every node, their key patterns moved from the default prefix
 * `outbox:` to the tests' `t:`: the relay and the consumer run as those users.
 */
const applyAclFile = async () => {
  const lines = readFileSync(new URL("../deploy/redis/users.acl", import.meta.url), "utf8").split("\n")
  for (const server of cluster.servers) {
    const node = new Redis(server.port, "127.0.0.1")
    for (const line of lines.filter((l) => l.startsWith("user "))) {
      // Words, except that a selector "( ... )" is one argument.
      const [, name, ...rules] = line.replaceAll("outbox:", "t:").match(/\([^)]*\)|\S+/g)!
      await node.call("ACL", "SETUSER", name!, ...rules)
    }
    node.disconnect()
  }
}

/** The cluster's seed URL as one of the ACL file's users. */
const asUser = (user: "outbox-relay" | "outbox-consumer") =>
  cluster.url.replace("redis://", `redis://${user}:change-me-${user.slice("outbox-".length)}@`)

beforeAll(async () => {
  cluster = await startRedisCluster({ masters: 3, replicas: 1 })
  client = cluster.client()
  await applyAclFile()
}, 120_000)

afterAll(async () => {
  client?.disconnect()
  await cluster?.dispose()
})

interface Produced {
  readonly topic: string
  readonly aggregate: string
  readonly seq: number
}

/** Every entry of a stream, oldest first: [entry id, event_id, aggregate_id]. */
const readAll = async (stream: string): Promise<Array<[string, string, string]>> => {
  const out: Array<[string, string, string]> = []
  let start = "-"
  for (;;) {
    const page = await client.xrange(stream, start, "+", "COUNT", 5_000)
    for (const [id, flat] of page) {
      out.push([id, flat[flat.indexOf("event_id") + 1]!, flat[flat.indexOf("aggregate_id") + 1]!])
    }
    if (page.length < 5_000) return out
    start = `(${page[page.length - 1]![0]}`
  }
}

/** What the streams hold against what was produced: lost, duplicated, out of order per aggregate. */
const account = async (prefix: string, produced: ReadonlyMap<string, Produced>) => {
  const topics = new Set([...produced.values()].map((p) => p.topic))
  const seen = new Map<string, number>()
  let outOfOrder = 0
  for (const topic of topics) {
    const last = new Map<string, number>()
    for (const [, eventId, aggregate] of await readAll(`${prefix}${topic}`)) {
      seen.set(eventId, (seen.get(eventId) ?? 0) + 1)
      const seq = produced.get(eventId)?.seq ?? -1
      if (seq <= (last.get(aggregate) ?? -1)) outOfOrder++
      last.set(aggregate, seq)
    }
  }
  const lost = [...produced.keys()].filter((id) => !seen.has(id)).length
  const duplicates = [...seen.values()].reduce((n, c) => n + c - 1, 0)
  const unknown = [...seen.keys()].filter((id) => !produced.has(id)).length
  return { lost, duplicates, outOfOrder, unknown }
}

/** A producer of events over `topics` topics and 5 aggregates each, one transaction per call. */
const producer = (topics: number) => {
  const produced = new Map<string, Produced>()
  let seq = 0
  const produce = (sql: Parameters<typeof insertEvents>[0], n: number) => {
    const events = Array.from({ length: n }, () => {
      const i = seq++
      const event = { topic: `t${i % topics}`, aggregate: `agg-${Math.floor(i / topics) % 5}`, seq: i }
      const event_id = randomUUID()
      produced.set(event_id, event)
      return { topic: event.topic, aggregate_id: event.aggregate, event_id }
    })
    return insertEvents(sql, events)
  }
  return { produced, produce }
}

/** Produces `batch` events every `everyMs` until `stop` resolves. */
const produceWhile = async (produce: (n: number) => Promise<unknown>, stop: Promise<unknown>, batch = 12) => {
  let done = false
  void stop.finally(() => done = true)
  while (!done) {
    await produce(batch)
    await sleep(15)
  }
}

const masterOf = async (key: string) => {
  const slot = await client.cluster("KEYSLOT", key)
  return (await cluster.nodes()).find((n) => n.master && n.slots.some(([from, to]) => slot >= from && slot <= to))!
}

const clusterEnv = (extra: Record<string, string> = {}) => ({
  RELAY_REDIS_URL: asUser("outbox-relay"),
  RELAY_REDIS_CLUSTER: "true",
  RELAY_REDIS_COMMAND_TIMEOUT: "2 seconds",
  RELAY_RETRY_MAX_DELAY: "200 millis",
  ...extra
})

const clean = { lost: 0, duplicates: 0, outOfOrder: 0, unknown: 0 }

/** A relay on the cluster and a producer over `topics` topics whose first 120 events were relayed. */
const relayingOnCluster = (label: string, topics: number, settings: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const t = yield* testEnv(label, clusterEnv({ RELAY_BATCH_SIZE: "50", ...settings }))
    yield* Layer.build(relayLayer(t.env))
    const { produce, produced } = producer(topics)
    yield* promise(() => produce(t.sql, 120))
    yield* promise(() => drained(t.sql, 30_000))
    return { t, produced, produce: (n: number) => produce(t.sql, n) }
  })

/** After the disturbance: 120 more events, then every event once and in order per aggregate. */
const everyEventOnceInOrder = (
  relaying: Effect.Success<ReturnType<typeof relayingOnCluster>>
) =>
  Effect.gen(function*() {
    yield* promise(() => relaying.produce(120))
    assert.strictEqual(yield* promise(() => drained(relaying.t.sql, 30_000)), 0)
    assert.deepStrictEqual(yield* promise(() => account(relaying.t.prefix, relaying.produced)), clean)
  })

describe.skipIf(redisCli() === undefined)("redis cluster", () => {
  it.live(
    "spreads topics across the masters, each event once and in order per aggregate, a stream's keys in its slot",
    () =>
      Effect.gen(function*() {
        const t = yield* testEnv("cluster", clusterEnv({ RELAY_BATCH_SIZE: "200" }))
        yield* Layer.build(relayLayer(t.env))
        const { produce, produced } = producer(24)
        for (let i = 0; i < 10; i++) yield* promise(() => produce(t.sql, 200))
        assert.strictEqual(yield* promise(() => drained(t.sql, 30_000)), 0)
        assert.deepStrictEqual(yield* promise(() => account(t.prefix, produced)), clean)
        const masters = new Set<string>()
        for (let i = 0; i < 24; i++) {
          const stream = `${t.prefix}t${i}`
          masters.add((yield* promise(() => masterOf(stream))).id)
          const slot = yield* promise(() => client.cluster("KEYSLOT", stream))
          for (
            const key of [
              attemptsKey(stream),
              orphansKey(stream),
              legacyInflightKey(stream),
              fenceKey(stream),
              deadLetterKey(stream)
            ]
          ) {
            assert.strictEqual(yield* promise(() => client.cluster("KEYSLOT", key)), slot, key)
          }
        }
        assert.strictEqual(masters.size, 3, "the streams are on every master")
        // The operations view finds the streams on every master.
        const list = yield* listStreams(client, t.prefix)
        assert.strictEqual(list.streams.filter((s) => !s.deadLetter).length, 24)
      }).pipe(Effect.scoped),
    90_000
  )

  it.live(
    "loses nothing the relay committed when a replica takes over its master",
    () =>
      Effect.gen(function*() {
        // Each batch also waits for a replica of every master it wrote to (a WAIT per stream's call).
        const relaying = yield* relayingOnCluster("cluster-failover", 12, { RELAY_REDIS_MIN_REPLICAS: "1" })
        const stream = `${relaying.t.prefix}t0`
        const master = yield* promise(() => masterOf(stream))
        const promoting = cluster.failover(master.id)
        yield* promise(() => produceWhile(relaying.produce, promoting.then(() => sleep(1_000))))
        const promoted = yield* promise(() => promoting)
        assert.notStrictEqual(promoted.id, master.id)
        // The first node learns of the promotion by gossip.
        const owner = yield* promise(() => eventually(() => masterOf(stream), (m) => m.id === promoted.id, 10_000))
        assert.strictEqual(owner.id, promoted.id)
        yield* everyEventOnceInOrder(relaying)
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "loses and duplicates nothing while a master's slots move to another one",
    () =>
      Effect.gen(function*() {
        const relaying = yield* relayingOnCluster("cluster-reshard", 12)
        // Move every slot of the master holding most of the streams, while events keep coming.
        const owners = new Map<string, number>()
        for (let i = 0; i < 12; i++) {
          const id = (yield* promise(() => masterOf(`${relaying.t.prefix}t${i}`))).id
          owners.set(id, (owners.get(id) ?? 0) + 1)
        }
        const [from] = [...owners].sort((a, b) => b[1] - a[1])[0]!
        const port = (yield* promise(() => cluster.nodes())).find((n) => n.id === from)!.port
        // The source's own view: the first node's may lag behind the failover before.
        const nodes = yield* promise(() => cluster.nodes(port))
        const source = nodes.find((n) => n.id === from)!
        const target = nodes.find((n) => n.master && n.id !== from)!
        const slots = source.slots.reduce((n, [a, b]) => n + b - a + 1, 0)
        const moving = cluster.reshard(source.id, target.id, slots)
        yield* promise(() => produceWhile(relaying.produce, moving))
        yield* promise(() => moving)
        const moved = (yield* promise(() => cluster.nodes())).find((n) => n.id === from)!
        assert.strictEqual(moved.slots.length, 0, "the source master serves no slot any more")
        assert.isAbove(relaying.produced.size, 180)
        yield* everyEventOnceInOrder(relaying)
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "a consumer on the cluster acknowledges, dead-letters and replays in the stream's slot",
    () =>
      Effect.gen(function*() {
        const t = yield* testEnv("cluster-consumer", clusterEnv())
        yield* Layer.build(relayLayer(t.env))
        const { produce, produced } = producer(1)
        yield* promise(() => produce(t.sql, 30))
        yield* promise(() => drained(t.sql, 30_000))
        const stream = `${t.prefix}t0`
        const poison = [...produced.keys()][7]!
        const handled: Array<string> = []
        let healed = false
        const consumer = yield* promise(() =>
          startConsumer({
            redisUrl: asUser("outbox-consumer"),
            cluster: true,
            stream,
            group: "mailer",
            maxDeliveries: 1,
            retries: 0,
            handler: async (event) => {
              if (event.eventId === poison && !healed) throw new Error("poison")
              handled.push(event.eventId)
            }
          })
        )
        yield* Effect.addFinalizer(() => promise(() => consumer.stop()))
        yield* promise(() => eventually(() => client.xlen(deadLetterKey(stream)), (n) => n === 1, 20_000))
        yield* promise(() => eventually(async () => handled.length, (n) => n === 29, 20_000))
        const [[deadId]] = yield* promise(() => client.xrange(deadLetterKey(stream), "-", "+"))
        healed = true
        const result = yield* promise(() => replayDeadLettersAsync(client, stream, [deadId!]))
        assert.strictEqual(result.replayed.length, 1)
        yield* promise(() => eventually(async () => handled.includes(poison), (ok) => ok, 20_000))
        assert.strictEqual(yield* promise(() => client.xlen(deadLetterKey(stream))), 0)
        assert.strictEqual(new Set(handled).size, 30)
        assert.strictEqual(yield* promise(() => pendingCount(t.sql)), 0)
      }).pipe(Effect.scoped),
    90_000
  )
})
