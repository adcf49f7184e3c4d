#!/usr/bin/env node
// Consumer throughput: fills a stream with relay-shaped entries, then measures one consumer (no-op
// handler) reading them with XREADGROUP and acknowledging them, until the group has nothing pending.
//
//   npm run build && node bench/diagnostics/consumer.mjs
//
// Settings (environment): REDIS_URL (default: a throwaway redis-server started here on a free port),
// BENCH_MESSAGES (200000), BENCH_BATCH (500), BENCH_CONCURRENCY (64), BENCH_CATALOG=1 (typed handlers: a
// catalog lookup and a schema decode per message instead of one untyped handler). Uses its own key
// (bench:consumer:<random>) and deletes it at the end.
import { Schema } from "effect"
import { Redis } from "ioredis"
import { randomBytes, randomUUID } from "node:crypto"
import { defineEvent, eventCatalog, startConsumer } from "../../dist/index.js"
import { sleep, startRedis } from "../lib/servers.mjs"

const messages = Number(process.env.BENCH_MESSAGES ?? 200_000)
const batchSize = Number(process.env.BENCH_BATCH ?? 500)
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 64)
const typed = process.env.BENCH_CATALOG === "1"
const OrderPlaced = defineEvent({
  topic: "orders",
  type: "OrderPlaced",
  payload: Schema.Struct({
    orderId: Schema.String,
    total: Schema.Number,
    currency: Schema.String,
    items: Schema.Array(Schema.Struct({ sku: Schema.String, quantity: Schema.Number }))
  })
})

// A redis-server of our own (no persistence), so the numbers do not depend on a shared one.
const server = process.env.REDIS_URL ? undefined : await startRedis()
const redisUrl = process.env.REDIS_URL ?? server.url
const redis = new Redis(redisUrl)
const stream = `bench:consumer:${randomBytes(4).toString("hex")}`

console.log(
  `redis: ${server ? `throwaway redis-server at ${redisUrl}` : redisUrl}; filling ${stream} with ${messages} entries...`
)
const payload = JSON.stringify({
  orderId: "order-1",
  total: 42.5,
  currency: "EUR",
  items: [{ sku: "sku-1", quantity: 2 }]
})
for (let done = 0; done < messages; done += 5_000) {
  const pipeline = redis.pipeline()
  for (let i = done; i < Math.min(messages, done + 5_000); i++) {
    pipeline.xadd(
      stream,
      "*",
      "event_id",
      randomUUID(),
      "event_type",
      "OrderPlaced",
      "topic",
      "orders",
      "aggregate_type",
      "order",
      "aggregate_id",
      `order-${i % 1000}`,
      "tenant_id",
      "",
      "schema_version",
      "1",
      "occurred_at",
      new Date().toISOString(),
      "payload",
      payload,
      "headers",
      "{}"
    )
  }
  await pipeline.exec()
}

let handled = 0
const started = performance.now()
const consumer = await startConsumer({
  redisUrl,
  stream,
  group: "bench",
  batchSize,
  concurrency,
  logLevel: "warn",
  ...(typed
    ? {
      catalog: eventCatalog(OrderPlaced),
      handlers: {
        OrderPlaced: () => {
          handled++
        }
      }
    }
    : {
      handler: () => {
        handled++
      }
    })
})
while (true) {
  const [pending] = await redis.xpending(stream, "bench")
  const info = await redis.xinfo("GROUPS", stream)
  const read = Number(info[0][info[0].indexOf("entries-read") + 1])
  if (handled >= messages && read >= messages && Number(pending) === 0) break
  await sleep(5)
}
const seconds = (performance.now() - started) / 1000
await consumer.stop()
console.log(
  `${messages} messages read, handled and acknowledged in ${seconds.toFixed(2)} s: ` +
    `${Math.round(messages / seconds).toLocaleString("en-US")} messages/s ` +
    `(batch ${batchSize}, concurrency ${concurrency}, ${typed ? "catalog handlers" : "one handler"}, ` +
    `Node ${process.version})`
)
await redis.del(stream)
redis.disconnect()
await server?.stop()
