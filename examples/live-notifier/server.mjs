#!/usr/bin/env node
// Live notifier: an HTTP server that streams outbox events to browsers with Server-Sent Events.
// One consumer (group LIVE_GROUP) reads the streams; every event goes to every open page.
//
//   npm run build
//   REDIS_URL=redis://127.0.0.1:6379 node examples/live-notifier/server.mjs
//   open http://127.0.0.1:8080/
//
// Settings (environment):
//   REDIS_URL / RELAY_REDIS_URL  default redis://127.0.0.1:6379
//   LIVE_STREAMS                 comma-separated; default outbox:orders,outbox:payments
//   LIVE_GROUP                   consumer group; default live-notifier. Each server instance needs a
//                                group of its own to see every event (a group shares events out).
//   HOST, PORT                   default 127.0.0.1 and 8080 (0 picks a free port; the URL is printed)
//
// GET /        the page (index.html next to this file)
// GET /events  text/event-stream: `event: outbox`, `id: <stream entry id>`, `data: <event JSON>`;
//              the last 50 events first (so a reload shows recent history), then live ones.
import { readFileSync } from "node:fs"
import { createServer } from "node:http"
import { startConsumer } from "outbox-relay"

const redisUrl = process.env.REDIS_URL || process.env.RELAY_REDIS_URL || "redis://127.0.0.1:6379"
const streams = (process.env.LIVE_STREAMS || "outbox:orders,outbox:payments").split(",").map((s) => s.trim()).filter(
  Boolean
)
const group = process.env.LIVE_GROUP || "live-notifier"
const host = process.env.HOST || "127.0.0.1"
const port = Number(process.env.PORT ?? 8080)
const page = readFileSync(new URL("./index.html", import.meta.url))

/** Open SSE responses, and the recent events a new page gets first. */
const clients = new Set()
const recent = []
const keepRecent = 50

const frame = (event) =>
  `event: outbox\nid: ${event.id}\ndata: ${
    JSON.stringify({
      id: event.id,
      stream: event.stream,
      eventId: event.eventId,
      eventType: event.eventType,
      topic: event.topic,
      aggregateId: event.aggregateId,
      occurredAt: event.occurredAt,
      payload: event.payload,
      headers: event.headers
    })
  }\n\n`

const broadcast = (event) => {
  const text = frame(event)
  recent.push(text)
  if (recent.length > keepRecent) recent.shift()
  for (const res of clients) res.write(text)
}

const server = createServer((req, res) => {
  const { pathname } = new URL(req.url ?? "/", "http://localhost")
  if (req.method === "GET" && pathname === "/") {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" })
    return res.end(page)
  }
  if (req.method === "GET" && pathname === "/events") {
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      connection: "keep-alive",
      "x-accel-buffering": "no" // nginx: do not buffer the stream
    })
    // Ask browsers to reconnect after 1 s when the connection drops (EventSource does it by itself).
    res.write(`retry: 1000\n: connected\n\n${recent.join("")}`)
    clients.add(res)
    req.on("close", () => clients.delete(res))
    return
  }
  res.writeHead(404, { "content-type": "text/plain" }).end("not found\n")
})

// A comment line every 15 s keeps proxies and load balancers from closing idle streams.
const heartbeat = setInterval(() => {
  for (const res of clients) res.write(": keep-alive\n\n")
}, 15_000)

const consumers = await Promise.all(streams.map((stream) =>
  startConsumer({
    redisUrl,
    stream,
    group,
    // Only what happens from now on; the page is a live view, not an archive.
    startFrom: "new",
    orderByAggregate: true,
    logLevel: "warn",
    logFormat: "pretty",
    handler: (event) => broadcast(event)
  })
))

server.listen(port, host, () => {
  const address = server.address()
  console.log(
    `live-notifier listening on http://${host}:${address.port}/ (group ${group}, streams ${streams.join(", ")})`
  )
})

const stop = async () => {
  clearInterval(heartbeat)
  for (const res of clients) res.end()
  server.close()
  await Promise.all(consumers.map((consumer) => consumer.stop()))
  process.exit(0)
}
process.once("SIGTERM", stop)
process.once("SIGINT", stop)
