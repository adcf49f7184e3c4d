/**
 * The whole relay as one layer, for `main.ts` and for applications and tests that run the relay
 * inside their own Effect program: `Layer.launch(RelayDaemon.pipe(Layer.provide(RelayConfig.layerFrom(env))))`.
 */
import * as Layer from "effect/Layer"
import { AdminLive } from "./Admin.js"
import { LeaseBoard } from "./3-ClaimSession.js"
import { Database } from "./Database.js"
import { DrainLoop } from "./6-Lane.js"
import { Health } from "./Health.js"
import { Notifications } from "./1-Wakeups.js"
import { StreamPublisher } from "./4-Publish.js"

/** What every lane shares: the pooled database statements, Redis, health, the lease board. */
export const RelayServices = Health.layer.pipe(
  Layer.provideMerge(Layer.mergeAll(Database.layer, StreamPublisher.layer, LeaseBoard.layer))
)

/** The lanes with LISTEN/NOTIFY wake-ups, on top of `RelayServices` (no HTTP server). */
export const RelayLoop = DrainLoop.pipe(
  Layer.provide(Notifications.layer),
  Layer.provideMerge(RelayServices)
)

/** Everything `node dist/main.js run` starts: the lanes and the admin HTTP server. Needs `RelayConfig`. */
export const RelayDaemon = Layer.mergeAll(
  DrainLoop.pipe(Layer.provide(Notifications.layer)),
  AdminLive
).pipe(Layer.provideMerge(RelayServices))
