/**
 * examples/orders end to end: the producer's POST /orders writes the order and its event in one
 * transaction, the relay publishes it, and the consumer's typed handler prints it. A refused payload is a
 * 400 naming the field with nothing written; a version-1 row written by an older producer arrives
 * upgraded.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { startExample } from "../support/examples.js"
import { relayLayer, testEnv } from "../support/relayHarness.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

const post = (url: string, body: unknown) =>
  promise(async () => {
    const response = await fetch(`${url}/orders`, { method: "POST", body: JSON.stringify(body) })
    return { status: response.status, body: (await response.json()) as Record<string, unknown> }
  })

describe("examples/orders", () => {
  it.live(
    "places orders through the producer route and prints them from the typed consumer",
    () =>
      Effect.gen(function*() {
        const t = yield* testEnv("orders-example")
        yield* Layer.build(relayLayer(t.env))
        const producer = yield* Effect.acquireRelease(
          Effect.sync(() => startExample("examples/orders/producer.mjs", { DATABASE_URL: t.databaseUrl, PORT: "0" })),
          (child) => promise(() => child.stop())
        )
        const consumer = yield* Effect.acquireRelease(
          Effect.sync(() =>
            startExample("examples/orders/consumer.mjs", { REDIS_URL: t.redisUrl, ORDERS_STREAM: `${t.prefix}orders` })
          ),
          (child) => promise(() => child.stop())
        )
        const [, url] = yield* promise(() => producer.waitFor(/listening on (http:\/\/\S+)/))
        yield* promise(() => consumer.waitFor(/ready/))

        const placed = yield* post(url!, { orderId: "order-7", total: 12.5, currency: "USD" })
        assert.strictEqual(placed.status, 201)
        assert.strictEqual(placed.body.orderId, "order-7")

        const refused = yield* post(url!, { orderId: "order-8", total: -1, currency: "USD" })
        assert.strictEqual(refused.status, 400)
        assert.strictEqual(refused.body.field, "total")
        const orders = yield* promise(() => t.sql`SELECT id FROM orders ORDER BY id`)
        assert.deepStrictEqual(orders.map((row) => row.id), ["order-7"])

        // An older producer's version-1 event (no currency) is read as version 2.
        yield* promise(() =>
          t.sql`INSERT INTO outbox_events (topic, event_type, aggregate_id, payload, schema_version)
              VALUES ('orders', 'OrderPlaced', 'order-9', '{"orderId": "order-9", "total": 3}', 1)`
        )
        yield* promise(() => consumer.waitFor(/order order-7 placed: 12\.50 USD/))
        yield* promise(() => consumer.waitFor(/order order-9 placed: 3\.00 EUR/))
        assert.notMatch(consumer.output(), /order-8/)
      }),
    60_000
  )
})
