/**
 * The Effect consumer against real Redis: what a user relies on. Every message is handled and
 * acknowledged; a failing handler is retried; a message that keeps failing ends in `{<stream>}:dlq`
 * with its reason; two consumers of one group never handle the same message twice; order per
 * aggregate holds when asked; stopping lets running handlers finish.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Schedule, Schema } from "effect"
import { Consumer } from "../../src/consumer/Consumer.js"
import type { ConsumedEvent } from "../../src/consumer/Envelope.js"
import { eventually, sleep } from "../support/wait.js"
import { addEvents, pendingCount, start, testRedis } from "./helpers.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

describe("Consumer", () => {
  it.live("handles every entry once and acknowledges it", () =>
    Effect.gen(function*() {
      const { prefix, redis, url } = yield* testRedis("ack")
      const stream = `${prefix}orders`
      const seen: Array<ConsumedEvent> = []
      yield* promise(() => addEvents(redis, stream, Array.from({ length: 50 }, (_, i) => ({ payload: { i } }))))
      yield* start(Consumer.layer({
        redisUrl: url,
        stream,
        group: "g",
        concurrency: 4,
        handler: (event) => Effect.sync(() => void seen.push(event))
      }))
      yield* promise(() => eventually(() => seen.length, (n) => n >= 50))
      const pending = yield* promise(() => eventually(() => pendingCount(redis, stream, "g"), (n) => n === 0))
      assert.strictEqual(pending, 0)
      assert.deepStrictEqual(
        seen.map((e) => (e.payload as { i: number }).i).sort((a, b) => a - b),
        Array.from({ length: 50 }, (_, i) => i)
      )
      const first = seen[0]!
      assert.strictEqual(first.eventType, "Happened")
      assert.strictEqual(first.topic, "orders")
      assert.strictEqual(first.deliveryCount, 1)
      assert.match(first.eventId, /^[0-9a-f-]{36}$/)
    }).pipe(Effect.scoped))

  it.live("retries a failing handler within the delivery, then acknowledges", () =>
    Effect.gen(function*() {
      const { prefix, redis, url } = yield* testRedis("retry")
      const stream = `${prefix}orders`
      let attempts = 0
      yield* promise(() => addEvents(redis, stream, [{ payload: { n: 1 } }]))
      yield* start(Consumer.layer({
        redisUrl: url,
        stream,
        group: "g",
        retry: Schedule.spaced("10 millis").pipe(Schedule.upTo({ times: 5 })),
        handler: () => Effect.suspend(() => ++attempts < 3 ? Effect.fail("flaky downstream") : Effect.void)
      }))
      yield* promise(() => eventually(() => pendingCount(redis, stream, "g"), (n) => n === 0 && attempts >= 3))
      assert.strictEqual(attempts, 3)
      assert.strictEqual(yield* promise(() => pendingCount(redis, stream, "g")), 0)
      assert.strictEqual(yield* promise(() => redis.exists(`{${stream}}:dlq`)), 0)
    }).pipe(Effect.scoped))

  it.live("dead-letters a message that fails on every delivery, after maxDeliveries, with its reason", () =>
    Effect.gen(function*() {
      const { prefix, redis, url } = yield* testRedis("poison")
      const stream = `${prefix}orders`
      const deliveries: Array<number> = []
      const [poisonId] = yield* promise(() =>
        addEvents(redis, stream, [{ event_type: "Poison", payload: { bad: true } }, { event_type: "Fine" }])
      )
      yield* start(Consumer.layer({
        redisUrl: url,
        stream,
        group: "g",
        maxDeliveries: 3,
        handlerTimeout: "100 millis",
        claimIdle: "300 millis",
        claimInterval: "100 millis",
        retry: Schedule.recurs(1),
        handler: (event) =>
          event.eventType === "Poison"
            ? Effect.sync(() => void deliveries.push(event.deliveryCount)).pipe(Effect.andThen(Effect.fail("boom")))
            : Effect.void
      }))
      const dlq = yield* promise(() =>
        eventually(() => redis.xrange(`{${stream}}:dlq`, "-", "+"), (es) => es.length > 0, 15_000)
      )
      assert.strictEqual(dlq.length, 1)
      const fields = Object.fromEntries(
        Array.from({ length: dlq[0]![1].length / 2 }, (_, i) => [dlq[0]![1][2 * i], dlq[0]![1][2 * i + 1]])
      )
      assert.strictEqual(fields.event_type, "Poison")
      assert.deepStrictEqual(JSON.parse(fields.payload!), { bad: true })
      assert.strictEqual(fields.delivery_count, "3")
      assert.strictEqual(fields.entry_id, poisonId)
      assert.strictEqual(fields.group, "g")
      assert.match(fields.reason!, /boom/)
      assert.isFalse(Number.isNaN(Date.parse(fields.dead_at!)))
      // Each of the three deliveries ran the handler twice (one retry); then it was acknowledged.
      assert.deepStrictEqual(deliveries, [1, 1, 2, 2, 3, 3])
      assert.strictEqual(yield* promise(() => eventually(() => pendingCount(redis, stream, "g"), (n) => n === 0)), 0)
    }).pipe(Effect.scoped))

  it.live("interrupts a handler that hangs past handlerTimeout; the message is delivered again", () =>
    Effect.gen(function*() {
      const { prefix, redis, url } = yield* testRedis("timeout")
      const stream = `${prefix}orders`
      const deliveries: Array<string> = []
      yield* promise(() =>
        addEvents(redis, stream, [{ aggregate_id: "a", event_type: "Hangs" }, {
          aggregate_id: "a",
          event_type: "Next"
        }])
      )
      yield* start(Consumer.layer({
        redisUrl: url,
        stream,
        group: "g",
        orderByAggregate: true,
        concurrency: 1,
        handlerTimeout: "200 millis",
        claimIdle: "400 millis",
        claimInterval: "100 millis",
        handler: (event) =>
          Effect.sync(() => void deliveries.push(`${event.eventType}#${event.deliveryCount}`)).pipe(
            Effect.andThen(event.eventType === "Hangs" && event.deliveryCount === 1 ? Effect.never : Effect.void)
          )
      }))
      yield* promise(() => eventually(() => deliveries.length, (n) => n >= 3, 10_000))
      // The hung delivery did not block its lane for good: the next entry ran after the timeout, and
      // the timed-out message came back (second delivery) once idle for claimIdle.
      assert.deepStrictEqual(deliveries, ["Hangs#1", "Next#1", "Hangs#2"])
      assert.strictEqual(yield* promise(() => eventually(() => pendingCount(redis, stream, "g"), (n) => n === 0)), 0)
    }).pipe(Effect.scoped))

  it.live("dead-letters at once a payload the schema refuses, and keeps handling the others", () =>
    Effect.gen(function*() {
      const { prefix, redis, url } = yield* testRedis("schema")
      const stream = `${prefix}orders`
      const totals: Array<number> = []
      yield* promise(() =>
        addEvents(redis, stream, [
          { payload: { total: 1 } },
          { payload: { total: "ten" } },
          { rawPayload: "{not json" },
          { payload: { total: 3 } }
        ])
      )
      yield* start(Consumer.layer({
        redisUrl: url,
        stream,
        group: "g",
        payloadSchema: Schema.Struct({ total: Schema.Number }),
        handler: (event) => Effect.sync(() => void totals.push(event.payload.total))
      }))
      const dlq = yield* promise(() =>
        eventually(() => redis.xrange(`{${stream}}:dlq`, "-", "+"), (es) => es.length >= 2)
      )
      yield* promise(() => eventually(() => totals.length, (n) => n >= 2))
      assert.deepStrictEqual(totals.sort(), [1, 3])
      const reasons = dlq.map(([, f]) => f[f.indexOf("reason") + 1]!)
      assert.match(reasons[0]!, /schema/)
      assert.match(reasons[1]!, /not valid JSON/)
      assert.deepStrictEqual(dlq.map(([, f]) => f[f.indexOf("delivery_count") + 1]), ["1", "1"])
      assert.strictEqual(yield* promise(() => eventually(() => pendingCount(redis, stream, "g"), (n) => n === 0)), 0)
    }).pipe(Effect.scoped))

  it.live("shares a group between two consumers without handling any message twice", () =>
    Effect.gen(function*() {
      const { prefix, redis, url } = yield* testRedis("share")
      const stream = `${prefix}orders`
      const handledBy = new Map<string, Array<string>>()
      const total = 600
      const consumerLayer = (name: string) =>
        Consumer.layer({
          redisUrl: url,
          stream,
          group: "g",
          consumer: name,
          batchSize: 20,
          concurrency: 8,
          handler: (event) =>
            Effect.sync(() => handledBy.set(event.eventId, [...(handledBy.get(event.eventId) ?? []), name])).pipe(
              Effect.andThen(Effect.sleep(`${Math.floor(Math.random() * 3)} millis`))
            )
        })
      yield* start(consumerLayer("a"))
      yield* start(consumerLayer("b"))
      yield* promise(async () => {
        for (let i = 0; i < total; i += 50) await addEvents(redis, stream, Array.from({ length: 50 }, () => ({})))
      })
      yield* promise(() => eventually(() => handledBy.size, (n) => n >= total, 20_000))
      yield* promise(() => sleep(200))
      assert.strictEqual(handledBy.size, total)
      assert.deepStrictEqual([...handledBy.values()].filter((names) => names.length !== 1), [])
      const byA = [...handledBy.values()].filter(([name]) => name === "a").length
      assert.isTrue(byA > 0 && byA < total, `both consumers worked (a handled ${byA} of ${total})`)
    }).pipe(Effect.scoped))

  it.live("keeps the order of each aggregate while aggregates run in parallel", () =>
    Effect.gen(function*() {
      const { prefix, redis, url } = yield* testRedis("order")
      const stream = `${prefix}orders`
      const aggregates = 10
      const perAggregate = 30
      const seen = new Map<string, Array<number>>()
      let running = 0
      let maxRunning = 0
      const events = Array.from({ length: aggregates * perAggregate }, (_, i) => ({
        aggregate_id: `agg-${i % aggregates}`,
        payload: { seq: Math.floor(i / aggregates) }
      }))
      yield* promise(() => addEvents(redis, stream, events))
      yield* start(Consumer.layer({
        redisUrl: url,
        stream,
        group: "g",
        concurrency: 8,
        orderByAggregate: true,
        batchSize: 50,
        payloadSchema: Schema.Struct({ seq: Schema.Number }),
        handler: (event) =>
          Effect.gen(function*() {
            running++
            maxRunning = Math.max(maxRunning, running)
            yield* Effect.sleep(`${Math.floor(Math.random() * 4)} millis`)
            seen.set(event.aggregateId, [...(seen.get(event.aggregateId) ?? []), event.payload.seq])
            running--
          })
      }))
      yield* promise(() =>
        eventually(() => [...seen.values()].reduce((n, s) => n + s.length, 0), (n) => n >= events.length, 20_000)
      )
      for (const [aggregate, seqs] of seen) {
        assert.deepStrictEqual(seqs, Array.from({ length: perAggregate }, (_, i) => i), `order of ${aggregate}`)
      }
      assert.isTrue(maxRunning > 1, `aggregates ran in parallel (max ${maxRunning})`)
    }).pipe(Effect.scoped))

  it.live("stop lets running handlers finish and leaves messages not started pending", () =>
    Effect.gen(function*() {
      const { prefix, redis, url } = yield* testRedis("stop")
      const stream = `${prefix}orders`
      const started: Array<string> = []
      const finished: Array<string> = []
      yield* promise(() => addEvents(redis, stream, Array.from({ length: 6 }, () => ({}))))
      const context = yield* start(Consumer.layer({
        redisUrl: url,
        stream,
        group: "g",
        concurrency: 2,
        handler: (event) =>
          Effect.sync(() => void started.push(event.id)).pipe(
            Effect.andThen(Effect.sleep("300 millis")),
            Effect.andThen(Effect.sync(() => void finished.push(event.id)))
          )
      }))
      yield* promise(() => eventually(() => started.length, (n) => n >= 2))
      yield* Context.get(context, Consumer).stop
      assert.deepStrictEqual(finished.sort(), started.sort())
      assert.strictEqual(started.length, 2)
      // The two that ran are acknowledged; the four never started stay pending for the group.
      assert.strictEqual(yield* promise(() => pendingCount(redis, stream, "g")), 4)
      yield* promise(() => addEvents(redis, stream, [{}]))
      yield* promise(() => sleep(200))
      assert.strictEqual(started.length, 2, "nothing is read after stop")
    }).pipe(Effect.scoped))
})
