/**
 * The whole relay as layers, for `cli.ts` and for applications and tests that run the relay inside
 * their own Effect program:
 * `Layer.launch(RelayDaemon.pipe(Layer.provide(RelayConfig.layerFrom(env))))`.
 */
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { otlpTracerLayer } from "../shared/OtlpTracing.js"
import { Wakeups } from "./1-Wakeups.js"
import { LeaseBoard } from "./2-SlotLeases.js"
import { StreamPublisher } from "./4-Publish.js"
import { runLane } from "./6-Lane.js"
import { makeCrew } from "./9-HelperLanes.js"
import { AdminServer } from "./Admin.js"
import { Backpressure } from "./Backpressure.js"
import { Database } from "./Database.js"
import { Health } from "./Health.js"
import { RelayConfig } from "./RelayConfig.js"
import { Upkeep } from "./Upkeep.js"

/** What every lane shares: the pooled database statements, Redis, health, the lease board. */
export const RelayServices = Backpressure.layer.pipe(
  Layer.provideMerge(Health.layer),
  Layer.provideMerge(Layer.mergeAll(Database.layer, StreamPublisher.layer, LeaseBoard.layer))
)

/**
 * Effect's OTLP tracer for the lanes' batch spans when `RELAY_OTLP_ENDPOINT` is set; else nothing.
 * The service name is OpenTelemetry's `OTEL_SERVICE_NAME`, "outbox-relay" by default.
 */
const LaneTracing = Layer.unwrap(Effect.gen(function*() {
  const config = yield* RelayConfig
  if (config.otlpEndpoint === undefined) return Layer.empty
  const serviceName = yield* Config.String("OTEL_SERVICE_NAME").pipe(Config.withDefault("outbox-relay"), Effect.orDie)
  return otlpTracerLayer({ endpoint: config.otlpEndpoint, serviceName })
}))

/** `RELAY_CONCURRENCY` lanes, each with its own connection and slots, for as long as the layer lives. */
const Lanes = Layer.effectDiscard(
  Effect.gen(function*() {
    const config = yield* RelayConfig
    yield* Effect.logInfo("relay started").pipe(Effect.annotateLogs({
      schema: config.schema,
      streamPrefix: config.streamPrefix,
      batchSize: config.batchSize,
      lanes: config.concurrency,
      pollInterval: Duration.format(config.pollInterval)
    }))
    const crew = yield* makeCrew(config.concurrency)
    for (let lane = 0; lane < config.concurrency; lane++) {
      yield* Effect.forkScoped(runLane(lane, crew))
    }
  })
)

/** The lanes with their wake-ups, and their tracer when tracing is on (nothing else is traced). */
const WokenLanes = Lanes.pipe(Layer.provide([Wakeups.layer, LaneTracing]))

/** The lanes (woken by LISTEN/NOTIFY) and the upkeep, on top of `RelayServices`; no HTTP server. */
export const RelayLoop = Layer.mergeAll(WokenLanes, Upkeep).pipe(Layer.provideMerge(RelayServices))

/** Everything `node dist/main.js run` starts: the lanes, the upkeep and the admin HTTP server. Needs `RelayConfig`. */
export const RelayDaemon = Layer.mergeAll(WokenLanes, Upkeep, AdminServer).pipe(Layer.provideMerge(RelayServices))
