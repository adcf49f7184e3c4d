/**
 * The consumer's Prometheus metrics, as an application scrapes them: counters of what happened to
 * each delivery (processed, failed, retried, dead-lettered, reclaimed) labelled by stream and group,
 * the handler duration histogram, and the group's lag and pending count read from Redis, both from
 * `prometheusText()` and from the server `metricsPort` starts.
 */
import { Redis } from "ioredis"
import { afterAll, describe, expect, inject, it } from "vitest"
import { prometheusText, startConsumer } from "../../src/index.js"
import { uniquePrefix } from "../support/db.js"
import { eventually } from "../support/wait.js"
import { addEvents } from "./helpers.js"

/** The value of one series in Prometheus text (undefined when absent). */
const sample = (text: string, name: string, labels: Record<string, string>): number | undefined => {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue
    const close = line.lastIndexOf("}")
    const found = Object.fromEntries(
      [...line.slice(name.length + 1, close).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]])
    )
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(line.slice(close + 1).trim())
  }
  return undefined
}

describe("consumer metrics", () => {
  const redis = new Redis(inject("redisUrl"))
  const prefix = uniquePrefix("cmetrics")
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}*`)
    if (keys.length > 0) await redis.del(...keys)
    redis.disconnect()
  })

  it("counts processed, failed, retried, dead-lettered and reclaimed deliveries per stream and group", async () => {
    const stream = `${prefix}orders`
    const group = "billing"
    const labels = { stream, group }
    await addEvents(redis, stream, [
      ...Array.from({ length: 5 }, (_, i) => ({ aggregate_id: `ok-${i}`, payload: { kind: "ok" } })),
      { aggregate_id: "flaky", payload: { kind: "flaky" } },
      { aggregate_id: "poison", payload: { kind: "poison" } }
    ])
    let flakyAttempts = 0
    const consumer = await startConsumer<{ kind: string }>({
      redisUrl: inject("redisUrl"),
      stream,
      group,
      logLevel: "error",
      maxDeliveries: 2,
      retries: 1,
      retryDelayMs: 5,
      handlerTimeoutMs: 500,
      claimIdleMs: 600,
      claimIntervalMs: 100,
      metricsPort: 0,
      handler: (event) => {
        if (event.payload.kind === "poison") throw new Error("cannot handle this")
        if (event.payload.kind === "flaky" && flakyAttempts++ === 0) throw new Error("first attempt fails")
      }
    })
    try {
      const text = await eventually(
        () => prometheusText(),
        (t) => sample(t, "outbox_consumer_dead_lettered_total", labels) === 1
      )
      // Five plain events and the flaky one (on its retry); the poison one failed both its deliveries,
      // each with one retry, was reclaimed once in between, and went to the dead-letter stream.
      expect(sample(text, "outbox_consumer_processed_total", labels)).toBe(6)
      expect(sample(text, "outbox_consumer_failed_total", labels)).toBe(2)
      expect(sample(text, "outbox_consumer_retried_total", labels)).toBe(3)
      expect(sample(text, "outbox_consumer_reclaimed_total", labels)).toBe(1)
      expect(sample(text, "outbox_consumer_handler_seconds_count", labels)).toBe(8)
      expect(sample(text, "outbox_consumer_handler_seconds_bucket", { ...labels, le: "+Inf" })).toBe(8)
      expect(await redis.xlen(`{${stream}}:dlq`)).toBe(1)

      // The same series from the metrics server, and the group's state once the poller read it.
      expect(consumer.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/)
      const served = await eventually(
        () => fetch(consumer.metricsUrl!).then((response) => response.text()),
        (t) =>
          sample(t, "outbox_consumer_group_lag", labels) === 0 &&
          sample(t, "outbox_consumer_group_pending", labels) === 0
      )
      expect(sample(served, "outbox_consumer_processed_total", labels)).toBe(6)
      expect(sample(served, "outbox_consumer_group_lag", labels)).toBe(0)
      expect(sample(served, "outbox_consumer_group_pending", labels)).toBe(0)
      expect(sample(served, "outbox_consumer_in_flight", labels)).toBe(0)
    } finally {
      await consumer.stop()
    }
  })

  it("reports the group's lag, pending entries and in-flight entries while a handler is stuck", async () => {
    const stream = `${prefix}stuck`
    const group = "slow"
    const labels = { stream, group }
    await addEvents(redis, stream, Array.from({ length: 20 }, (_, i) => ({ aggregate_id: `a-${i}` })))
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    const consumer = await startConsumer({
      redisUrl: inject("redisUrl"),
      stream,
      group,
      logLevel: "error",
      concurrency: 1,
      batchSize: 1,
      handler: () => gate
    })
    try {
      // At most two entries are read ahead of a stuck handler (twice batchSize); the rest wait in the stream.
      const stuck = await eventually(
        () => prometheusText(),
        (t) =>
          (sample(t, "outbox_consumer_group_lag", labels) ?? 0) >= 18 &&
          (sample(t, "outbox_consumer_group_pending", labels) ?? 0) >= 1 &&
          (sample(t, "outbox_consumer_in_flight", labels) ?? 0) >= 1,
        12_000
      )
      expect(sample(stuck, "outbox_consumer_group_lag", labels)).toBeGreaterThanOrEqual(18)
      expect(sample(stuck, "outbox_consumer_group_pending", labels)).toBeGreaterThanOrEqual(1)
      expect(sample(stuck, "outbox_consumer_in_flight", labels)).toBeGreaterThanOrEqual(1)
      release()
      const done = await eventually(
        () => prometheusText(),
        (t) =>
          sample(t, "outbox_consumer_group_lag", labels) === 0 &&
          sample(t, "outbox_consumer_group_pending", labels) === 0,
        12_000
      )
      expect(sample(done, "outbox_consumer_processed_total", labels)).toBe(20)
      expect(sample(done, "outbox_consumer_group_lag", labels)).toBe(0)
    } finally {
      release()
      await consumer.stop()
    }
  })
})
