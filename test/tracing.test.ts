/**
 * One trace across the outbox: a producer's request span writes `traceparent` into the row's headers,
 * the relay's batch span links to it, and the consumer's handler span is its child. Spans are exported
 * by Effect's OTLP tracer (RELAY_OTLP_ENDPOINT, `otlpEndpoint`) to a local OTLP/HTTP receiver.
 */
import { Effect, Exit, Layer, ManagedRuntime, Scope } from "effect"
import { randomUUID } from "node:crypto"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type ConsumedEvent, startConsumer, traceHeaders } from "../src/index.js"
import { otlpTracerLayer } from "../src/shared/OtlpTracing.js"
import { makeTestEnv, relayLayer, type TestEnv } from "./support/relayHarness.js"
import { eventually } from "./support/wait.js"

interface OtlpValue {
  readonly stringValue?: string
  readonly intValue?: number | string
  readonly boolValue?: boolean
  readonly arrayValue?: { readonly values: ReadonlyArray<OtlpValue> }
}

interface ReceivedSpan {
  readonly service: string
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly kind: number
  readonly attributes: ReadonlyArray<{ readonly key: string; readonly value: OtlpValue }>
  readonly links: ReadonlyArray<{ readonly traceId: string; readonly spanId: string }>
}

/** An OTLP/HTTP receiver: POST /v1/traces with a JSON body, every span kept with its service name. */
const startReceiver = async () => {
  const spans: Array<ReceivedSpan> = []
  const contentTypes = new Set<string>()
  const server: Server = createServer((request, response) => {
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => {
      if (request.method !== "POST" || request.url !== "/v1/traces") {
        response.writeHead(404).end()
        return
      }
      contentTypes.add(request.headers["content-type"] ?? "")
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8"))
      for (const resourceSpans of body.resourceSpans ?? []) {
        const service = resourceSpans.resource?.attributes?.find((a: { key: string }) => a.key === "service.name")
          ?.value?.stringValue
        for (const scopeSpans of resourceSpans.scopeSpans ?? []) {
          for (const span of scopeSpans.spans ?? []) spans.push({ service, ...span })
        }
      }
      response.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    contentTypes,
    close: () => new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

const attribute = (span: ReceivedSpan, key: string): unknown => {
  const value = span.attributes.find((a) => a.key === key)?.value
  if (value === undefined) return undefined
  if (value.arrayValue !== undefined) return value.arrayValue.values.map((v) => v.stringValue ?? v.intValue)
  if (value.intValue !== undefined) return Number(value.intValue)
  return value.stringValue ?? value.boolValue
}

describe("trace context across the outbox", () => {
  let t: TestEnv
  let receiver: Awaited<ReturnType<typeof startReceiver>>
  beforeAll(async () => {
    receiver = await startReceiver()
    t = await makeTestEnv("tracing")
  })
  afterAll(async () => {
    await t?.dispose()
    await receiver?.close()
  })

  it("links producer → relay batch → consumer handler in one trace, with their attributes", async () => {
    const topic = "orders"
    const stream = `${t.prefix}${topic}`
    const tracedId = randomUUID()
    const plainId = randomUUID()

    // The producer: an HTTP request handler (an Effect span) writing its outbox row with a plain INSERT.
    const producer = ManagedRuntime.make(otlpTracerLayer({ endpoint: receiver.url, serviceName: "shop" }))
    const producerSpan = await producer.runPromise(
      Effect.gen(function*() {
        const headers = yield* traceHeaders
        const span = yield* Effect.currentSpan
        yield* Effect.promise(() =>
          t.sql`
            INSERT INTO outbox_events (topic, event_type, aggregate_id, payload, headers, event_id)
            VALUES (${topic}, 'OrderPlaced', 'order-1', ${t.sql.json({ total: 10 })},
                    ${t.sql.json({ ...headers, "x-request": "r-1" })}, ${tracedId})`
        )
        return { traceId: span.traceId, spanId: span.spanId, headers }
      }).pipe(Effect.withSpan("http.request", { kind: "server" }))
    )
    expect(producerSpan.headers?.traceparent).toBe(`00-${producerSpan.traceId}-${producerSpan.spanId}-01`)
    // A row written outside any span: its handler span is a root span.
    await t.sql`
      INSERT INTO outbox_events (topic, event_type, aggregate_id, payload, event_id)
      VALUES (${topic}, 'OrderPlaced', 'order-2', ${t.sql.json({ total: 20 })}, ${plainId})`

    const seen: Array<ConsumedEvent> = []
    const consumer = await startConsumer({
      redisUrl: t.redisUrl,
      stream,
      group: "mailer",
      logLevel: "error",
      otlpEndpoint: receiver.url,
      serviceName: "mailer",
      handler: (event) => {
        seen.push(event)
      }
    })
    const relayScope = Effect.runSync(Scope.make())
    await Effect.runPromise(
      Layer.buildWithScope(relayLayer({ ...t.env, RELAY_OTLP_ENDPOINT: receiver.url }), relayScope)
    )
    await eventually(() => seen.length, (n) => n === 2)
    expect(seen.map((e) => e.eventId).sort()).toEqual([tracedId, plainId].sort())
    // Stopping flushes each exporter's buffer.
    await consumer.stop()
    await Effect.runPromise(Scope.close(relayScope, Exit.void))
    await producer.dispose()

    const spans = await eventually(
      () => receiver.spans,
      (all) =>
        ["http.request", "outbox.relay batch"].every((name) => all.some((s) => s.name === name)) &&
        all.filter((s) => s.name === "outbox.consume OrderPlaced").length === 2,
      5_000
    )
    expect([...receiver.contentTypes]).toEqual(["application/json"])

    const request = spans.find((s) => s.name === "http.request")!
    expect(request).toMatchObject({ service: "shop", traceId: producerSpan.traceId, spanId: producerSpan.spanId })

    // The relay: one batch span per published batch, linked to the producer's span.
    const batches = spans.filter((s) => s.name === "outbox.relay batch")
    expect(batches.every((s) => s.service === (process.env.OTEL_SERVICE_NAME ?? "outbox-relay") && s.kind === 4)).toBe(
      true
    )
    const linked = batches.filter((s) => s.links.some((l) => l.spanId === producerSpan.spanId))
    expect(linked).toHaveLength(1)
    const batch = linked[0]!
    expect(batch.links).toEqual([
      expect.objectContaining({ traceId: producerSpan.traceId, spanId: producerSpan.spanId })
    ])
    expect(batch.traceId).not.toBe(producerSpan.traceId)
    expect(batch.parentSpanId ?? "").toBe("")
    expect(attribute(batch, "outbox.topics")).toEqual([topic])
    expect(attribute(batch, "messaging.system")).toBe("redis")
    const rowsRelayed = batches.reduce((sum, s) => sum + Number(attribute(s, "messaging.batch.message_count")), 0)
    expect(rowsRelayed).toBe(2)
    expect(batches.reduce((sum, s) => sum + Number(attribute(s, "outbox.published")), 0)).toBe(2)

    // The consumer: the handler's span is a child of the producer's span, in the producer's trace.
    const handled = spans.filter((s) => s.name === "outbox.consume OrderPlaced")
    const child = handled.find((s) => attribute(s, "outbox.event_id") === tracedId)!
    const traced = seen.find((e) => e.eventId === tracedId)!
    expect(child).toMatchObject({
      service: "mailer",
      kind: 5,
      traceId: producerSpan.traceId,
      parentSpanId: producerSpan.spanId
    })
    expect({
      topic: attribute(child, "outbox.topic"),
      eventType: attribute(child, "outbox.event_type"),
      entryId: attribute(child, "outbox.stream_entry_id"),
      stream: attribute(child, "messaging.destination.name"),
      group: attribute(child, "messaging.consumer.group.name"),
      deliveries: attribute(child, "outbox.delivery_count")
    }).toEqual({ topic, eventType: "OrderPlaced", entryId: traced.id, stream, group: "mailer", deliveries: 1 })
    // The caller's own headers travel untouched next to the trace context.
    expect(traced.headers).toEqual({ ...producerSpan.headers, "x-request": "r-1" })

    const root = handled.find((s) => attribute(s, "outbox.event_id") === plainId)!
    expect(root.parentSpanId ?? "").toBe("")
    expect(root.traceId).not.toBe(producerSpan.traceId)
  })

  it("refuses an otlpEndpoint that is not an http(s) URL", async () => {
    await expect(startConsumer({
      redisUrl: t.redisUrl,
      stream: `${t.prefix}orders`,
      group: "g",
      logLevel: "error",
      otlpEndpoint: "127.0.0.1:4318",
      handler: () => {}
    })).rejects.toMatchObject({ _tag: "ConsumerOptionsInvalid", option: "otlpEndpoint" })
  })
})
