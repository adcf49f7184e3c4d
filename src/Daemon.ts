/**
 * The whole relay as one layer, for `main.ts` and for applications and tests that run the relay
 * inside their own Effect program: `Layer.launch(RelayDaemon.pipe(Layer.provide(RelayConfig.layerFrom(env))))`.
 */
import { Layer } from "effect"
import { AdminLive } from "./Admin.js"
import { Database } from "./Database.js"
import { DrainLoop } from "./DrainLoop.js"
import { Health } from "./Health.js"
import { Notifications } from "./Notifications.js"
import { Relay } from "./Relay.js"
import { StreamPublisher } from "./StreamPublisher.js"
import { WakeState } from "./WakeState.js"

/** Database, Redis, health probe and relay, without the loop or the HTTP server. */
export const RelayServices = Relay.layer.pipe(
  Layer.provideMerge(Health.layer),
  Layer.provideMerge(Layer.mergeAll(Database.layer, StreamPublisher.layer))
)

/** The relay loop with LISTEN/NOTIFY wake-ups, on top of `RelayServices`. */
export const RelayLoop = DrainLoop.pipe(
  Layer.provide(Layer.mergeAll(Notifications.layer, WakeState.layer)),
  Layer.provideMerge(RelayServices)
)

/** Everything `node dist/main.js run` starts: the loop and the admin HTTP server. Needs `RelayConfig`. */
export const RelayDaemon = Layer.mergeAll(
  DrainLoop.pipe(Layer.provide(Layer.mergeAll(Notifications.layer, WakeState.layer))),
  AdminLive
).pipe(Layer.provideMerge(RelayServices))
