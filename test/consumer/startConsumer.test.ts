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
