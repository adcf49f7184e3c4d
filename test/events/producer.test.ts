/**
 * The producer helpers against real Postgres, for each client (postgres.js, node-postgres, Effect's
 * SqlClient on @effect/sql-pg): inside the caller's transaction (rolled back: nothing written; committed:
 * the row with the right columns), a bad payload (typed error naming the field, nothing inserted), a
 * retry with the same eventId (one row), and events of several types in one statement.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import { Effect, Exit, Layer, Redacted, Tracer } from "effect"
import * as SqlClient from "effect/sql/SqlClient"
import { randomUUID } from "node:crypto"
import pg from "pg"
import postgres from "postgres"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { enqueue, enqueueMany, EventPayloadInvalid, Outbox } from "../../src/index.js"
import { createTestDatabase, type TestDatabase } from "../support/db.js"
import { OrderPlaced, OrderShipped } from "./catalog.js"

interface OutboxRow {
  readonly event_id: string
  readonly topic: string
  readonly event_type: string
  readonly aggregate_type: string
  readonly aggregate_id: string
  readonly tenant_id: string
  readonly payload: unknown
  readonly headers: unknown
  readonly schema_version: number
}

let database: TestDatabase
let sql: postgres.Sql
let pool: pg.Pool

beforeAll(async () => {
  database = await createTestDatabase("events_producer")
  sql = postgres(database.url, { max: 4, onnotice: () => {}, fetch_types: false })
  pool = new pg.Pool({ connectionString: database.url, max: 2 })
  // Counts INSERT statements on the outbox, to prove enqueueMany sends one.
  await sql.unsafe(`
    CREATE TABLE insert_statements (n int NOT NULL);
    INSERT INTO insert_statements VALUES (0);
    CREATE FUNCTION count_insert_statement() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN UPDATE insert_statements SET n = n + 1; RETURN NULL; END $$;
    CREATE TRIGGER count_insert_statement AFTER INSERT ON outbox_events
      FOR EACH STATEMENT EXECUTE FUNCTION count_insert_statement();
    CREATE TABLE orders (id text PRIMARY KEY, total numeric NOT NULL);
  `)
})

afterAll(async () => {
  await pool?.end()
  await sql?.end({ timeout: 1 })
  await database?.drop()
})

const rowsOf = (aggregateId: string) =>
  sql<Array<OutboxRow>>`
    SELECT event_id::text, topic, event_type, aggregate_type, aggregate_id, tenant_id, payload, headers,
           schema_version
    FROM outbox_events WHERE aggregate_id = ${aggregateId} ORDER BY id`
const insertStatements = async () => (await sql<Array<{ n: number }>>`SELECT n FROM insert_statements`)[0]!.n
const placed = (orderId: string, total = 12.5) => ({ orderId, total, currency: "EUR" })

/** What every client must get right, given a way to run `work` in a transaction it may roll back. */
const expectCommittedRow = async (aggregateId: string, eventId: string) => {
  const rows = await rowsOf(aggregateId)
  expect(rows).toEqual([{
    event_id: eventId,
    topic: "orders",
    event_type: "OrderPlaced",
    aggregate_type: "order",
    aggregate_id: aggregateId,
    tenant_id: "",
    payload: placed(aggregateId),
    headers: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
    schema_version: 2
  }])
}
const headers = { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }

