// The orders service's events, shared by its producer (producer.mjs) and every consumer
// (consumer.mjs). Version 2 of OrderPlaced added `currency`; entries still at version 1 are upgraded
// when read, so consumers only ever see version 2.
import { Schema } from "effect"
import { defineEvent, eventCatalog } from "outbox-relay"

export const OrderPlaced = defineEvent({
  topic: "orders",
  type: "OrderPlaced",
  version: 2,
  aggregateType: "order",
  payload: Schema.Struct({
    orderId: Schema.String,
    total: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)),
    currency: Schema.String
  }),
  upgrades: { 1: (v1) => ({ ...v1, currency: "EUR" }) }
})

export const OrderCancelled = defineEvent({
  topic: "orders",
  type: "OrderCancelled",
  aggregateType: "order",
  payload: Schema.Struct({ orderId: Schema.String, reason: Schema.String })
})

export const catalog = eventCatalog(OrderPlaced, OrderCancelled)
