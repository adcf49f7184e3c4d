/**
 * What a handler receives: one stream entry written by the relay, turned back into an event.
 *
 * The relay writes the envelope as flat fields (`envelopeFields` in src/shared/Envelope.ts; `payload` and
 * `headers` as JSON text).
 * An entry that cannot be read back (no `event_id`, JSON that does not parse) is poison: it can never
 * succeed, so it goes straight to the dead-letter stream instead of being retried.
 */
import * as Predicate from "effect/Predicate"
import * as Result from "effect/Result"

export { envelopeFields } from "../shared/Envelope.js"

/** One event as a handler sees it; `payload` is decoded by the consumer's schema when it has one. */
export interface ConsumedEvent<P = unknown> {
  /** Stream entry id (`1700000000000-0`). */
  readonly id: string
  readonly stream: string
  /** The idempotency key: dedupe by it (the inbox does). */
  readonly eventId: string
  readonly eventType: string
  readonly topic: string
  readonly aggregateType: string
  readonly aggregateId: string
  readonly tenantId: string
  readonly schemaVersion: number
  /** ISO 8601, UTC. */
  readonly occurredAt: string
  readonly payload: P
  readonly headers: Record<string, unknown>
  /** 1 on the first delivery; counts every delivery to any consumer of the group. */
  readonly deliveryCount: number
}

/** An entry as read from Redis: id and flat `[field, value, ...]` list (null when the entry was deleted). */
export interface RawEntry {
  readonly id: string
  readonly fields: ReadonlyArray<string> | null
}

/** Flat `[field, value, ...]` to a record; later duplicates win. */
export const fieldsToRecord = (flat: ReadonlyArray<string>): Record<string, string> => {
  const record: Record<string, string> = {}
  for (let i = 0; i + 1 < flat.length; i += 2) record[flat[i]!] = flat[i + 1]!
  return record
}

const parseJson = (text: string | undefined, field: string, fallback: unknown): Result.Result<unknown, string> => {
  if (text === undefined || text === "") return Result.succeed(fallback)
  try {
    return Result.succeed(JSON.parse(text))
  } catch (error) {
    return Result.fail(`${field} is not valid JSON: ${(error as Error).message}`)
  }
}

/**
 * Reads the envelope of an entry, with the payload parsed from JSON but not yet decoded by a schema.
 * Fails with the reason when the entry can never be handled.
 */
export const parseEnvelope = (
  stream: string,
  id: string,
  flat: ReadonlyArray<string>,
  deliveryCount: number
): Result.Result<ConsumedEvent<unknown>, string> => {
  const f = fieldsToRecord(flat)
  if (!f.event_id) return Result.fail("entry has no event_id field")
  if (f.event_type === undefined) return Result.fail("entry has no event_type field")
  const payload = parseJson(f.payload, "payload", {})
  if (Result.isFailure(payload)) return Result.fail(payload.failure)
  const headers = parseJson(f.headers, "headers", {})
  if (Result.isFailure(headers)) return Result.fail(headers.failure)
  const headersValue = headers.success
  if (!Predicate.isObject(headersValue)) return Result.fail("headers is not a JSON object")
  return Result.succeed({
    id,
    stream,
    eventId: f.event_id,
    eventType: f.event_type,
    topic: f.topic ?? "",
    aggregateType: f.aggregate_type ?? "",
    aggregateId: f.aggregate_id ?? "",
    tenantId: f.tenant_id ?? "",
    schemaVersion: f.schema_version === undefined ? 1 : Number(f.schema_version),
    occurredAt: f.occurred_at ?? "",
    payload: payload.success,
    headers: headersValue as Record<string, unknown>,
    deliveryCount
  })
}
