/**
 * What a handler span would cost the consumer when the application installed no tracer: 200,000
 * `Effect.withSpan` runs (with the consumer's attributes) against the bare effect, under Effect's
 * default tracer, three rounds. The consumer skips the span in that case (src/consumer/HandlerSpan.ts).
 *
 *   node bench/diagnostics/span-cost.mjs
 */
import { Effect } from "effect"

const runs = 200_000
const event = { id: "1-0", stream: "outbox:orders", eventId: "e", eventType: "OrderPlaced", topic: "orders" }
const handler = Effect.suspend(() => Effect.void)
const inSpan = () =>
  Effect.withSpan(handler, `outbox.consume ${event.eventType}`, {
    kind: "consumer",
    root: true,
    captureStackTrace: false,
    attributes: {
      "messaging.system": "redis",
      "messaging.destination.name": event.stream,
      "messaging.message.id": event.id,
      "outbox.topic": event.topic,
      "outbox.event_type": event.eventType,
      "outbox.event_id": event.eventId,
      "outbox.delivery_count": 1
    }
  })
const many = (one) => Effect.forEach(Array.from({ length: runs }), () => Effect.exit(one()), { discard: true })
const cases = [["bare handler", many(() => handler)], ["in a span", many(inSpan)]]

for (let round = 1; round <= 3; round++) {
  for (const [name, effect] of cases) {
    const started = performance.now()
    Effect.runSync(effect)
    console.log(`round ${round}  ${name.padEnd(12)} ${((performance.now() - started) * 1000 / runs).toFixed(2)} µs`)
  }
}
