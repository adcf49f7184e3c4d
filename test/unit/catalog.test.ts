/**
 * The catalog without servers: encode for writing, decode and upgrade for reading, the listing, and
 * definitions that cannot work.
 */
import { Result, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { defineEvent, eventCatalog, EventPayloadInvalid } from "../../src/index.js"
import { catalog, OrderPlaced, OrderShipped } from "../events/catalog.js"

const failure = <A, E>(result: Result.Result<A, E>): E => {
  if (Result.isSuccess(result)) throw new Error(`expected a failure, got ${JSON.stringify(result.success)}`)
  return result.failure
}
const success = <A, E>(result: Result.Result<A, E>): A => {
  if (Result.isFailure(result)) throw new Error(`expected a success, got ${String(result.failure)}`)
  return result.success
}

describe("defineEvent", () => {
  it("encodes a payload to its stored JSON form and decodes it back", () => {
    const shippedAt = new Date("2026-01-02T03:04:05.000Z")
    const stored = success(OrderShipped.encode({ orderId: "o-1", carrier: "dhl", shippedAt }))
    expect(stored).toEqual({ orderId: "o-1", carrier: "dhl", shippedAt: "2026-01-02T03:04:05.000Z" })
    const decoded = success(OrderShipped.decode(1, JSON.parse(JSON.stringify(stored))))
    expect(decoded.shippedAt).toBeInstanceOf(Date)
    expect(decoded.shippedAt.getTime()).toBe(shippedAt.getTime())
  })

  it("refuses a bad payload with a typed error naming the field", () => {
    const error = failure(OrderPlaced.encode({ orderId: "o-1", total: "10", currency: "EUR" }))
    expect(error).toBeInstanceOf(EventPayloadInvalid)
    expect(error).toMatchObject({ _tag: "EventPayloadInvalid", eventType: "OrderPlaced", version: 2, field: "total" })
    expect(error.message).toContain(`field "total"`)
    const nested = defineEvent({
      topic: "t",
      type: "Nested",
      payload: Schema.Struct({ items: Schema.Array(Schema.Struct({ sku: Schema.String })) })
    })
    expect(failure(nested.encode({ items: [{ sku: "a" }, { sku: 2 }] })).field).toBe("items.1.sku")
    expect(failure(OrderPlaced.decode(2, { orderId: "o-1", currency: "EUR" })).field).toBe("total")
  })

  it("upgrades older versions through the chain before decoding", () => {
    const ThreeVersions = defineEvent({
      topic: "orders",
      type: "OrderPlaced3",
      version: 3,
      payload: Schema.Struct({
        orderId: Schema.String,
        amount: Schema.Struct({ value: Schema.Number, currency: Schema.String })
      }),
      upgrades: {
        1: (v1) => ({ ...v1, currency: "EUR" }),
        2: ({ total, currency, ...rest }) => ({ ...rest, amount: { value: total, currency } })
      }
    })
    const expected = { orderId: "o-1", amount: { value: 5, currency: "EUR" } }
    expect(success(ThreeVersions.decode(1, { orderId: "o-1", total: 5 }))).toEqual(expected)
    expect(success(ThreeVersions.decode(2, { orderId: "o-1", total: 5, currency: "EUR" }))).toEqual(expected)
    expect(success(ThreeVersions.decode(3, expected))).toEqual(expected)
    expect(success(OrderPlaced.decode(1, { orderId: "o-1", total: 5 }))).toEqual({
      orderId: "o-1",
      total: 5,
      currency: "EUR"
    })
  })

  it("refuses versions it cannot read: newer than the definition, older than its upgrades, not a version", () => {
    expect(failure(OrderPlaced.decode(3, { orderId: "o-1", total: 1, currency: "EUR" })).message).toContain(
      "newer than the catalog's 2"
    )
    const NoUpgrades = defineEvent({ topic: "t", type: "V2", version: 2, payload: Schema.Struct({}) })
    expect(failure(NoUpgrades.decode(1, {})).message).toContain("no upgrade from version 1")
    expect(failure(OrderPlaced.decode(Number.NaN, {})).message).toContain("is not a version")
  })

  it("reports an upgrade that throws as a failure of that entry", () => {
    const Throwing = defineEvent({
      topic: "t",
      type: "Throwing",
      version: 2,
      payload: Schema.Struct({}),
      upgrades: {
        1: () => {
          throw new Error("boom")
        }
      }
    })
    expect(failure(Throwing.decode(1, {})).message).toContain("upgrade to version 2 failed: boom")
  })

  it("refuses definitions that cannot work", () => {
    const payload = Schema.Struct({})
    expect(() => defineEvent({ topic: "t", type: "A", version: 0, payload })).toThrow(/version must be an integer/)
    expect(() => defineEvent({ topic: "t", type: "A", version: 2, payload, upgrades: { 2: (p) => p } })).toThrow(
      /upgrades\[2\]/
    )
    expect(() => defineEvent({ topic: "t", type: "A", version: 3, payload, upgrades: { 1: (p) => p } })).toThrow(
      /leads to version 2, which has no upgrade/
    )
    const stringPayload = defineEvent({ topic: "t", type: "S", payload: Schema.String })
    expect(failure(stringPayload.encode("x")).message).toContain("JSON object")
  })
})

describe("eventCatalog", () => {
  it("lists every event with its version, upgrades and payload JSON Schema", () => {
    const listed = catalog.list()
    expect(listed.map((e) => [e.topic, e.type, e.version, e.aggregateType, e.upgradesFrom])).toEqual([
      ["orders", "OrderPlaced", 2, "order", [1]],
      ["orders", "OrderShipped", 1, "order", []]
    ])
    expect(listed[0]!.payloadSchema).toMatchObject({
      $schema: "https://json-schema.org/draft/2020-12/schema",
      type: "object",
      properties: { orderId: { type: "string" }, total: { type: "number" }, currency: { type: "string" } },
      required: ["orderId", "total", "currency"]
    })
    expect(JSON.parse(JSON.stringify(listed))).toEqual(listed)
  })

  it("finds events by type and refuses two events of one name", () => {
    expect(catalog.get("OrderShipped")).toBe(OrderShipped)
    expect(catalog.get("Nope")).toBeUndefined()
    expect(() => eventCatalog(OrderPlaced, { ...OrderShipped, type: "OrderPlaced" })).toThrow(/two events are named/)
  })
})
