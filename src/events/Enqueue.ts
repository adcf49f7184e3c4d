/**
 * What every producer helper shares: the item a producer writes, its validation, and the one INSERT they
 * all send. Driver-free: the postgres.js, node-postgres and Effect helpers only differ in how they send
 * the statement.
 *
 * The statement takes the whole batch as one jsonb parameter (`jsonb_to_recordset`), so it is one round
 * trip for any number of events and one statement text, which drivers prepare once. A row whose
 * `event_id` is already in the table is skipped (`ON CONFLICT (event_id) DO NOTHING`): a producer retry
 * with the same `eventId` is idempotent for as long as the first row is in `outbox_events`
 * (docs/events.md, "Idempotency").
 */
import * as Result from "effect/Result"
import { randomUUID } from "node:crypto"
import { type SpanContextLike, type TraceHeaders, traceHeadersFrom, withTraceHeaders } from "../shared/TraceContext.js"
import type { AnyEvent, EventPayloadInvalid, JsonObject, PayloadOf } from "./Catalog.js"

/** One event to write, its payload typed by its definition. */
export interface EnqueueInput<E extends AnyEvent = AnyEvent> {
  /** `aggregate_id`: order is kept per aggregate. */
  readonly aggregateId: string
  readonly payload: PayloadOf<E>
  /** JSON object; a `traceparent` here wins over the one the helper adds. */
  readonly headers?: JsonObject
  /**
   * The OpenTelemetry span to continue (`trace.getSpan(context.active())?.spanContext()`): written as
   * W3C `traceparent`/`tracestate` into `headers`. The Effect helper takes the current span instead.
   */
  readonly traceContext?: SpanContextLike
  /** The idempotency key (a uuid); a random one when absent. */
  readonly eventId?: string
  /** Overrides the event's `aggregateType`. */
  readonly aggregateType?: string
  readonly tenantId?: string
}

/** One item of `enqueueMany`: the event and what `enqueue` takes for it. */
export type EnqueueEntry<E extends AnyEvent = AnyEvent> = E extends AnyEvent ? EnqueueInput<E> & { readonly event: E }
  : never

/** A list of items, each payload typed by its own item's event (events of any types in one list). */
export type EnqueueItems<Items extends ReadonlyArray<EnqueueEntry>> = {
  readonly [K in keyof Items]: EnqueueEntry<Items[K]["event"]>
}

/**
 * The insert every helper sends; `$1` is the JSON text of an array of rows (see `encodeRows`). Typed
 * as text: postgres.js would serialise a string parameter typed jsonb once more, into a JSON string.
 */
export const enqueueStatement = `INSERT INTO outbox_events
  (event_id, topic, event_type, aggregate_type, aggregate_id, tenant_id, payload, headers, schema_version)
SELECT r.event_id, r.topic, r.event_type, r.aggregate_type, r.aggregate_id, r.tenant_id, r.payload, r.headers,
       r.schema_version
FROM jsonb_to_recordset($1::text::jsonb) AS r(event_id uuid, topic text, event_type text, aggregate_type text,
  aggregate_id text, tenant_id text, payload jsonb, headers jsonb, schema_version integer)
ON CONFLICT (event_id) DO NOTHING`

/** The batch, validated and encoded: the statement's parameter and the event ids, in item order. */
export interface EncodedRows {
  readonly json: string
  readonly eventIds: ReadonlyArray<string>
}

/**
 * Validates every payload with its event's schema and builds the statement's parameter. The first
 * refused payload fails the whole batch, before anything is sent. `trace` (the current span's headers)
 * goes into every row that carries no trace context of its own.
 */
export const encodeRows = (
  items: ReadonlyArray<EnqueueEntry>,
  trace?: TraceHeaders
): Result.Result<EncodedRows, EventPayloadInvalid> => {
  const rows: Array<Record<string, unknown>> = []
  const eventIds: Array<string> = []
  for (const item of items) {
    const { event } = item
    const payload = event.encode(item.payload)
    if (Result.isFailure(payload)) return Result.fail(payload.failure)
    const eventId = item.eventId ?? randomUUID()
    eventIds.push(eventId)
    rows.push({
      event_id: eventId,
      topic: event.topic,
      event_type: event.type,
      aggregate_type: item.aggregateType ?? event.aggregateType,
      aggregate_id: item.aggregateId,
      tenant_id: item.tenantId ?? "",
      payload: payload.success,
      headers: withTraceHeaders(item.headers, item.traceContext ? traceHeadersFrom(item.traceContext) : trace),
      schema_version: event.version
    })
  }
  return Result.succeed({ json: JSON.stringify(rows), eventIds })
}

/** `enqueue`'s arguments as one `enqueueMany` item. */
export const entryOf = <E extends AnyEvent>(event: E, input: EnqueueInput<E>): EnqueueEntry =>
  ({ ...input, event }) as unknown as EnqueueEntry
