/**
 * The producer helpers for Effect applications: an `Outbox` service on Effect's `SqlClient`
 * (`effect/sql`), so an enqueue joins the surrounding `sql.withTransaction` like any other statement.
 *
 * ```ts
 * const placeOrder = Effect.fn("placeOrder")(function*(order: Order) {
 *   const sql = yield* SqlClient.SqlClient
 *   yield* sql.withTransaction(Effect.gen(function*() {
 *     yield* sql`INSERT INTO orders ${sql.insert(order)}`
 *     yield* Outbox.enqueue(OrderPlaced, { aggregateId: order.id, payload: { ... } })
 *   }))
 * })
 * // provided with Outbox.layer and a Postgres SqlClient, e.g. PgClient.layer from @effect/sql-pg
 * ```
 *
 * This module needs only `effect`; the driver is whatever Postgres `SqlClient` the application provides.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Result from "effect/Result"
import * as SqlClient from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { traceHeaders } from "../shared/TraceContext.js"
import type { AnyEvent, EventPayloadInvalid } from "./Catalog.js"
import {
  encodeRows,
  type EnqueueEntry,
  type EnqueueInput,
  type EnqueueItems,
  enqueueStatement,
  entryOf
} from "./Enqueue.js"

// -----------------------------------------------------------------------------------------------
// constructor
// -----------------------------------------------------------------------------------------------

/** Builds the service on the `SqlClient` in context. */
const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const enqueueMany = (
    items: ReadonlyArray<EnqueueEntry>
  ): Effect.Effect<ReadonlyArray<string>, EventPayloadInvalid | SqlError> =>
    Effect.flatMap(traceHeaders, (trace): Effect.Effect<ReadonlyArray<string>, EventPayloadInvalid | SqlError> => {
      const rows = encodeRows(items, trace)
      if (Result.isFailure(rows)) return Effect.fail(rows.failure)
      if (rows.success.eventIds.length === 0) return Effect.succeed(rows.success.eventIds)
      return Effect.as(sql.unsafe(enqueueStatement, [rows.success.json]), rows.success.eventIds)
    }).pipe(Effect.withSpan("Outbox.enqueueMany", { kind: "producer", attributes: { count: items.length } }))
  return Outbox.of({
    enqueueMany,
    enqueue: (event, input) => Effect.map(enqueueMany([entryOf(event, input)]), (ids) => ids[0]!)
  })
})

// -----------------------------------------------------------------------------------------------
// service
// -----------------------------------------------------------------------------------------------

export class Outbox extends Context.Service<Outbox, {
  /** Writes one event (in the current transaction, if any); succeeds with its event id. */
  readonly enqueue: <E extends AnyEvent>(
    event: E,
    input: EnqueueInput<E>
  ) => Effect.Effect<string, EventPayloadInvalid | SqlError>
  /** Writes events of any types in one statement; succeeds with their event ids, in order. */
  readonly enqueueMany: <const Items extends ReadonlyArray<EnqueueEntry>>(
    items: Items & EnqueueItems<Items>
  ) => Effect.Effect<ReadonlyArray<string>, EventPayloadInvalid | SqlError>
}>()("outbox-relay/events/Outbox") {
  /** The service on the application's `SqlClient` (a Postgres one). */
  static readonly layer: Layer.Layer<Outbox, never, SqlClient.SqlClient> = Layer.effect(this, make)

  /** `enqueue` of the `Outbox` in context. */
  static readonly enqueue = <E extends AnyEvent>(event: E, input: EnqueueInput<E>) =>
    Outbox.use((outbox) => outbox.enqueue(event, input))

  /** `enqueueMany` of the `Outbox` in context. */
  static readonly enqueueMany = <const Items extends ReadonlyArray<EnqueueEntry>>(items: Items & EnqueueItems<Items>) =>
    Outbox.use((outbox) => outbox.enqueueMany(items as ReadonlyArray<EnqueueEntry>))
}
