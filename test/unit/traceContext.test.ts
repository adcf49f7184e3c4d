/**
 * W3C trace context in event headers: a well-formed version-00 `traceparent` is read and written back
 * unchanged, anything else is refused (so a bad header never parents a span), a caller's own
 * `traceparent` wins over the current span's, and `tracestate` travels with its trace.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Tracer } from "effect"
import { producerLinks } from "../../src/relay/BatchSpan.js"
import type { OutboxRow } from "../../src/relay/Database.js"
import { tracesUrl } from "../../src/shared/OtlpTracing.js"
import {
  formatTraceparent,
  parentFromHeaders,
  parseTraceparent,
  traceHeaders,
  traceHeadersFrom,
  traceparentInJson,
  withTraceHeaders
} from "../../src/shared/TraceContext.js"

const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
const spanId = "00f067aa0ba902b7"
const good = `00-${traceId}-${spanId}-01`

describe("traceparent", () => {
  it("reads a version-00 header and writes it back unchanged", () => {
    assert.deepStrictEqual(parseTraceparent(good), { traceId, spanId, traceFlags: 1 })
    assert.deepStrictEqual(parseTraceparent(`00-${traceId}-${spanId}-00`), { traceId, spanId, traceFlags: 0 })
    assert.strictEqual(formatTraceparent(parseTraceparent(good)!), good)
    assert.strictEqual(formatTraceparent({ traceId, spanId, traceFlags: 3 }), `00-${traceId}-${spanId}-03`)
  })

  it("refuses malformed headers", () => {
    const bad: ReadonlyArray<unknown> = [
      undefined,
      null,
      42,
      "",
      `01-${traceId}-${spanId}-01`, // a version this code does not read
      `ff-${traceId}-${spanId}-01`,
      `00-${traceId.toUpperCase()}-${spanId}-01`, // upper case is invalid
      `00-${"0".repeat(32)}-${spanId}-01`, // all-zero trace id
      `00-${traceId}-${"0".repeat(16)}-01`, // all-zero span id
      `00-${traceId.slice(1)}-${spanId}-01`,
      `00-${traceId}-${spanId}1-01`,
      `00-${traceId}-${spanId}-1`,
      `00-${traceId}-${spanId}-0g`,
      `00-${traceId}-${spanId}-01-extra`,
      `00_${traceId}_${spanId}_01`
    ]
    for (const header of bad) assert.strictEqual(parseTraceparent(header), undefined, String(header))
    assert.strictEqual(formatTraceparent({ traceId: "0".repeat(32), spanId, traceFlags: 1 }), undefined)
    assert.strictEqual(formatTraceparent({ traceId, spanId: "xyz", traceFlags: 1 }), undefined)
    assert.strictEqual(formatTraceparent({ traceId, spanId, traceFlags: 256 }), undefined)
  })

  it("is found in a row's headers JSON text as Postgres prints it, and refused when invalid", () => {
    assert.deepStrictEqual(traceparentInJson(`{"a": 1, "traceparent": "${good}"}`), { traceId, spanId, traceFlags: 1 })
    assert.deepStrictEqual(traceparentInJson(`{"traceparent":"${good}"}`), { traceId, spanId, traceFlags: 1 })
    assert.strictEqual(traceparentInJson("{}"), undefined)
    assert.strictEqual(traceparentInJson(`{"traceparent": "00-${"0".repeat(32)}-${spanId}-01"}`), undefined)
    assert.strictEqual(traceparentInJson(`{"traceparent": 5}`), undefined)
  })
})

describe("trace headers for producers", () => {
  // A tracer other than Effect's default, as an application's OTLP or OpenTelemetry tracer would be.
  const installedTracer = Tracer.make({ span: (options) => new Tracer.NativeSpan(options) })

  it.effect("come from the current span when a tracer is installed, and are absent outside any span", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* traceHeaders, undefined)
      const [headers, span] = yield* Effect.all([traceHeaders, Effect.currentSpan]).pipe(Effect.withSpan("request"))
      assert.deepStrictEqual(headers, { traceparent: `00-${span.traceId}-${span.spanId}-01` })
    }).pipe(Effect.provideService(Tracer.Tracer, installedTracer)))

  it.effect("under Effect's default tracer, pass on only a context received from outside", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* traceHeaders.pipe(Effect.withSpan("request")), undefined, "a span exported nowhere")
      const incoming = parentFromHeaders({ traceparent: good })!
      const headers = yield* traceHeaders.pipe(
        Effect.withSpan("enqueue"),
        Effect.withSpan("request", { parent: incoming })
      )
      assert.deepStrictEqual(headers, { traceparent: good })
    }))

  it.effect("carry the tracestate of the producer's parent, read from incoming headers", () =>
    Effect.gen(function*() {
      const parent = parentFromHeaders({ traceparent: good, tracestate: "vendor=abc" })!
      assert.deepStrictEqual([parent.traceId, parent.spanId, parent.sampled], [traceId, spanId, true])
      const [headers, span] = yield* Effect.all([traceHeaders, Effect.currentSpan]).pipe(
        Effect.withSpan("handler", { parent })
      )
      assert.strictEqual(span.traceId, traceId)
      assert.deepStrictEqual(headers, { traceparent: `00-${traceId}-${span.spanId}-01`, tracestate: "vendor=abc" })
    }).pipe(Effect.provideService(Tracer.Tracer, installedTracer)))

  it("come from an OpenTelemetry span context, whose invalid (all-zero) context gives none", () => {
    assert.deepStrictEqual(
      traceHeadersFrom({ traceId, spanId, traceFlags: 1, traceState: { serialize: () => "congo=t61rcWkgMzE" } }),
      { traceparent: good, tracestate: "congo=t61rcWkgMzE" }
    )
    assert.deepStrictEqual(traceHeadersFrom({ traceId, spanId, traceFlags: 0 }), {
      traceparent: `00-${traceId}-${spanId}-00`
    })
    assert.strictEqual(traceHeadersFrom({ traceId: "0".repeat(32), spanId: "0".repeat(16), traceFlags: 0 }), undefined)
    assert.strictEqual(traceHeadersFrom(undefined), undefined)
  })

  it("never overwrite a traceparent the caller wrote", () => {
    const trace = { traceparent: good, tracestate: "a=1" }
    assert.deepStrictEqual(withTraceHeaders({ "x-request": "r-1" }, trace), { "x-request": "r-1", ...trace })
    assert.deepStrictEqual(withTraceHeaders(undefined, trace), trace)
    const own = { traceparent: `00-${"1".repeat(32)}-${"2".repeat(16)}-01` }
    assert.deepStrictEqual(withTraceHeaders(own, trace), own)
    assert.deepStrictEqual(withTraceHeaders({ a: 1 }, undefined), { a: 1 })
  })

  it("parent nothing when traceparent is missing or invalid", () => {
    assert.strictEqual(parentFromHeaders({}), undefined)
    assert.strictEqual(parentFromHeaders(null), undefined)
    assert.strictEqual(parentFromHeaders({ traceparent: `00-${traceId}-${spanId}` }), undefined)
    assert.strictEqual(parentFromHeaders({ traceparent: `00-${traceId}-${spanId}-00` })!.sampled, false)
  })
})

describe("relay batch links", () => {
  const row = (id: number, headers: string): OutboxRow => ({
    id: String(id),
    event_id: `e-${id}`,
    topic: "orders",
    event_type: "OrderPlaced",
    aggregate_type: "order",
    aggregate_id: "a",
    tenant_id: "",
    payload: "{}",
    headers,
    schema_version: 1,
    occurred_at: "",
    created_at: "",
    attempts: 0,
    slot: 0
  })

  it("link each row's producer span, skip rows without one, and cap the links", () => {
    const { dropped, links } = producerLinks([row(1, `{"traceparent": "${good}"}`), row(2, "{}")])
    assert.strictEqual(dropped, 0)
    assert.deepStrictEqual(links.map((l) => [l.span.traceId, l.span.spanId, l.attributes["outbox.event_id"]]), [
      [traceId, spanId, "e-1"]
    ])
    const many = Array.from({ length: 130 }, (_, i) => row(i, `{"traceparent": "${good}"}`))
    const capped = producerLinks(many)
    assert.deepStrictEqual([capped.links.length, capped.dropped], [128, 2])
  })
})

describe("OTLP endpoint", () => {
  it("is a collector base URL: spans go to /v1/traces under it", () => {
    assert.strictEqual(tracesUrl("http://127.0.0.1:4318"), "http://127.0.0.1:4318/v1/traces")
    assert.strictEqual(tracesUrl("https://otel.example/base/"), "https://otel.example/base/v1/traces")
    assert.strictEqual(tracesUrl("http://127.0.0.1:4318/v1/traces"), "http://127.0.0.1:4318/v1/traces")
  })
})
