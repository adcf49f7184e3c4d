/**
 * Producer helpers for promise-based clients: write typed events inside the caller's own transaction,
 * with postgres.js (a `Sql` or the `tx` of `sql.begin`) or node-postgres (a `Client` or `PoolClient`
 * between `BEGIN` and `COMMIT`). The client is told apart by its shape (`unsafe` or `query`), so this
 * module imports neither driver and applications on one never load the other.
 *
 * ```ts
 * await sql.begin(async (tx) => {
 *   await tx`INSERT INTO orders ${tx(order)}`
 *   await enqueue(tx, OrderPlaced, { aggregateId: order.id, payload: { orderId: order.id, total, currency } })
 * })
 * ```
 *
 * Payloads are validated first: a refused one rejects with `EventPayloadInvalid` and nothing is sent.
 */
import * as Result from "effect/Result"
import type postgres from "postgres"
import type { AnyEvent } from "./Catalog.js"
import {
  encodeRows,
  type EnqueueEntry,
  type EnqueueInput,
  type EnqueueItems,
  enqueueStatement,
  entryOf
} from "./Enqueue.js"

/** What the helpers use of a node-postgres `Client` or `PoolClient` (a `Pool` runs outside your transaction). */
export interface PgQueryable {
  readonly query: (text: string, values: Array<unknown>) => Promise<unknown>
}

/** A postgres.js client or transaction, or a node-postgres client. */
export type SqlTarget = postgres.Sql<any> | postgres.TransactionSql<any> | PgQueryable

const send = (sql: SqlTarget, json: string): Promise<unknown> =>
  "unsafe" in sql && typeof sql.unsafe === "function"
    ? sql.unsafe(enqueueStatement, [json])
    : (sql as PgQueryable).query(enqueueStatement, [json])

/**
 * Writes events of any types in one statement; resolves with their event ids, in order. An event whose
 * `eventId` is already in the outbox is skipped (a producer retry is idempotent).
 */
export const enqueueMany = async <const Items extends ReadonlyArray<EnqueueEntry>>(
  sql: SqlTarget,
  items: Items & EnqueueItems<Items>
): Promise<ReadonlyArray<string>> => {
  const rows = encodeRows(items)
  if (Result.isFailure(rows)) throw rows.failure
  if (rows.success.eventIds.length > 0) await send(sql, rows.success.json)
  return rows.success.eventIds
}

/** Writes one event; resolves with its event id. */
export const enqueue = async <E extends AnyEvent>(
  sql: SqlTarget,
  event: E,
  input: EnqueueInput<E>
): Promise<string> => (await enqueueMany(sql, [entryOf(event, input)] as ReadonlyArray<EnqueueEntry>))[0]!
