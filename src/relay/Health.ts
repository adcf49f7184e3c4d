/**
 * What `/readyz` reports: whether Postgres and Redis answer, and whether the LISTEN connection is
 * alive. The relay loop reports every batch outcome at once; a probe fiber also pings both servers
 * every second so readiness turns green again while the relay sleeps.
 *
 * Ready means "Postgres and Redis reachable". A broken LISTEN connection does not make the relay
 * unready (the slow poll still delivers); it is shown as a detail. So is Redis memory backpressure
 * (`redisMemory`, see `Backpressure`): the relay waits on purpose, restarting it would not help.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import { StreamPublisher } from "./4-Publish.js"
import { Database } from "./Database.js"
import * as Metrics from "./Metrics.js"

export interface Component {
  readonly ok: boolean
  readonly error?: string | undefined
}

export interface HealthSnapshot {
  readonly ready: boolean
  readonly postgres: Component
  readonly redis: Component
  readonly listen: Component
  readonly redisMemory: Component
}

export type ComponentName = "postgres" | "redis" | "listen" | "redisMemory"

/** The state: every component unknown until the first report. */
const make = Effect.gen(function*() {
  const state = yield* Ref.make<Record<ComponentName, Component>>({
    postgres: { ok: false, error: "not checked yet" },
    redis: { ok: false, error: "not checked yet" },
    listen: { ok: false, error: "not connected yet" },
    redisMemory: { ok: true }
  })
  const snapshot = Ref.get(state).pipe(
    Effect.map((s): HealthSnapshot => ({ ready: s.postgres.ok && s.redis.ok, ...s }))
  )
  const update = (component: ComponentName, error?: string) =>
    Ref.update(state, (s) => ({ ...s, [component]: error === undefined ? { ok: true } : { ok: false, error } })).pipe(
      Effect.andThen(snapshot),
      Effect.flatMap((s) =>
        Effect.all([
          Metric.update(Metrics.ready, s.ready ? 1 : 0),
          Metric.update(Metrics.listenConnected, s.listen.ok ? 1 : 0)
        ])
      ),
      Effect.asVoid
    )
  // The relay reports after every batch: an unchanged state costs one read.
  const report = (component: ComponentName, error?: string) =>
    Effect.flatMap(Ref.get(state), (s) => {
      const current = s[component]
      const same = error === undefined ? current.ok : !current.ok && current.error === error
      return same ? Effect.void : update(component, error)
    })
  return Health.of({ report, snapshot })
})

export class Health extends Context.Service<Health, {
  readonly report: (component: ComponentName, error?: string) => Effect.Effect<void>
  readonly snapshot: Effect.Effect<HealthSnapshot>
}>()("outbox-relay/Health") {
  /** The state alone, without the probe. */
  static readonly layerState = Layer.effect(this, make)

  /** The state plus a probe pinging Postgres and Redis every second. */
  static readonly layer = Layer.effectDiscard(
    Effect.gen(function*() {
      const health = yield* Health
      const database = yield* Database
      const publisher = yield* StreamPublisher
      const probe = Effect.all([
        database.ping.pipe(
          Effect.matchEffect({
            onSuccess: () => health.report("postgres"),
            onFailure: (e) => health.report("postgres", e.message)
          })
        ),
        publisher.ping.pipe(
          Effect.matchEffect({
            onSuccess: () => health.report("redis"),
            onFailure: (e) => health.report("redis", e.message)
          })
        )
      ], { concurrency: 2 })
      yield* Effect.forkScoped(Effect.repeat(probe, Schedule.spaced("1 second")))
    })
  ).pipe(Layer.provideMerge(Health.layerState))
}
