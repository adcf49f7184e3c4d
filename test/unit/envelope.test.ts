/**
 * Reading a stream entry back into an event: a good entry gives every envelope field, and an entry
 * that can never be handled (no event_id, JSON that does not parse, headers that are not an object)
 * gives the reason it is poison instead of an event.
 */
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { envelopeFields, parseEnvelope } from "../../src/consumer/Envelope.js"

const entry: Record<string, string> = {
  event_id: "0f8fad5b-d9cb-469f-a165-70867728950e",
  event_type: "OrderPlaced",
  topic: "orders",
  aggregate_type: "order",
  aggregate_id: "order-42",
  tenant_id: "acme",
  schema_version: "2",
  occurred_at: "2026-01-01T00:00:00.000000Z",
  payload: "{\"total\":10}",
  headers: "{\"traceparent\":\"00-abc-def-01\"}"
}

/** The entry as Redis returns it: `[field, value, ...]`, with `changes` applied (undefined drops a field). */
const flat = (changes: Record<string, string | undefined> = {}): Array<string> =>
  Object.entries({ ...entry, ...changes }).flatMap(([field, value]) => value === undefined ? [] : [field, value])

const parse = (changes?: Record<string, string | undefined>) => parseEnvelope("outbox:orders", "1-0", flat(changes), 1)

const reason = (changes: Record<string, string | undefined>): string => {
  const result = parse(changes)
  assert.isTrue(Result.isFailure(result), "expected the entry to be refused")
  return Result.isFailure(result) ? result.failure : ""
}

describe("parseEnvelope", () => {
  it("reads every field of a good entry", () => {
    const result = parse()
    assert.isTrue(Result.isSuccess(result))
    if (!Result.isSuccess(result)) return
    assert.deepStrictEqual(result.success, {
      id: "1-0",
      stream: "outbox:orders",
      eventId: entry.event_id!,
      eventType: "OrderPlaced",
      topic: "orders",
      aggregateType: "order",
      aggregateId: "order-42",
      tenantId: "acme",
      schemaVersion: 2,
      occurredAt: "2026-01-01T00:00:00.000000Z",
      payload: { total: 10 },
      headers: { traceparent: "00-abc-def-01" },
      deliveryCount: 1
    })
  })

  it("covers exactly the fields the relay writes", () => {
    assert.deepStrictEqual(Object.keys(entry), [...envelopeFields])
  })

  it("takes defaults for the optional fields", () => {
    const result = parse({
      topic: undefined,
      aggregate_type: undefined,
      aggregate_id: undefined,
      tenant_id: undefined,
      schema_version: undefined,
      occurred_at: undefined,
      payload: "",
      headers: undefined
    })
    assert.isTrue(Result.isSuccess(result))
    if (!Result.isSuccess(result)) return
    assert.strictEqual(result.success.schemaVersion, 1)
    assert.strictEqual(result.success.aggregateId, "")
    assert.deepStrictEqual(result.success.payload, {})
    assert.deepStrictEqual(result.success.headers, {})
  })

  it("refuses an entry without event_id (or an empty one) or without event_type", () => {
    assert.strictEqual(reason({ event_id: undefined }), "entry has no event_id field")
    assert.strictEqual(reason({ event_id: "" }), "entry has no event_id field")
    assert.strictEqual(reason({ event_type: undefined }), "entry has no event_type field")
  })

  it("refuses a payload or headers that are not valid JSON, naming the field", () => {
    assert.match(reason({ payload: "{\"total\":" }), /^payload is not valid JSON: /)
    assert.match(reason({ headers: "not json" }), /^headers is not valid JSON: /)
  })

  it("refuses headers that are JSON but not an object", () => {
    for (const headers of ["[\"traceparent\"]", "\"text\"", "42", "null"]) {
      assert.strictEqual(reason({ headers }), "headers is not a JSON object", headers)
    }
  })
})
