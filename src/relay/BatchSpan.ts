/**
 * The span of one published batch, made only while a tracer is installed (`RELAY_OTLP_ENDPOINT`).
 *
 * A batch holds rows of many requests, so the producers' spans are not its parent but its links: each
 * row whose `headers` carry a `traceparent` adds one (found by a regular expression on the JSON text,
 * not a parse), at most `maxLinks` a batch. The span ends with the batch's scope, with its outcome.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Tracer from "effect/Tracer"
import { traceparentInJson } from "../shared/TraceContext.js"
import type { OutboxRow } from "./Database.js"

/** Links a batch span keeps; the rest are counted in `outbox.links_dropped`. */
export const maxLinks = 128

/** Topics named in the span, at most; a batch of more says so in `outbox.topics_dropped`. */
const maxTopics = 32

/** The producers' spans of `rows` as links, and how many were left out. */
export const producerLinks = (rows: ReadonlyArray<OutboxRow>): { links: Array<Tracer.SpanLink>; dropped: number } => {
  const links: Array<Tracer.SpanLink> = []
  let dropped = 0
  for (const row of rows) {
    const parent = traceparentInJson(row.headers)
    if (parent === undefined) continue
    if (links.length >= maxLinks) {
      dropped++
      continue
    }
    links.push({
      span: Tracer.externalSpan({
        traceId: parent.traceId,
        spanId: parent.spanId,
        sampled: (parent.traceFlags & 1) === 1
      }),
      attributes: { "outbox.event_id": row.event_id, "outbox.event_type": row.event_type, "outbox.topic": row.topic }
    })
  }
  return { links, dropped }
}

/** Starts the span of a batch of `rows` (claimed, in id order); it ends when the batch's scope closes. */
export const startBatchSpan = (rows: ReadonlyArray<OutboxRow>): Effect.Effect<Tracer.Span, never, Scope.Scope> => {
  const topics = new Set<string>()
  for (const row of rows) topics.add(row.topic)
  const { dropped, links } = producerLinks(rows)
  const named = [...topics].slice(0, maxTopics)
  return Effect.makeSpanScoped("outbox.relay batch", {
    kind: "producer",
    root: true,
    links,
    attributes: {
      "messaging.system": "redis",
      "messaging.operation.type": "send",
      "messaging.batch.message_count": rows.length,
      "outbox.topics": named,
      ...(topics.size > named.length ? { "outbox.topics_dropped": topics.size - named.length } : {}),
      "outbox.first_id": rows[0]!.id,
      "outbox.last_id": rows[rows.length - 1]!.id,
      ...(dropped > 0 ? { "outbox.links_dropped": dropped } : {})
    }
  })
}
