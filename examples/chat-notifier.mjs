#!/usr/bin/env node
// Chat notifier: turns outbox events into chat messages, one consumer group per notifier, so every
// event is announced once even with several notifier processes running. Instead of calling a chat
// API (Slack, Teams, Matrix...) it prints each message; replace `postToChat` to send them for real.
//
//   npm run build
//   REDIS_URL=redis://127.0.0.1:6379 node examples/chat-notifier.mjs
//
// Settings (environment):
//   REDIS_URL / RELAY_REDIS_URL  default redis://127.0.0.1:6379
//   NOTIFY_STREAMS               streams to announce, comma-separated; default outbox:orders,outbox:payments
//   NOTIFY_GROUP                 consumer group; default chat-notifier
//
// A message that cannot be formatted or posted is retried, then redelivered, and after 5 deliveries
// lands in {<stream>}:dlq (`node dist/main.js dlq list outbox:orders`). SIGTERM/SIGINT stop it
// gracefully: messages being posted finish, the rest stays pending for the group.
import { startConsumer } from "outbox-relay"

const redisUrl = process.env.REDIS_URL || process.env.RELAY_REDIS_URL || "redis://127.0.0.1:6379"
const streams = (process.env.NOTIFY_STREAMS || "outbox:orders,outbox:payments").split(",").map((s) => s.trim()).filter(
  Boolean
)
const group = process.env.NOTIFY_GROUP || "chat-notifier"

const money = (amount, currency = "EUR") =>
  typeof amount === "number" ? `${amount.toFixed(2)} ${currency}` : `${amount ?? "?"} ${currency}`

/** One chat message per event: a channel and a line of text. */
const formatEvent = (event) => {
  const p = event.payload ?? {}
  switch (event.eventType) {
    case "OrderPlaced": {
      const items = Array.isArray(p.items) ? p.items.reduce((n, item) => n + (item.quantity ?? 1), 0) : 0
      return {
        channel: "#orders",
        text: `🛒 Order ${event.aggregateId} placed by ${p.customerId ?? "someone"}: ${items} item(s), ${
          money(p.total, p.currency)
        }`
      }
    }
    case "PaymentCaptured":
      return {
        channel: "#payments",
        text: `💶 Payment ${p.paymentId ?? "?"} captured for ${event.aggregateId}: ${money(p.amount, p.currency)}`
      }
    default:
      return {
        channel: `#${event.topic || "events"}`,
        text: `📣 ${event.eventType} on ${event.aggregateId || "(no aggregate)"}: ${JSON.stringify(p)}`
      }
  }
}

/** Stands in for the chat API call (e.g. `await fetch(webhookUrl, { method: "POST", body, signal })`). */
const postToChat = async ({ channel, text }, event) => {
  console.log(
    `[chat-notifier] ${channel.padEnd(10)} ${text}   (event ${event.eventId}, delivery ${event.deliveryCount})`
  )
}

const consumers = await Promise.all(streams.map((stream) =>
  startConsumer({
    redisUrl,
    stream,
    group,
    // Announce each order's events in the order they happened.
    orderByAggregate: true,
    concurrency: 4,
    logLevel: "warn",
    logFormat: "pretty",
    handler: (event) => postToChat(formatEvent(event), event)
  })
))
console.log(`[chat-notifier] ready: group ${group} on ${streams.join(", ")}`)

const stop = async (signal) => {
  console.log(`[chat-notifier] ${signal}: stopping`)
  await Promise.all(consumers.map((consumer) => consumer.stop()))
  process.exit(0)
}
process.once("SIGTERM", () => stop("SIGTERM"))
process.once("SIGINT", () => stop("SIGINT"))
