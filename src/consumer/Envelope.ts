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

import { type EnvelopeField, envelopeFields } from "../shared/Envelope.js"

export { envelopeFields }

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

/** A JSON field's value; a string (the reason) when it does not parse. Absent or empty: `{}`. */
const parseJson = (text: string | undefined, field: string): { readonly value: unknown } | string => {
  // The relay writes `{}` for an event without headers: most entries, so no parse for them.
  if (text === undefined || text === "" || text === "{}") return { value: {} }
  try {
    return { value: JSON.parse(text) }
  } catch (error) {
    return `${field} is not valid JSON: ${(error as Error).message}`
  }
}

/**
 * The entry's fields in the relay's layout (`envelopeFields`, in that order, each once): their values by
 * position, with no record built; undefined for any other layout, which then goes through `fieldsToRecord`.
 */
const relayLayout = (flat: ReadonlyArray<string>): ReadonlyArray<string> | undefined => {
  if (flat.length !== envelopeFields.length * 2) return undefined
  for (let i = 0; i < envelopeFields.length; i++) if (flat[2 * i] !== envelopeFields[i]) return undefined
  return flat
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
  const inOrder = relayLayout(flat)
  const f: Partial<Record<EnvelopeField, string>> = inOrder === undefined ? fieldsToRecord(flat) : {
    event_id: inOrder[1],
    event_type: inOrder[3],
    topic: inOrder[5],
    aggregate_type: inOrder[7],
    aggregate_id: inOrder[9],
    tenant_id: inOrder[11],
    schema_version: inOrder[13],
    occurred_at: inOrder[15],
    payload: inOrder[17],
    headers: inOrder[19]
  }
  if (!f.event_id) return Result.fail("entry has no event_id field")
  if (f.event_type === undefined) return Result.fail("entry has no event_type field")
  const payload = parseJson(f.payload, "payload")
  if (typeof payload === "string") return Result.fail(payload)
  const headers = parseJson(f.headers, "headers")
  if (typeof headers === "string") return Result.fail(headers)
  if (!Predicate.isObject(headers.value)) return Result.fail("headers is not a JSON object")
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
    payload: payload.value,
    headers: headers.value as Record<string, unknown>,
    deliveryCount
  })
}
