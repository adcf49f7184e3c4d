/**
 * The span a handler runs in, made only while the application has a tracer (an Effect tracer layer, or
 * `startConsumer`'s `otlpEndpoint`): with Effect's default tracer the consumer skips it, so a handler
 * costs no span and no header lookup (docs/tracing.md).
 *
 * Its parent is the producer's span, read from the entry's `headers.traceparent`, so one trace shows
 * the request that wrote the event and every handler that consumed it. An entry without one gets a
 * root span.
 */
import * as Effect from "effect/Effect"
import { parentFromHeaders } from "../shared/TraceContext.js"
import type { ConsumedEvent } from "./Envelope.js"

/** Runs `handle` (one delivery of `event`, its retries included) in a consumer span. */
export const inHandlerSpan = <A, E, R>(
  handle: Effect.Effect<A, E, R>,
  event: ConsumedEvent<unknown>,
  group: string
): Effect.Effect<A, E, R> => {
  const parent = parentFromHeaders(event.headers)
  return Effect.withSpan(handle, `outbox.consume ${event.eventType}`, {
    kind: "consumer",
    ...(parent === undefined ? { root: true } : { parent }),
    captureStackTrace: false,
    attributes: {
      "messaging.system": "redis",
      "messaging.operation.type": "process",
      "messaging.destination.name": event.stream,
      "messaging.consumer.group.name": group,
      "messaging.message.id": event.id,
      "outbox.topic": event.topic,
      "outbox.event_type": event.eventType,
      "outbox.event_id": event.eventId,
      "outbox.stream_entry_id": event.id,
      "outbox.delivery_count": event.deliveryCount
    }
  })
}