describe("enqueue with postgres.js", () => {
  it("writes nothing when the caller's transaction rolls back, the row when it commits", async () => {
    const id = `pgjs-${randomUUID()}`
    await expect(sql.begin(async (tx) => {
      await tx`INSERT INTO orders (id, total) VALUES (${id}, 12.5)`
      await enqueue(tx, OrderPlaced, { aggregateId: id, payload: placed(id), headers })
      throw new Error("business rule failed")
    })).rejects.toThrow("business rule failed")
    expect(await rowsOf(id)).toEqual([])

    const eventId = await sql.begin(async (tx) => {
      await tx`INSERT INTO orders (id, total) VALUES (${id}, 12.5)`
      return enqueue(tx, OrderPlaced, { aggregateId: id, payload: placed(id), headers })
    })
    await expectCommittedRow(id, eventId)
  })

  it("refuses a bad payload with EventPayloadInvalid naming the field, inserting nothing", async () => {
    const id = `pgjs-bad-${randomUUID()}`
    const before = await insertStatements()
    const error = await enqueueMany(sql, [
      { event: OrderPlaced, aggregateId: id, payload: placed(id) },
      { event: OrderPlaced, aggregateId: id, payload: { orderId: id, total: "12", currency: "EUR" } as never }
    ]).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(EventPayloadInvalid)
    expect(error).toMatchObject({ eventType: "OrderPlaced", field: "total" })
    expect(await rowsOf(id)).toEqual([])
    expect(await insertStatements()).toBe(before)
  })

  it("writes one row for a retry with the same eventId", async () => {
    const id = `pgjs-retry-${randomUUID()}`
    const eventId = randomUUID()
    for (let attempt = 0; attempt < 2; attempt++) {
      expect(await enqueue(sql, OrderPlaced, { aggregateId: id, payload: placed(id), eventId })).toBe(eventId)
    }
    expect((await rowsOf(id)).map((row) => row.event_id)).toEqual([eventId])
  })

  it("writes events of several types in one statement, in order", async () => {
    const id = `pgjs-many-${randomUUID()}`
    const before = await insertStatements()
    const shippedAt = new Date("2026-03-04T05:06:07.000Z")
    const ids = await enqueueMany(sql, [
      { event: OrderPlaced, aggregateId: id, payload: placed(id) },
      { event: OrderShipped, aggregateId: id, payload: { orderId: id, carrier: "dhl", shippedAt } },
      { event: OrderPlaced, aggregateId: id, payload: placed(id, 3), tenantId: "acme" }
    ])
    expect(await insertStatements()).toBe(before + 1)
    const rows = await rowsOf(id)
    expect(rows.map((row) => row.event_id)).toEqual(ids)
    expect(rows.map((row) => [row.event_type, row.schema_version, row.tenant_id, row.payload])).toEqual([
      ["OrderPlaced", 2, "", placed(id)],
      ["OrderShipped", 1, "", { orderId: id, carrier: "dhl", shippedAt: "2026-03-04T05:06:07.000Z" }],
      ["OrderPlaced", 2, "acme", placed(id, 3)]
    ])
  })
})

describe("enqueue with node-postgres", () => {
  it("writes nothing on ROLLBACK, the row on COMMIT", async () => {
    const id = `pg-${randomUUID()}`
    const client = await pool.connect()
    try {
      await client.query("BEGIN")
      await client.query("INSERT INTO orders (id, total) VALUES ($1, 12.5)", [id])
      await enqueue(client, OrderPlaced, { aggregateId: id, payload: placed(id), headers })
      await client.query("ROLLBACK")
      expect(await rowsOf(id)).toEqual([])

      await client.query("BEGIN")
      await client.query("INSERT INTO orders (id, total) VALUES ($1, 12.5)", [id])
      const eventId = await enqueue(client, OrderPlaced, { aggregateId: id, payload: placed(id), headers })
      // Not visible outside the transaction before COMMIT.
      expect(await rowsOf(id)).toEqual([])
      await client.query("COMMIT")
      await expectCommittedRow(id, eventId)
    } finally {
      client.release()
    }
  })

  it("refuses a bad payload, dedupes a retry, and writes mixed types in one statement", async () => {
    const id = `pg-more-${randomUUID()}`
    const client = await pool.connect()
    try {
      const error = await enqueue(client, OrderShipped, {
        aggregateId: id,
        payload: { orderId: id, carrier: 7, shippedAt: new Date() } as never
      }).catch((e: unknown) => e)
      expect(error).toMatchObject({ _tag: "EventPayloadInvalid", eventType: "OrderShipped", field: "carrier" })

      const eventId = randomUUID()
      await enqueue(client, OrderPlaced, { aggregateId: id, payload: placed(id), eventId })
      const before = await insertStatements()
      const ids = await enqueueMany(client, [
        { event: OrderPlaced, aggregateId: id, payload: placed(id), eventId },
        { event: OrderShipped, aggregateId: id, payload: { orderId: id, carrier: "ups", shippedAt: new Date() } }
      ])
      expect(ids[0]).toBe(eventId)
      expect(await insertStatements()).toBe(before + 1)
      expect((await rowsOf(id)).map((row) => [row.event_id, row.event_type])).toEqual([
        [eventId, "OrderPlaced"],
        [ids[1], "OrderShipped"]
      ])
    } finally {
      client.release()
    }
  })
})

/** Runs `effect` with the Outbox on a fresh @effect/sql-pg client. */
const run = <A, E>(effect: Effect.Effect<A, E, Outbox | SqlClient.SqlClient>) =>
  Effect.runPromiseExit(
    effect.pipe(
      Effect.provide(
        Outbox.layer.pipe(Layer.provideMerge(PgClient.layer({ url: Redacted.make(database.url), maxConnections: 2 })))
      )
    )
  )

