/**
 * Typed events end to end: producers write through `enqueue` (and the raw SQL contract, as an older
 * producer or another language would), the relay publishes, and consumers with catalog handlers get typed,
 * upgraded payloads. A version-1 row is upgraded to version 2; an unknown type is acknowledged and counted
 * (or dead-lettered, as chosen); a payload its schema refuses is dead-lettered with the decode error.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { randomUUID } from "node:crypto"
import { type ConsumedEvent, Consumer, enqueue, enqueueMany, prometheusText, startConsumer } from "../../src/index.js"
import { quietLogs } from "../consumer/helpers.js"
import { drained, readStream, relayLayer, testEnv } from "../support/relayHarness.js"
import { eventually } from "../support/wait.js"
import { catalog, OrderPlaced, OrderShipped } from "./catalog.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

type Placed = typeof OrderPlaced.payload.Type

describe("typed events end to end", () => {
  it.live(
    "upgrades v1 entries, acks unknown types, dead-letters bad payloads with the decode error",
    () =>
      Effect.gen(function*() {
        const t = yield* testEnv("events-e2e")
        const stream = `${t.prefix}orders`
        yield* Layer.build(relayLayer(t.env))

        const shippedAt = new Date("2026-05-06T07:08:09.000Z")
        const ids = yield* promise(() =>
          t.sql.begin(async (tx) => {
            const typed = await enqueueMany(tx, [
              {
                event: OrderPlaced,
                aggregateId: "order-1",
                payload: { orderId: "order-1", total: 10, currency: "USD" }
              },
              {
                event: OrderShipped,
                aggregateId: "order-1",
                payload: { orderId: "order-1", carrier: "dhl", shippedAt }
              }
            ])
            // What an older producer (version 1: no currency), an unknown type and a broken producer write.
            const raw = [randomUUID(), randomUUID(), randomUUID()] as const
            await tx.unsafe(
              `INSERT INTO outbox_events (event_id, topic, event_type, aggregate_id, payload, schema_version) VALUES
               ($1, 'orders', 'OrderPlaced', 'order-2', '{"orderId": "order-2", "total": 5}', 1),
               ($2, 'orders', 'OrderRefunded', 'order-1', '{"orderId": "order-1"}', 1),
               ($3, 'orders', 'OrderPlaced', 'order-3', '{"orderId": "order-3", "total": "9", "currency": "EUR"}', 2)`,
              [...raw]
            )
            return { placed: typed[0]!, shipped: typed[1]!, v1: raw[0], unknown: raw[1], bad: raw[2] }
          })
        )
        yield* promise(() => drained(t.sql))

        const placed: Array<ConsumedEvent<Placed>> = []
        const shipped: Array<Date> = []
        const consumer = yield* Effect.acquireRelease(
          promise(() =>
            startConsumer({
              redisUrl: t.redisUrl,
              stream,
              group: "billing",
              logLevel: "error",
              catalog,
              handlers: {
                OrderPlaced: async (event) => {
                  placed.push(event)
                },
                OrderShipped: (event) => {
                  shipped.push(event.payload.shippedAt)
                }
              }
            })
          ),
          (consumer) => promise(() => consumer.stop())
        )
        yield* promise(() => eventually(() => consumer.stats(), (s) => s.acked + s.skipped + s.deadLettered >= 5))

        assert.deepStrictEqual(
          placed.map((event) => [event.eventId, event.schemaVersion, event.payload]).sort(),
          [
            [ids.placed, 2, { orderId: "order-1", total: 10, currency: "USD" }],
            [ids.v1, 1, { orderId: "order-2", total: 5, currency: "EUR" }]
          ].sort()
        )
        assert.strictEqual(shipped.length, 1)
        assert.instanceOf(shipped[0], Date)
        assert.strictEqual(shipped[0]!.getTime(), shippedAt.getTime())
        assert.deepInclude(consumer.stats(), { acked: 3, skipped: 1, deadLettered: 1, failed: 0 })

        const dlq = yield* promise(() => readStream(t.redis, `{${stream}}:dlq`))
        assert.strictEqual(dlq.length, 1)
        assert.strictEqual(dlq[0]!.fields.event_id, ids.bad)
        assert.strictEqual(
          dlq[0]!.fields.reason,
          `payload refused by the catalog: OrderPlaced v2 payload field "total": Expected number`
        )
        assert.match(
          prometheusText(),
          new RegExp(`outbox_consumer_skipped_total\\{[^}]*stream="${stream}"[^}]*\\} 1`)
        )
        // Poison is never retried: the handler never saw it, and nothing is left pending.
        assert.isFalse(placed.some((event) => event.eventId === ids.bad))
        const [pending] = (yield* promise(() => t.redis.xpending(stream, "billing"))) as [number]
        assert.strictEqual(Number(pending), 0)
      }),
    60_000
  )

  it.live(
    "the Effect Consumer with unknownEvents: dead-letter sends types without a handler to the DLQ",
    () =>
      Effect.gen(function*() {
        const t = yield* testEnv("events-effect")
        const stream = `${t.prefix}orders`
        yield* Layer.build(relayLayer(t.env))
        const placedId = yield* promise(() =>
          enqueue(t.sql, OrderPlaced, { aggregateId: "o-1", payload: { orderId: "o-1", total: 1, currency: "EUR" } })
        )
        const shippedId = yield* promise(() =>
          enqueue(t.sql, OrderShipped, {
            aggregateId: "o-1",
            payload: { orderId: "o-1", carrier: "dhl", shippedAt: new Date() }
          })
        )
        yield* promise(() => drained(t.sql))

        const totals: Array<number> = []
        const context = yield* Layer.build(
          Consumer.layer({
            redisUrl: t.redisUrl,
            stream,
            group: "effect",
            catalog,
            unknownEvents: "dead-letter",
            handlers: { OrderPlaced: (event) => Effect.sync(() => totals.push(event.payload.total)) }
          }).pipe(Layer.provide(quietLogs))
        )
        const consumer = Context.get(context, Consumer)
        const stats = yield* promise(() =>
          eventually(() => Effect.runPromise(consumer.stats), (s) => s.acked + s.deadLettered >= 2)
        )
        assert.deepInclude(stats, { acked: 1, deadLettered: 1, skipped: 0 })
        assert.deepStrictEqual(totals, [1])
        const dlq = yield* promise(() => readStream(t.redis, `{${stream}}:dlq`))
        assert.deepStrictEqual(dlq.map((entry) => [entry.fields.event_id, entry.fields.reason]), [
          [shippedId, `no handler for event type "OrderShipped"`]
        ])
        assert.notStrictEqual(placedId, shippedId)
      }),
    60_000
  )

  it.live("refuses a handler for a type the catalog does not have", () =>
    Effect.gen(function*() {
      const error = yield* promise(() =>
        startConsumer({
          redisUrl: "redis://127.0.0.1:1",
          stream: "s",
          group: "g",
          logLevel: "error",
          catalog,
          handlers: { OrderPlacd: () => {} } as never
        }).then(() => undefined, (e: unknown) => e)
      )
      assert.deepInclude(error, { _tag: "ConsumerOptionsInvalid", option: "handlers" })
      assert.match((error as Error).message, /handlers.OrderPlacd: the catalog has no event of that type/)
    }))
})
