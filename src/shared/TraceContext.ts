/**
 * W3C trace context (`traceparent`, `tracestate`) carried in an event's `headers`, so one trace shows
 * request → outbox → stream → handler (docs/tracing.md).
 *
 * Producers write the headers from the current Effect span (`traceHeaders`) or from an OpenTelemetry
 * span context (`traceHeadersFrom`, no OpenTelemetry dependency: any object of that shape); the
 * consumer parents its handler span on them (`parentFromHeaders`). Only version 00 is written and read.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Tracer from "effect/Tracer"

/** The header fields of a trace context, as written into an event's `headers`. */
export interface TraceHeaders {
  readonly traceparent: string
  readonly tracestate?: string
}

/** A parsed `traceparent`. */
export interface TraceParent {
  /** 32 lower-case hex digits, not all zero. */
  readonly traceId: string
  /** 16 lower-case hex digits, not all zero. */
  readonly spanId: string
  /** The trace flags byte; bit 0 is "sampled". */
  readonly traceFlags: number
}

/** What OpenTelemetry's `trace.getSpan(context)?.spanContext()` returns (the fields read here). */
export interface SpanContextLike {
  readonly traceId: string
  readonly spanId: string
  readonly traceFlags: number
  /** OpenTelemetry's `TraceState` (its `serialize()` gives the header) or the header text itself. */
  readonly traceState?: { readonly serialize: () => string } | string | undefined
}

const traceIdPattern = /^[0-9a-f]{32}$/
const spanIdPattern = /^[0-9a-f]{16}$/
const traceparentPattern = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/
const zeroTraceId = "0".repeat(32)
const zeroSpanId = "0".repeat(16)

const validIds = (traceId: string, spanId: string) =>
  traceIdPattern.test(traceId) && spanIdPattern.test(spanId) && traceId !== zeroTraceId && spanId !== zeroSpanId

/** Parses a version-00 `traceparent`; undefined for anything else (other versions, upper case, zero ids). */
export const parseTraceparent = (text: unknown): TraceParent | undefined => {
  if (typeof text !== "string") return undefined
  const match = traceparentPattern.exec(text.trim())
  if (match === null || match[1] === zeroTraceId || match[2] === zeroSpanId) return undefined
  return { traceId: match[1]!, spanId: match[2]!, traceFlags: parseInt(match[3]!, 16) }
}

/** Formats a version-00 `traceparent`; undefined when an id is malformed or all zero. */
export const formatTraceparent = (parent: TraceParent): string | undefined => {
  if (!validIds(parent.traceId, parent.spanId)) return undefined
  if (!Number.isInteger(parent.traceFlags) || parent.traceFlags < 0 || parent.traceFlags > 255) return undefined
  return `00-${parent.traceId}-${parent.spanId}-${parent.traceFlags.toString(16).padStart(2, "0")}`
}

/** The `tracestate` an external span was made with (by `parentFromHeaders`), kept for the spans under it. */
export class TraceState extends Context.Service<TraceState, string>()("outbox-relay/TraceState") {}

/** The `tracestate` of the nearest span up the chain that carries one. */
const traceStateOf = (span: Tracer.AnySpan): string | undefined => {
  for (let current: Tracer.AnySpan | undefined = span, depth = 0; current && depth < 64; depth++) {
    const state = Context.getOrUndefined(current.annotations, TraceState)
    if (state !== undefined) return state
    current = current._tag === "Span" ? Option.getOrUndefined(current.parent) : undefined
  }
  return undefined
}

/** Trace headers for a span (Effect's, or external); undefined when its ids are not W3C ids. */
export const spanTraceHeaders = (span: Tracer.AnySpan): TraceHeaders | undefined => {
  const traceparent = formatTraceparent({
    traceId: span.traceId.padStart(32, "0"),
    spanId: span.spanId,
    traceFlags: span.sampled ? 1 : 0
  })
  if (traceparent === undefined) return undefined
  const tracestate = traceStateOf(span)
  return tracestate === undefined ? { traceparent } : { traceparent, tracestate }
}

