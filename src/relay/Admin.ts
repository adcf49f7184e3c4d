/**
 * The admin HTTP surface: `GET /healthz` (the process is up), `GET /readyz` (Postgres and Redis
 * reachable; 503 otherwise, with the reason as JSON), `GET /metrics` (Prometheus text from
 * `effect/observability`), the operations API under `/api` and the dashboard at `/` with its live
 * feed `/api/live` (src/ops). `/readyz` also shows the slots this relay owns (with several relays).
 * Bound to `RELAY_HTTP_HOST:RELAY_HTTP_PORT` (127.0.0.1:9464 by default);
 * port 0 picks a free port, and the address is logged at start either way.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Effect from "effect/Effect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Layer from "effect/Layer"
import * as PrometheusMetrics from "effect/observability/PrometheusMetrics"
import { createServer } from "node:http"
import { ApiRoutes } from "../ops/ApiServer.js"
import { closeFeedsFirst, DashboardRoutes } from "../ops/Dashboard.js"
import { LiveFeed } from "../ops/LiveFeed.js"
import { Operations } from "../ops/Operations.js"
import { LeaseBoard } from "./2-SlotLeases.js"
import { Health } from "./Health.js"
import { RelayConfig } from "./RelayConfig.js"

const routes = HttpRouter.use(Effect.fn(function*(router) {
  const health = yield* Health
  const leases = yield* LeaseBoard
  yield* router.add("GET", "/healthz", Effect.succeed(HttpServerResponse.text("ok\n")))
  yield* router.add(
    "GET",
    "/readyz",
    Effect.map(Effect.all([health.snapshot, leases.all]), ([snapshot, lanes]) => {
      const all = [...lanes.values()]
      const slots = {
        owned: all.flatMap((lease) => lease.owned).sort((a, b) => a - b),
        lanes: all.length,
        liveRelays: Math.max(0, ...all.map((lease) => lease.liveRelays))
      }
      return HttpServerResponse.jsonUnsafe({ ...snapshot, slots }, { status: snapshot.ready ? 200 : 503 })
    })
  )
}))

const logAddress = Layer.effectDiscard(
  HttpServer.addressFormattedWith((url) =>
    Effect.flatMap(
      HttpServer.HttpServer,
      (server) =>
        Effect.logInfo("admin http server listening").pipe(Effect.annotateLogs({
          url,
          port: "port" in server.address ? server.address.port : undefined
        }))
    )
  )
)

/** The admin server, on the configured host and port. */
export const AdminServer = Layer.unwrap(Effect.gen(function*() {
  const config = yield* RelayConfig
  const server = NodeHttpServer.layer(createServer, { host: config.httpHost, port: config.httpPort })
  const api = ApiRoutes.pipe(Layer.provide(Operations.layer))
  const app = HttpRouter.serve(Layer.mergeAll(routes, PrometheusMetrics.layerHttp(), api, DashboardRoutes), {
    disableLogger: true,
    disableListenLog: true
  })
  const served = Layer.mergeAll(app, logAddress).pipe(Layer.provide(server))
  // Built after the server, so at shutdown the live feeds end before the server waits for open responses.
  return closeFeedsFirst.pipe(
    Layer.provide(served),
    Layer.provide(LiveFeed.layer.pipe(Layer.provide(Operations.layer)))
  )
}))
