/**
 * What the typed producer helper costs: events written per second with `enqueueMany` (schema validation,
 * encoding, one jsonb parameter) against a hand-written multi-row INSERT of the same rows (one statement
 * of VALUES, payloads as JSON text), both through postgres.js on one connection, batches of 100 in
 * autocommit, into the relay's migrated outbox table (no relay running). Rounds alternate which side goes
 * first; each side reports the median of its rounds.
 *
 *   npm run bench -- --scenario enqueue --no-report      (or as part of the full run)
 */
import { Schema } from "effect"
import { randomUUID } from "node:crypto"
import { pathToFileURL } from "node:url"
import postgres from "postgres"
import { competitors, root } from "./lib/competitors.mjs"
import { median, round } from "./lib/stats.mjs"

const BATCH = 100
const COLUMNS = ["event_id", "topic", "event_type", "aggregate_type", "aggregate_id", "payload", "schema_version"]

const hr = () => Number(process.hrtime.bigint()) / 1e6

const payloadOf = (i) => ({
  orderId: `order-${i}`,
  customerId: `customer-${i % 977}`,
  total: 10 + (i % 100) / 4,
  currency: "EUR",
  items: [{ sku: `sku-${i % 31}`, quantity: 1 + (i % 3) }, { sku: "sku-gift", quantity: 1 }]
})

/** The hand-written statement for `rows` rows: `($1, $2, ..., $7::text::jsonb, $8), ...`. */
const handWrittenStatement = (rows) => {
  const values = []
  for (let r = 0; r < rows; r++) {
    const p = COLUMNS.map((column, c) => `$${r * COLUMNS.length + c + 1}${column === "payload" ? "::text::jsonb" : ""}`)
    values.push(`(${p.join(", ")})`)
  }
  return `INSERT INTO outbox_events (${COLUMNS.join(", ")}) VALUES ${values.join(", ")}`
}

export const runEnqueue = async ({ pgAdmin, urlFor, redisUrl, quick, log = console.log }) => {
  // Loaded here: dist/ is built by `npm run bench` after this module is imported.
  const { defineEvent, enqueueMany } = await import(pathToFileURL(`${root}/dist/index.js`).href)
  const OrderPlaced = defineEvent({
    topic: "orders",
    type: "OrderPlaced",
    aggregateType: "order",
    payload: Schema.Struct({
      orderId: Schema.String,
      customerId: Schema.String,
      total: Schema.Finite,
      currency: Schema.String,
      items: Schema.Array(Schema.Struct({ sku: Schema.String, quantity: Schema.Int }))
    })
  })
  const events = quick ? 20_000 : 50_000
  const rounds = 3
  const db = "bench_enqueue"
  await pgAdmin.unsafe(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`)
  await pgAdmin.unsafe(`CREATE DATABASE "${db}"`)
  const url = urlFor(db)
  await competitors.relay.setup(url, redisUrl)
  const sql = postgres(url, { max: 1, onnotice: () => {}, fetch_types: false })
  const statement = handWrittenStatement(BATCH)

  const sides = {
    enqueueMany: async (from) => {
      const items = []
      for (let i = from; i < from + BATCH; i++) {
        items.push({ event: OrderPlaced, aggregateId: `order-${i}`, payload: payloadOf(i) })
      }
      await enqueueMany(sql, items)
    },
    handWritten: async (from) => {
      const params = []
      for (let i = from; i < from + BATCH; i++) {
        params.push(randomUUID(), "orders", "OrderPlaced", "order", `order-${i}`, JSON.stringify(payloadOf(i)), 1)
      }
      await sql.unsafe(statement, params)
    }
  }
  const measure = async (name) => {
    await sql`TRUNCATE outbox_events`
    const started = hr()
    for (let from = 0; from < events; from += BATCH) await sides[name](from)
    const seconds = (hr() - started) / 1000
    const [{ n }] = await sql`SELECT count(*)::int AS n FROM outbox_events`
    if (n !== events) throw new Error(`${name}: ${n} rows written, expected ${events}`)
    return events / seconds
  }

  const perRound = []
  try {
    // Unmeasured batches first: prepared statements, caches and the JIT warm for both sides.
    for (let from = 0; from < 5_000; from += BATCH) {
      await sides.enqueueMany(from)
      await sides.handWritten(from)
    }
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? ["enqueueMany", "handWritten"] : ["handWritten", "enqueueMany"]
      const round_ = {}
      for (const name of order) round_[name] = await measure(name)
      perRound.push(round_)
      log(
        `   round ${r + 1}: enqueueMany ${Math.round(round_.enqueueMany)}/s, ` +
          `hand-written INSERT ${Math.round(round_.handWritten)}/s`
      )
    }
  } finally {
    await sql.end({ timeout: 2 })
    await pgAdmin.unsafe(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`).catch(() => {})
  }
  const helper = median(perRound.map((r) => r.enqueueMany))
  const handWritten = median(perRound.map((r) => r.handWritten))
  return {
    events,
    batch: BATCH,
    rounds: perRound.map((r) => ({ enqueueMany: round(r.enqueueMany, 0), handWritten: round(r.handWritten, 0) })),
    enqueueManyPerSecond: round(helper, 0),
    handWrittenPerSecond: round(handWritten, 0),
    ratio: round(helper / handWritten, 3)
  }
}
