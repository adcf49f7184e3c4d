/**
 * Exactly-once effects for consumers: the inbox.
 *
 * Redis delivers at least once; a consumer that dies after doing its work but before XACK gets the
 * message again. With the inbox, a handler's work runs inside a Postgres transaction (postgres.js)
 * that first inserts `(consumer_group, event_id)` into `outbox_inbox` (sql/0002_consumer_inbox.sql).
 * The row and the handler's writes commit together or not at all, so:
 * - an event already recorded is skipped (and then acknowledged as usual);
 * - two consumers that got the same event at once (a reclaim race) serialise on the row: the second
 *   insert waits for the first transaction, then finds the row and skips;
 * - a handler that fails, times out or is interrupted rolls everything back; the next delivery redoes it.
 *
 * Only writes through the transaction `sql` are covered: calls to other systems made by the handler
 * still happen at least once.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Result from "effect/Result"
import type postgres from "postgres"
import { quoteIdent } from "../relay/Statements.js"
import { describe } from "../shared/Errors.js"
import type { ConsumedEvent } from "./Envelope.js"
import { InboxUnavailable } from "./Errors.js"

export interface InboxSettings {
  /** A postgres.js client (the application's own pool is fine: one connection per running handler). */
  readonly sql: postgres.Sql<any>
  readonly group: string
  /** Schema of `outbox_inbox` (the relay's `RELAY_SCHEMA`). Default "public". */
  readonly schema?: string
}

/** What a handler run with the inbox learns: whether the event was new, and the open transaction. */
export type InboxHandler<P, E, R> = (
  event: ConsumedEvent<P>,
  sql: postgres.TransactionSql<any>
) => Effect.Effect<void, E, R>

const rollback = Symbol("inbox rollback")

/** True when (group, event_id) is already in the inbox (the event's effects were committed). */
export const isProcessed = (settings: InboxSettings, eventId: string) =>
  Effect.tryPromise({
    try: () =>
      settings.sql.unsafe(
        `SELECT 1 FROM ${
          quoteIdent(settings.schema ?? "public")
        }.outbox_inbox WHERE consumer_group = $1 AND event_id = $2`,
        [settings.group, eventId]
      ),
    catch: (cause) => new InboxUnavailable({ message: describe(cause) })
  }).pipe(Effect.map((rows) => rows.length > 0))

/**
 * Turns an inbox handler into a consumer handler: each event runs in its own transaction with the
 * inbox insert; events already recorded for the group are skipped. Interrupting the returned effect
 * (handler timeout, consumer stop) interrupts the handler and rolls the transaction back.
 */
export const withInbox = <P, E, R>(settings: InboxSettings, handler: InboxHandler<P, E, R>) => {
  const table = `${quoteIdent(settings.schema ?? "public")}.outbox_inbox`
  const insert = `INSERT INTO ${table} (consumer_group, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1`
  return (event: ConsumedEvent<P>): Effect.Effect<void, E | InboxUnavailable, R> =>
    Effect.gen(function*() {
      if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(event.eventId)) {
        return yield* Effect.die(
          new Error(`event_id ${JSON.stringify(event.eventId)} is not a uuid; the inbox needs one`)
        )
      }
      const context = yield* Effect.context<R>()
      const run = Effect.runPromiseExitWith(context)
      let handlerExit: Exit.Exit<void, E> | undefined
      const transaction = yield* Effect.tryPromise({
        try: (signal) =>
          settings.sql.begin(async (tx) => {
            const inserted = await tx.unsafe(insert, [settings.group, event.eventId])
            if (inserted.length === 0) return // already processed by this group: skip
            handlerExit = await run(Effect.suspend(() => handler(event, tx)), { signal })
            if (Exit.isFailure(handlerExit)) throw rollback
          }),
        catch: (cause) => new InboxUnavailable({ message: describe(cause) })
      }).pipe(Effect.result)
      if (handlerExit !== undefined && Exit.isFailure(handlerExit)) return yield* Effect.failCause(handlerExit.cause)
      if (Result.isFailure(transaction)) return yield* transaction.failure
    })
}
