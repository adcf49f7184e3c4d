/**
 * Type tests: handlers and producer items are typed by their event, so a handler or payload that does not
 * match its event does not compile (`npm run typecheck` checks every `@ts-expect-error` below is needed).
 */
import type { Layer } from "effect"
import { Context, Effect, Schema } from "effect"
import { describe, expectTypeOf, it } from "vitest"
import {
  type ConsumedEvent,
  Consumer,
  defineEvent,
  enqueue,
  enqueueMany,
  eventCatalog,
  Outbox,
  startConsumer
} from "../../src/index.js"

const OrderPlaced = defineEvent({
  topic: "orders",
  type: "OrderPlaced",
  version: 2,
  payload: Schema.Struct({ orderId: Schema.String, total: Schema.Number, currency: Schema.String }),
  upgrades: { 1: (v1) => ({ ...v1, currency: "EUR" }) }
})
const OrderShipped = defineEvent({
  topic: "orders",
  type: "OrderShipped",
  payload: Schema.Struct({ orderId: Schema.String, carrier: Schema.String })
})
const catalog = eventCatalog(OrderPlaced, OrderShipped)
const options = { redisUrl: "redis://127.0.0.1:1", stream: "outbox:orders", group: "g" }
// Never called: these lines only have to compile (or fail to).
const never = false as boolean

describe("typed events (types)", () => {
  it("a handler gets its own event's payload type", () => {
    if (never) {
      void startConsumer({
        ...options,
        catalog,
        handlers: {
          OrderPlaced: (event) => {
            expectTypeOf(event.payload).toEqualTypeOf<{
              readonly orderId: string
              readonly total: number
              readonly currency: string
            }>()
          },
          OrderShipped: async (event) => {
            expectTypeOf(event.payload.carrier).toEqualTypeOf<string>()
          }
        }
      })
    }
    expectTypeOf(OrderPlaced.type).toEqualTypeOf<"OrderPlaced">()
  })

  it("rejects a handler whose parameter does not match its event", () => {
    if (never) {
      void startConsumer({
        ...options,
        catalog,
        handlers: {
          // @ts-expect-error total is a number in OrderPlaced
          OrderPlaced: (_event: ConsumedEvent<{ orderId: string; total: string }>) => {}
        }
      })
      void startConsumer({
        ...options,
        catalog,
        handlers: {
          // @ts-expect-error OrderShipped's handler cannot take OrderPlaced's payload
          OrderShipped: (_event: ConsumedEvent<{ readonly orderId: string; readonly total: number }>) => {}
        }
      })
      void startConsumer({
        ...options,
        catalog,
        // @ts-expect-error no event is named OrderPlacd
        handlers: { OrderPlacd: () => {} }
      })
      Consumer.layer({
        ...options,
        catalog,
        handlers: {
          // @ts-expect-error the Effect consumer's handlers are typed the same way
          OrderPlaced: (_event: ConsumedEvent<{ readonly orderId: number }>) => Effect.void
        }
      })
      Consumer.layer({
        ...options,
        catalog,
        // @ts-expect-error no event is named OrderPlacd
        handlers: { OrderPlacd: () => Effect.void }
      })
    }
  })

  it("the Effect consumer needs what its handlers need", () => {
    class Mailer
      extends Context.Service<Mailer, { readonly send: (total: number) => Effect.Effect<void> }>()("Mailer")
    {}
    const layer = Consumer.layer({
      ...options,
      catalog,
      handlers: { OrderPlaced: (event) => Mailer.use((mailer) => mailer.send(event.payload.total)) }
    })
    expectTypeOf<Layer.Services<typeof layer>>().toEqualTypeOf<Mailer>()
  })

  it("producer payloads are typed by their event", () => {
    const sql = { query: async () => ({}) }
    if (never) {
      void enqueue(sql, OrderPlaced, { aggregateId: "o-1", payload: { orderId: "o-1", total: 1, currency: "EUR" } })
      // @ts-expect-error currency is missing
      void enqueue(sql, OrderPlaced, { aggregateId: "o-1", payload: { orderId: "o-1", total: 1 } })
      void enqueueMany(sql, [
        { event: OrderPlaced, aggregateId: "o-1", payload: { orderId: "o-1", total: 1, currency: "EUR" } },
        { event: OrderShipped, aggregateId: "o-1", payload: { orderId: "o-1", carrier: "dhl" } }
      ])
      void enqueueMany(sql, [
        { event: OrderPlaced, aggregateId: "o-1", payload: { orderId: "o-1", total: 1, currency: "EUR" } },
        // @ts-expect-error OrderShipped's payload has no total
        { event: OrderShipped, aggregateId: "o-1", payload: { orderId: "o-1", total: 1, currency: "EUR" } }
      ])
      // @ts-expect-error total must be a number
      void Outbox.enqueue(OrderPlaced, { aggregateId: "o-1", payload: { orderId: "o-1", total: "1", currency: "EUR" } })
    }
  })
})
