/**
 * The Promise API as an application without Effect uses it: start, receive parsed events, stop.
 */
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import { afterAll, describe, expect, inject, it } from "vitest"
import { type ConsumedEvent, startConsumer } from "../../src/index.js"
import { uniquePrefix } from "../support/db.js"
import { eventually } from "../support/wait.js"
import { addEvents, pendingCount } from "./helpers.js"

describe("startConsumer", () => {
  const redis = new Redis(inject("redisUrl"))
  const prefix = uniquePrefix("promise")
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}*`)
    if (keys.length > 0) await redis.del(...keys)
    redis.disconnect()
  })

  it("hands parsed events to an async handler, acknowledges them, and stops", async () => {
    const stream = `${prefix}orders`
    const eventId = randomUUID()
    const seen: Array<ConsumedEvent> = []
    await addEvents(redis, stream, [{
      event_id: eventId,
      event_type: "OrderPlaced",
      aggregate_id: "order-42",
      payload: { total: 10 }
    }])
    const consumer = await startConsumer({
      redisUrl: inject("redisUrl"),
      stream,
      group: "mailer",
      logLevel: "error",
      handler: async (event, { signal }) => {
        expect(signal.aborted).toBe(false)
        seen.push(event)
      }
    })
    await eventually(() => seen.length, (n) => n === 1)
    expect(seen[0]).toMatchObject({
      eventId,
      eventType: "OrderPlaced",
      topic: "orders",
      aggregateId: "order-42",
      payload: { total: 10 },
      headers: {},
      deliveryCount: 1,
      stream
    })
    expect(seen[0]!.id).toMatch(/^\d+-\d+$/)
    expect(await eventually(() => pendingCount(redis, stream, "mailer"), (n) => n === 0)).toBe(0)
    expect(consumer.stats()).toMatchObject({ acked: 1, failed: 0, deadLettered: 0 })
    await consumer.stop()
    await consumer.stop() // idempotent
    await addEvents(redis, stream, [{}])
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(seen.length).toBe(1)
  })

  // A plain function that throws (the path that needs no promise), and an async one that rejects.
  it.each(["sync", "async"] as const)(
    "retries a %s handler that fails, dead-letters one that keeps failing, acknowledges the rest",
    async (kind) => {
      const stream = `${prefix}${kind}-failures`
      const calls = new Map<string, number>()
      const [flakyId, poisonId] = await addEvents(redis, stream, [
        { event_type: "Flaky" },
        { event_type: "Poison" },
        ...Array.from({ length: 50 }, () => ({ event_type: "Fine" }))
      ])
      const fail = (event: { id: string; eventType: string }) => {
        const n = (calls.get(event.id) ?? 0) + 1
        calls.set(event.id, n)
        if (event.eventType === "Poison" || (event.eventType === "Flaky" && n < 3)) throw new Error(`boom ${n}`)
      }
      const consumer = await startConsumer({
        redisUrl: inject("redisUrl"),
        stream,
        group: "g",
        logLevel: "error",
        maxDeliveries: 1,
        retries: 2,
        retryDelayMs: 5,
        handler: kind === "sync" ? fail : async (event) => {
          await new Promise((resolve) => setTimeout(resolve, 1))
          fail(event)
        }
      })
      try {
        const dlq = await eventually(() => redis.xrange(`{${stream}}:dlq`, "-", "+"), (es) => es.length > 0)
        expect(dlq.length).toBe(1)
        const fields = dlq[0]![1]
        expect(fields[fields.indexOf("entry_id") + 1]).toBe(poisonId)
        expect(fields[fields.indexOf("reason") + 1]).toMatch(/boom 3/)
        expect(await eventually(() => pendingCount(redis, stream, "g"), (n) => n === 0)).toBe(0)
        // One call, two retries each; every other event once.
        expect(calls.get(flakyId!)).toBe(3)
        expect(calls.get(poisonId!)).toBe(3)
        expect(calls.size).toBe(52)
        expect(consumer.stats()).toMatchObject({ acked: 51, failed: 1, deadLettered: 1 })
      } finally {
        await consumer.stop()
      }
    }
  )

  it("stop() waits for a running async handler, whose message is then acknowledged", async () => {
    const stream = `${prefix}stop-waits`
    await addEvents(redis, stream, [{}])
    let started = false
    let finished = false
    const consumer = await startConsumer({
      redisUrl: inject("redisUrl"),
      stream,
      group: "g",
      logLevel: "error",
      handler: async (_event, { signal }) => {
        started = true
        await new Promise((resolve) => setTimeout(resolve, 300))
        finished = !signal.aborted
      }
    })
    await eventually(() => started, (s) => s)
    await consumer.stop()
    expect(finished).toBe(true)
    expect(await pendingCount(redis, stream, "g")).toBe(0)
  })

  it("aborts a handler that runs past handlerTimeoutMs; it counts as a failed delivery", async () => {
    const stream = `${prefix}hang`
    const [hangId] = await addEvents(redis, stream, [{ event_type: "Hang" }, { event_type: "Fine" }])
    let aborted = false
    const consumer = await startConsumer({
      redisUrl: inject("redisUrl"),
      stream,
      group: "g",
      logLevel: "error",
      maxDeliveries: 1,
      retries: 0,
      handlerTimeoutMs: 200,
      handler: (event, { signal }) =>
        event.eventType === "Hang"
          ? new Promise<void>((resolve) =>
            signal.addEventListener("abort", () => {
              aborted = true
              resolve()
            })
          )
          : undefined
    })
    try {
      const dlq = await eventually(() => redis.xrange(`{${stream}}:dlq`, "-", "+"), (es) => es.length > 0)
      expect(dlq[0]![1][dlq[0]![1].indexOf("entry_id") + 1]).toBe(hangId)
      expect(dlq[0]![1][dlq[0]![1].indexOf("reason") + 1]).toMatch(/HandlerTimedOut/)
      expect(aborted).toBe(true)
      expect(await eventually(() => pendingCount(redis, stream, "g"), (n) => n === 0)).toBe(0)
      expect(consumer.stats()).toMatchObject({ acked: 1, failed: 1, deadLettered: 1 })
    } finally {
      await consumer.stop()
    }
  })

  it("after an async handler times out, the rest of its aggregate is handled in order", async () => {
    const stream = `${prefix}hang-ordered`
    const events = ["Fine", "Fine", "Hang", "Fine", "Fine"].map((type, n) => ({ event_type: type, payload: { n } }))
    const ids = await addEvents(redis, stream, events.map((e) => ({ ...e, aggregate_id: "order-1" })))
    const seen: Array<number> = []
    const consumer = await startConsumer({
      redisUrl: inject("redisUrl"),
      stream,
      group: "g",
      logLevel: "error",
      orderByAggregate: true,
      maxDeliveries: 1,
      retries: 0,
      handlerTimeoutMs: 200,
      handler: async (event, { signal }) => {
        if (event.eventType === "Hang") await new Promise((resolve) => signal.addEventListener("abort", resolve))
        else seen.push((event.payload as { n: number }).n)
      }
    })
    try {
      const dlq = await eventually(() => redis.xrange(`{${stream}}:dlq`, "-", "+"), (es) => es.length > 0)
      expect(dlq[0]![1][dlq[0]![1].indexOf("entry_id") + 1]).toBe(ids[2])
      expect(await eventually(() => pendingCount(redis, stream, "g"), (n) => n === 0)).toBe(0)
      expect(seen).toEqual([0, 1, 3, 4])
      expect(consumer.stats()).toMatchObject({ acked: 4, failed: 1, deadLettered: 1 })
    } finally {
      await consumer.stop()
    }
  })

  it.each(["sync", "async"] as const)(
    "keeps each aggregate's order with a %s handler and several workers",
    async (kind) => {
      const stream = `${prefix}order-${kind}`
      const events = Array.from({ length: 600 }, (_, i) => ({ aggregate_id: `agg-${i % 7}`, payload: { n: i } }))
      await addEvents(redis, stream, events)
      const seen = new Map<string, Array<number>>()
      const consumer = await startConsumer({
        redisUrl: inject("redisUrl"),
        stream,
        group: "g",
        logLevel: "error",
        orderByAggregate: true,
        batchSize: 100,
        concurrency: 4,
        handler: (event) => {
          const record = () => {
            const list = seen.get(event.aggregateId) ?? []
            list.push((event.payload as { n: number }).n)
            seen.set(event.aggregateId, list)
          }
          if (kind === "sync") return record()
          // Uneven delays: a later entry of an aggregate would overtake an earlier one if they overlapped.
          const n = (event.payload as { n: number }).n
          return new Promise<void>((resolve) => setTimeout(resolve, n % 3)).then(record)
        }
      })
      const handled = () => [...seen.values()].reduce((sum, list) => sum + list.length, 0)
      try {
        await eventually(handled, (n) => n >= 600)
        expect(await eventually(() => pendingCount(redis, stream, "g"), (n) => n === 0)).toBe(0)
        expect(handled()).toBe(600)
        for (let a = 0; a < 7; a++) {
          const expected = events.flatMap((e) => e.aggregate_id === `agg-${a}` ? [e.payload.n] : [])
          expect(seen.get(`agg-${a}`)).toEqual(expected)
        }
      } finally {
        await consumer.stop()
      }
    }
  )

  it("rejects options that cannot work, naming the option", async () => {
    await expect(startConsumer({
      redisUrl: inject("redisUrl"),
      stream: `${prefix}x`,
      group: "g",
      logLevel: "error",
      handlerTimeoutMs: 5_000,
      claimIdleMs: 1_000,
      handler: async () => {}
    })).rejects.toMatchObject({ _tag: "ConsumerOptionsInvalid", option: "claimIdle" })
  })
})
