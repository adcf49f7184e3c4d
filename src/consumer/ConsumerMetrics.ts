/**
 * Every metric a consumer exports, labelled by `stream` and `group`, and the ways to serve them.
 *
 * The series live in Effect's metric registry of the consumer's context: the process-wide default
 * one unless an Effect application provides its own `Metric.MetricRegistry`. So `prometheusText()`
 * (or `PrometheusMetrics.layerHttp` in an Effect app) shows every consumer of the process, whether
 * started with `startConsumer` (its own runtime) or `Consumer.layer`. Consumers of the same stream
 * and group in one process add up into the same series.
 *
 * Per delivery, the cost is a few counter and histogram updates; the group's lag and pending count
 * come from `XINFO GROUPS`, polled every `groupPollEvery` by each consumer.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as PrometheusMetrics from "effect/observability/PrometheusMetrics"
import * as Schedule from "effect/Schedule"
import { createServer } from "node:http"
import type { GroupInfo } from "./GroupClient.js"

/** How often a consumer reads its group's lag and pending count (`XINFO GROUPS`). */
export const groupPollEvery = Schedule.spaced("5 seconds")

/** Handler durations: 1 ms up to about 65 s. */
const handlerBoundaries = Metric.exponentialBoundaries({ start: 0.001, factor: 2, count: 18 })

/** What a consumer reports, bound to its stream, group and context. */
export interface ConsumerMetrics {
  /** A delivery's handler finished (retries included): acknowledged when `ok`, else failed. */
  readonly handled: (ok: boolean, seconds: number) => void
  /** A handler attempt is being retried within its delivery. */
  readonly retried: () => void
  readonly deadLettered: () => void
  /** An entry acknowledged without a handler (catalog mode, no handler for its type). */
  readonly skipped: () => void
  /** Entries taken over from idle consumers (`XAUTOCLAIM`). */
  readonly reclaimed: (count: number) => void
  /** Entries this consumer holds now (read, not acknowledged yet); 0 when it stops. */
  readonly inFlight: (held: number) => void
  /** The group's row of `XINFO GROUPS` (undefined: no stream or group yet). */
  readonly group: (info: GroupInfo | undefined) => void
}

/** The consumer's metrics, labelled with its stream and group, in the registry of the current context. */
export const makeConsumerMetrics = (stream: string, group: string): Effect.Effect<ConsumerMetrics> =>
  Effect.map(Effect.context<never>(), (context) => {
    const attributes = { stream, group }
    const counter = (name: string, description: string) =>
      Metric.counter(name, { description, attributes, incremental: true })
    const gauge = (name: string, description: string) => Metric.gauge(name, { description, attributes })
    const processed = counter("outbox_consumer_processed_total", "Deliveries whose handler succeeded (acknowledged)")
    const failed = counter("outbox_consumer_failed_total", "Deliveries whose handler failed or timed out")
    const retried = counter("outbox_consumer_retried_total", "Handler attempts retried within a delivery")
    const deadLettered = counter("outbox_consumer_dead_lettered_total", "Messages copied to {<stream>}:dlq and acked")
    const skipped = counter(
      "outbox_consumer_skipped_total",
      "Entries acknowledged without a handler (event type not in the consumer's catalog handlers)"
    )
    const reclaimed = counter("outbox_consumer_reclaimed_total", "Entries taken over from idle consumers")
    const handlerSeconds = Metric.histogram("outbox_consumer_handler_seconds", {
      description: "Time a delivery's handler took, retries included",
      attributes,
      boundaries: handlerBoundaries
    })
    const inFlight = gauge("outbox_consumer_in_flight", "Entries held by consumers: read, not acknowledged yet")
    const lag = gauge("outbox_consumer_group_lag", "Entries in the stream not delivered to the group yet")
    const pending = gauge("outbox_consumer_group_pending", "Entries delivered to the group, not acknowledged")
    // This consumer's share of the in-flight gauge, added as deltas so consumers of one group add up.
    let held = 0
    return {
      handled: (ok, seconds) => {
        ;(ok ? processed : failed).updateUnsafe(1, context)
        handlerSeconds.updateUnsafe(seconds, context)
      },
      retried: () => retried.updateUnsafe(1, context),
      deadLettered: () => deadLettered.updateUnsafe(1, context),
      skipped: () => skipped.updateUnsafe(1, context),
      reclaimed: (count) => reclaimed.updateUnsafe(count, context),
      inFlight: (now) => {
        inFlight.modifyUnsafe(now - held, context)
        held = now
      },
      group: (info) => {
        if (info === undefined) return
        pending.updateUnsafe(info.pending, context)
        // Unknown lag (after XDEL or XSETID) leaves the last value rather than reporting 0.
        if (info.lag !== null) lag.updateUnsafe(info.lag, context)
      }
    }
  })

/**
 * The Prometheus exposition text of every metric in the process's default registry: every consumer's
 * (and the relay's, when it runs in the same process). For an Express or `node:http` handler:
 *
 * ```js
 * app.get("/metrics", (req, res) => res.type("text/plain; version=0.0.4").send(prometheusText()))
 * ```
 */
export const prometheusText = (): string => PrometheusMetrics.formatUnsafe(Context.empty())

/**
 * A small HTTP server with `GET /metrics` (Prometheus text), for as long as the layer lives; host
 * 127.0.0.1 unless given, port 0 picks a free one. `startConsumer` starts it with `metricsPort`.
 */
export const metricsServer = (options: { readonly port: number; readonly host?: string | undefined }) =>
  HttpRouter.serve(PrometheusMetrics.layerHttp(), { disableLogger: true, disableListenLog: true }).pipe(
    Layer.provideMerge(NodeHttpServer.layer(createServer, { host: options.host ?? "127.0.0.1", port: options.port }))
  )