describe("Outbox on Effect's SqlClient (@effect/sql-pg)", () => {
  it("joins the surrounding withTransaction: rolled back with it, committed with it", async () => {
    const id = `effect-${randomUUID()}`
    const inTransaction = (fail: boolean) =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        return yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO orders (id, total) VALUES (${id}, 12.5)`
          const eventId = yield* Outbox.enqueue(OrderPlaced, { aggregateId: id, payload: placed(id), headers })
          if (fail) return yield* Effect.fail("business rule failed" as const)
          return eventId
        }))
      })
    const failed = await run(inTransaction(true))
    expect(Exit.isFailure(failed)).toBe(true)
    expect(await rowsOf(id)).toEqual([])
    expect(await sql`SELECT 1 FROM orders WHERE id = ${id}`).toHaveLength(0)

    const committed = await run(inTransaction(false))
    if (!Exit.isSuccess(committed)) throw new Error(`expected a commit: ${String(committed.cause)}`)
    await expectCommittedRow(id, committed.value)
  })

  it("fails with EventPayloadInvalid before writing, dedupes a retry, mixes types in one statement", async () => {
    const id = `effect-more-${randomUUID()}`
    const bad = await run(Outbox.enqueue(OrderPlaced, { aggregateId: id, payload: { orderId: id } as never }))
    expect(bad).toMatchObject({ _tag: "Failure" })
    if (Exit.isFailure(bad)) {
      const error = bad.cause.reasons[0]
      expect(error).toMatchObject({ _tag: "Fail", error: { _tag: "EventPayloadInvalid", field: "total" } })
    }
    expect(await rowsOf(id)).toEqual([])

    const eventId = randomUUID()
    const before = await insertStatements()
    const ids = await run(Outbox.enqueueMany([
      { event: OrderPlaced, aggregateId: id, payload: placed(id), eventId },
      { event: OrderPlaced, aggregateId: id, payload: placed(id), eventId },
      { event: OrderShipped, aggregateId: id, payload: { orderId: id, carrier: "dhl", shippedAt: new Date() } }
    ]))
    if (!Exit.isSuccess(ids)) throw new Error(String(ids.cause))
    expect(await insertStatements()).toBe(before + 1)
    expect((await rowsOf(id)).map((row) => [row.event_id, row.event_type])).toEqual([
      [eventId, "OrderPlaced"],
      [ids.value[2], "OrderShipped"]
    ])
  })
})

describe("trace context in the producer helpers", () => {
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
  const spanId = "00f067aa0ba902b7"

  it("postgres.js and pg write the traceContext passed; a traceparent in headers wins", async () => {
    const id = `trace-${randomUUID()}`
    await sql.begin((tx) =>
      enqueue(tx, OrderPlaced, {
        aggregateId: id,
        payload: placed(id),
        headers: { origin: "checkout" },
        traceContext: { traceId, spanId, traceFlags: 1, traceState: { serialize: () => "vendor=abc" } }
      })
    )
    const client = await pool.connect()
    try {
      await enqueueMany(client, [{
        event: OrderPlaced,
        aggregateId: id,
        payload: placed(id),
        headers,
        traceContext: { traceId, spanId, traceFlags: 1 }
      }])
    } finally {
      client.release()
    }
    expect((await rowsOf(id)).map((row) => row.headers)).toEqual([
      { origin: "checkout", traceparent: `00-${traceId}-${spanId}-01`, tracestate: "vendor=abc" },
      headers
    ])
  })

  it("the Effect Outbox writes the current trace: an incoming context continues through the outbox", async () => {
    const id = `trace-effect-${randomUUID()}`
    const incoming = Tracer.externalSpan({ traceId, spanId, sampled: true })
    const written = await run(
      Outbox.enqueue(OrderPlaced, { aggregateId: id, payload: placed(id) }).pipe(
        Effect.withSpan("POST /orders"),
        Effect.withParentSpan(incoming)
      )
    )
    expect(Exit.isSuccess(written)).toBe(true)
    const [row] = await rowsOf(id)
    expect((row!.headers as { traceparent: string }).traceparent).toBe(`00-${traceId}-${spanId}-01`)
    // Outside any span there is nothing to continue: no trace headers.
    const plain = `trace-none-${randomUUID()}`
    await run(Outbox.enqueue(OrderPlaced, { aggregateId: plain, payload: placed(plain) }))
    expect((await rowsOf(plain))[0]!.headers).toEqual({})
  })
})
