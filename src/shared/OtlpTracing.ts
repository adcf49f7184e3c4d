/**
 * Effect's OTLP tracer, as the relay (`RELAY_OTLP_ENDPOINT`) and `startConsumer` (`otlpEndpoint`)
 * install it: OTLP/JSON over HTTP (fetch) to `<endpoint>/v1/traces`. Spans are sent in batches and
 * flushed when the layer's scope closes. Without an endpoint nothing is installed, so Effect's default
 * tracer stays and the relay and consumer skip their spans (docs/tracing.md).
 */
import * as Duration from "effect/Duration"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import * as Layer from "effect/Layer"
import type * as OtlpExporter from "effect/observability/OtlpExporter"
import * as OtlpSerialization from "effect/observability/OtlpSerialization"
import * as OtlpTracer from "effect/observability/OtlpTracer"
import * as Tracer from "effect/Tracer"

export interface OtlpTracingOptions {
  /** Base URL of the collector (`http://127.0.0.1:4318`); `/v1/traces` is appended. */
  readonly endpoint: string
  readonly serviceName: string
  /** How often buffered spans are sent. Default 1 second. */
  readonly exportInterval?: Duration.Input
}

/** The traces URL under a collector base URL (a trailing slash or an explicit `/v1/traces` is fine). */
export const tracesUrl = (endpoint: string): string => {
  const base = endpoint.replace(/\/+$/, "")
  return base.endsWith("/v1/traces") ? base : `${base}/v1/traces`
}

/** Provides the OTLP tracer as `Tracer.Tracer`; its scope closing sends what is buffered. */
export const otlpTracerLayer = (options: OtlpTracingOptions): Layer.Layer<OtlpExporter.Flusher> =>
  OtlpTracer.layer({
    url: tracesUrl(options.endpoint),
    resource: { serviceName: options.serviceName },
    exportInterval: options.exportInterval ?? Duration.seconds(1)
  }).pipe(
    Layer.provide(Layer.mergeAll(FetchHttpClient.layer, OtlpSerialization.layerJson))
  )

/** Whether the current tracer is one an application installed (not Effect's default, which exports nothing). */
export const isRealTracer = (tracer: Tracer.Tracer): boolean => tracer !== Tracer.nativeTracer
