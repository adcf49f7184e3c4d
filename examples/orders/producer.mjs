#!/usr/bin/env node
// Orders producer: `POST /orders` stores the order and its OrderPlaced event in one transaction, so
// the event is published if and only if the order exists. A payload the event's schema refuses is a 400
// naming the field, and nothing is written.
//
//   npm run build
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres node examples/orders/producer.mjs
//   curl -s -XPOST localhost:8080/orders -d '{"total": 12.5, "currency": "EUR"}'
//
// Settings (environment): DATABASE_URL (the relay's database), PORT (default 8080; 0 picks a free one).
import { randomUUID } from "node:crypto"
import { createServer } from "node:http"
import { enqueue, EventPayloadInvalid } from "outbox-relay"
import postgres from "postgres"
import { OrderPlaced } from "./catalog.mjs"

const sql = postgres(process.env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres", {
  onnotice: () => {}
})
await sql`CREATE TABLE IF NOT EXISTS orders (id text PRIMARY KEY, total numeric NOT NULL, currency text NOT NULL)`

const readJson = async (request) => {
  let body = ""
  for await (const chunk of request) body += chunk
  return JSON.parse(body || "{}")
}

const reply = (response, status, body) => {
  response.writeHead(status, { "content-type": "application/json" })
  response.end(JSON.stringify(body))
}

const placeOrder = async (input) => {
  const orderId = input.orderId ?? `order-${randomUUID().slice(0, 8)}`
  const payload = { orderId, total: input.total, currency: input.currency }
  // The order row and its event commit together, or neither does.
  const eventId = await sql.begin(async (tx) => {
    await tx`INSERT INTO orders (id, total, currency) VALUES (${orderId}, ${payload.total}, ${payload.currency})`
    return enqueue(tx, OrderPlaced, { aggregateId: orderId, payload })
  })
  return { orderId, eventId }
}

const server = createServer(async (request, response) => {
  if (request.method !== "POST" || request.url !== "/orders") return reply(response, 404, { error: "not found" })
  try {
    reply(response, 201, await placeOrder(await readJson(request)))
  } catch (error) {
    if (error instanceof EventPayloadInvalid) return reply(response, 400, { error: error.message, field: error.field })
    console.error("[orders-producer] failed:", error)
    reply(response, 500, { error: "internal error" })
  }
})
server.listen(Number(process.env.PORT ?? 8080), "127.0.0.1", () => {
  console.log(`[orders-producer] listening on http://127.0.0.1:${server.address().port}`)
})

const stop = () => {
  server.close(() => sql.end({ timeout: 5 }).then(() => process.exit(0)))
  // Keep-alive connections would hold close() open; requests in progress still finish.
  server.closeIdleConnections()
}
process.once("SIGTERM", stop)
process.once("SIGINT", stop)
