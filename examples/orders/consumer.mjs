#!/usr/bin/env node
// Orders consumer: typed handlers per event type of the catalog. Each handler gets its payload
// decoded and upgraded to the current version; an entry whose payload the schema refuses goes to
// {<stream>}:dlq with the decode error, and types this consumer has no handler for are acknowledged.
//
//   npm run build
//   REDIS_URL=redis://127.0.0.1:6379 node examples/orders/consumer.mjs
//
// Settings (environment): REDIS_URL (default redis://127.0.0.1:6379), ORDERS_STREAM (default
// outbox:orders), ORDERS_GROUP (default order-mailer).
import { startConsumer } from "outbox-relay"
import { catalog } from "./catalog.mjs"

const consumer = await startConsumer({
  redisUrl: process.env.REDIS_URL || "redis://127.0.0.1:6379",
  stream: process.env.ORDERS_STREAM || "outbox:orders",
  group: process.env.ORDERS_GROUP || "order-mailer",
  logLevel: "warn",
  catalog,
  handlers: {
    OrderPlaced: (event) => {
      const { orderId, total, currency } = event.payload
      console.log(`[orders-consumer] order ${orderId} placed: ${total.toFixed(2)} ${currency}`)
    },
    OrderCancelled: (event) => {
      console.log(`[orders-consumer] order ${event.payload.orderId} cancelled: ${event.payload.reason}`)
    }
  }
})
console.log(`[orders-consumer] ready: group ${consumer.name}`)

const stop = () => consumer.stop().then(() => process.exit(0))
process.once("SIGTERM", stop)
process.once("SIGINT", stop)
