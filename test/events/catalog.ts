/**
 * The catalog the event tests share: OrderPlaced at version 2 (version 1 had no currency), OrderShipped
 * at version 1 with a `Date` field (stored as an ISO string).
 */
import { Schema } from "effect"
import { defineEvent, eventCatalog } from "../../src/index.js"

export const OrderPlaced = defineEvent({
  topic: "orders",
  type: "OrderPlaced",
  version: 2,
  aggregateType: "order",
  payload: Schema.Struct({ orderId: Schema.String, total: Schema.Finite, currency: Schema.String }),
  upgrades: { 1: (v1) => ({ ...v1, currency: "EUR" }) }
})

export const OrderShipped = defineEvent({
  topic: "orders",
  type: "OrderShipped",
  aggregateType: "order",
  payload: Schema.Struct({ orderId: Schema.String, carrier: Schema.String, shippedAt: Schema.Date })
})

export const catalog = eventCatalog(OrderPlaced, OrderShipped)