/** The nearest external span (a context received from outside, e.g. an incoming request's) up the chain. */
const externalAncestor = (span: Tracer.AnySpan): Tracer.ExternalSpan | undefined => {
  for (let current: Tracer.AnySpan | undefined = span, depth = 0; current && depth < 64; depth++) {
    if (current._tag === "ExternalSpan") return current
    current = Option.getOrUndefined(current.parent)
  }
  return undefined
}

/**
 * The trace headers for an event written now: the current span's when the application installed a
 * tracer. Under Effect's default tracer (which exports nothing) only a context received from outside is
 * passed on (an external parent span, e.g. an incoming request's `traceparent`), so no event points at
 * a span no backend will ever see. Undefined outside any span.
 */
export const traceHeaders: Effect.Effect<TraceHeaders | undefined> = Effect.gen(function*() {
  const span = yield* Effect.option(Effect.currentParentSpan)
  if (Option.isNone(span)) return undefined
  const tracer = yield* Tracer.Tracer
  if (tracer !== Tracer.nativeTracer) return spanTraceHeaders(span.value)
  const external = externalAncestor(span.value)
  return external === undefined ? undefined : spanTraceHeaders(external)
})

/**
 * Trace headers from an OpenTelemetry span context (`trace.getSpan(context)?.spanContext()`);
 * undefined when there is none or its ids are invalid (OpenTelemetry's non-recording context is all zero).
 */
export const traceHeadersFrom = (spanContext: SpanContextLike | undefined): TraceHeaders | undefined => {
  if (spanContext === undefined) return undefined
  const traceparent = formatTraceparent(spanContext)
  if (traceparent === undefined) return undefined
  const state = spanContext.traceState
  const tracestate = typeof state === "string" ? state : state?.serialize()
  return tracestate === undefined || tracestate === "" ? { traceparent } : { traceparent, tracestate }
}

/**
 * An event's headers with the trace headers added. A `traceparent` the caller wrote wins (and its
 * `tracestate` with it: the two belong to one trace), so an explicit context is never overwritten.
 */
export const withTraceHeaders = (
  headers: Readonly<Record<string, unknown>> | undefined,
  trace: TraceHeaders | undefined
): Readonly<Record<string, unknown>> => {
  if (trace === undefined || headers?.traceparent !== undefined) return headers ?? {}
  return { ...headers, ...trace }
}

/**
 * The producer's span from an event's headers, as an external span to parent a span on (it carries
 * `tracestate` as a `TraceState` annotation); undefined when `traceparent` is missing or invalid.
 */
export const parentFromHeaders = (headers: unknown): Tracer.ExternalSpan | undefined => {
  if (typeof headers !== "object" || headers === null) return undefined
  const fields = headers as Record<string, unknown>
  const parent = parseTraceparent(fields.traceparent)
  if (parent === undefined) return undefined
  const state = fields.tracestate
  return Tracer.externalSpan({
    traceId: parent.traceId,
    spanId: parent.spanId,
    sampled: (parent.traceFlags & 1) === 1,
    ...(typeof state === "string" && state !== "" ? { annotations: Context.make(TraceState, state) } : {})
  })
}

const headerTraceparent = /"traceparent"\s*:\s*"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})"/

/**
 * The producer span in a row's headers JSON text, found by a regular expression: the relay links its
 * batch span to producers without parsing every row's JSON. Undefined when there is none (or it is invalid).
 */
export const traceparentInJson = (json: string): TraceParent | undefined => {
  if (!json.includes("traceparent")) return undefined
  const match = headerTraceparent.exec(json)
  if (match === null || match[1] === zeroTraceId || match[2] === zeroSpanId) return undefined
  return { traceId: match[1]!, spanId: match[2]!, traceFlags: parseInt(match[3]!, 16) }
}
