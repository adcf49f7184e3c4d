#!/usr/bin/env node
// Demo producer for outbox-relay: writes events to `outbox_events` the way an application would,
// one transaction per business operation, so the relay publishes them to Redis Streams.
//
//   DATABASE_URL=postgres://postgres:postgres@localhost:5432/postgres node examples/demo-producer.mjs
//
// Settings (environment):
//   DATABASE_URL      default postgres://postgres:postgres@localhost:5432/postgres
//   DEMO_EVENTS       events to commit, default 20 (orders and payments, alternating)
//   DEMO_INTERVAL_MS  pause between events, default 250
//   RELAY_SCHEMA      schema of outbox_events when the relay uses one other than the search_path default
//
// The table exists only once the relay has migrated the database, so this script first waits (up to
// 60 s) for `outbox_events` to appear. Plain Node ESM; the only dependency is `postgres` (postgres.js).
import postgres from "postgres"

const WAIT_FOR_TABLE_MS = 60_000

const log = (line) => console.log(`[demo-producer] ${line}`)

const fail = (message) => {
  console.error(`[demo-producer] ${message}`)
  process.exit(1)
}

const intSetting = (name, fallback) => {
  const raw = process.env[name]
  if (raw === undefined || raw.trim() === "") return fallback
  if (!/^\d+$/.test(raw.trim())) fail(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`)
  return Number(raw.trim())
}

const databaseUrl = process.env.DATABASE_URL || "postgres://postgres:postgres@localhost:5432/postgres"
const eventCount = intSetting("DEMO_EVENTS", 20)
const intervalMs = intSetting("DEMO_INTERVAL_MS", 250)
const schema = process.env.RELAY_SCHEMA?.trim() || undefined
const streamPrefix = process.env.RELAY_STREAM_PREFIX ?? "outbox:"

/** The URL without its password, for log lines. */
const redact = (url) => {
  try {
    const u = new URL(url)
    if (u.password) u.password = "***"
    return u.toString()
  } catch {
    return "(unparsable DATABASE_URL)"
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const sql = postgres(databaseUrl, {
  max: 1,
  connect_timeout: 5,
  onnotice: () => {},
  ...(schema ? { connection: { search_path: schema } } : {})
})

/** Retries until `outbox_events` is visible (the relay creates it when it migrates), or gives up. */
const waitForTable = async () => {
  const deadline = Date.now() + WAIT_FOR_TABLE_MS
  let lastReport = 0
  for (;;) {
    let reason
    try {
      const [row] = await sql`SELECT to_regclass('outbox_events') IS NOT NULL AS present`
      if (row.present) return
      reason = "table outbox_events does not exist yet (has the relay migrated?)"
    } catch (error) {
      reason = error instanceof Error ? error.message : String(error)
    }
    if (Date.now() >= deadline) {
      throw new Error(`gave up after ${WAIT_FOR_TABLE_MS / 1000} s waiting for outbox_events: ${reason}`)
    }
    if (Date.now() - lastReport >= 5_000) {
      log(`waiting for outbox_events: ${reason}`)
      lastReport = Date.now()
    }
    await sleep(1_000)
  }
}

/** Event i (0-based): even i places order n, odd i captures its payment; both keyed by `order-<n>`. */
const eventFor = (i) => {
  const n = Math.floor(i / 2) + 1
  const aggregateId = `order-${n}`
  const total = Math.round((10 + ((n * 37) % 190) + n / 100) * 100) / 100
  return i % 2 === 0
    ? {
      topic: "orders",
      eventType: "OrderPlaced",
      aggregateId,
      payload: {
        orderId: aggregateId,
        customerId: `customer-${(n % 5) + 1}`,
        items: [{ sku: `sku-${(n % 3) + 1}`, quantity: (n % 4) + 1 }],
        total,
        currency: "EUR"
      }
    }
    : {
      topic: "payments",
      eventType: "PaymentCaptured",
      aggregateId,
      payload: { orderId: aggregateId, paymentId: `payment-${n}`, amount: total, currency: "EUR" }
    }
}

/**
 * The producer contract: one INSERT inside the transaction that does the business write.
 * The payload goes through tx.json(): postgres.js serializes it for the jsonb column itself, so passing
 * JSON.stringify(payload) would store a JSON *string* (which the relay's schema rejects).
 */
const insertOutboxEvent = (tx, event) =>
  tx`
  INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
  VALUES (${event.topic}, ${event.eventType}, ${event.aggregateId}, ${tx.json(event.payload)})
  RETURNING id, event_id
`

const commitEvent = async (i) => {
  const event = eventFor(i)
  const [row] = await sql.begin(async (tx) => {
    // The domain write goes here, in the same transaction, e.g.
    //   await tx`INSERT INTO orders (id, customer_id, total) VALUES (...)`
    //   await tx`UPDATE orders SET status = 'paid' WHERE id = ${event.aggregateId}`
    // The event becomes visible to the relay exactly when (and only if) this transaction commits.
    return insertOutboxEvent(tx, event)
  })
  log(
    `committed ${i + 1}/${eventCount}: ${event.topic} ${event.eventType} ${event.aggregateId} ` +
      `event_id=${row.event_id} -> stream ${streamPrefix}${event.topic}`
  )
}

class DemoRollback extends Error {}

/** A business operation that fails after writing its event: the rollback takes the event with it. */
const rollBackOne = async () => {
  const event = {
    topic: "orders",
    eventType: "OrderPlaced",
    aggregateId: "order-rejected",
    payload: { orderId: "order-rejected", customerId: "customer-0", items: [], total: 0, currency: "EUR" }
  }
  let eventId
  try {
    await sql.begin(async (tx) => {
      const [row] = await insertOutboxEvent(tx, event)
      eventId = row.event_id
      // e.g. a stock check or a constraint on the domain write fails after the outbox insert:
      throw new DemoRollback("order has no items")
    })
  } catch (error) {
    if (!(error instanceof DemoRollback)) throw error
    log(
      `rolled back: ${event.topic} ${event.eventType} ${event.aggregateId} event_id=${eventId} ` +
        `(${error.message}); this event is never published`
    )
    return
  }
  throw new Error("the demo rollback unexpectedly committed")
}

const main = async () => {
  log(
    `database ${redact(databaseUrl)}${
      schema ? ` (schema ${schema})` : ""
    }, ${eventCount} events, ${intervalMs} ms apart`
  )
  await waitForTable()
  log("outbox_events is present, producing")

  const rollbackAt = Math.floor(eventCount / 2)
  for (let i = 0; i < eventCount; i++) {
    if (i === rollbackAt) await rollBackOne()
    await commitEvent(i)
    if (i < eventCount - 1 && intervalMs > 0) await sleep(intervalMs)
  }
  if (eventCount === 0) await rollBackOne()

  log(
    `done: ${eventCount} events committed, 1 rolled back. ` +
      `Read them with: redis-cli XRANGE ${streamPrefix}orders - +   (and ${streamPrefix}payments)`
  )
}

try {
  await main()
  await sql.end({ timeout: 5 })
} catch (error) {
  console.error(`[demo-producer] failed: ${error instanceof Error ? error.message : String(error)}`)
  await sql.end({ timeout: 1 }).catch(() => {})
  process.exit(1)
}
