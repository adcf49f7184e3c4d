/**
 * Redis memory backpressure. A poller reads `INFO memory` (every `RELAY_METRICS_INTERVAL`, faster
 * while paused) into the memory gauges; when `used_memory` passes `RELAY_REDIS_MAX_MEMORY_RATIO` of
 * `maxmemory` it closes the gate, and lanes stop claiming before their next batch: rows wait in
 * Postgres instead of failing on OOM over and over. The gate opens again once memory falls a little
 * below the threshold, so it does not flap (docs/production.md, Redis memory backpressure).
 *
 * A lane's check is a read of the gate's state: nothing on the hot path while it is open.
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Latch from "effect/Latch"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import type * as Option from "effect/Option"
import { type RedisMemory, StreamPublisher } from "./4-Publish.js"
import { Health } from "./Health.js"
import * as Metrics from "./Metrics.js"
import { RelayConfig } from "./RelayConfig.js"

/** Resume once usage is this much (a share of `maxmemory`) below the pause threshold. */
export const resumeMargin = 0.05

/** How often memory is read while claiming is paused, so the relay resumes soon after memory is freed. */
const pausedPoll = Duration.millis(250)

/** Whether to pause, resume or stay as is, for a memory reading; `undefined`: no change. */
export const nextState = (
  memory: RedisMemory,
  ratio: number,
  paused: boolean
): "pause" | "resume" | undefined => {
  const limited = ratio > 0 && ratio < 1 && memory.maxmemory > 0 && Number.isFinite(memory.usedMemory)
  if (!limited) return paused ? "resume" : undefined
  const share = memory.usedMemory / memory.maxmemory
  if (!paused && share >= ratio) return "pause"
  if (paused && share < ratio - resumeMargin) return "resume"
  return undefined
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`

const make = Effect.gen(function*() {
  const config = yield* RelayConfig
  const publisher = yield* StreamPublisher
  const health = yield* Health
  const gate = yield* Latch.make(true)
  yield* Metric.update(Metrics.redisBackpressure, 0)

  const poll = Effect.gen(function*() {
    const memory = yield* publisher.memory
    if (Number.isFinite(memory.usedMemory)) yield* Metric.update(Metrics.redisUsedMemoryBytes, memory.usedMemory)
    if (Number.isFinite(memory.maxmemory)) yield* Metric.update(Metrics.redisMaxmemoryBytes, memory.maxmemory)
    const change = nextState(memory, config.redisMaxMemoryRatio, !gate.isOpen())
    if (change === "pause") {
      const reason = `used_memory ${mb(memory.usedMemory)} is above ${config.redisMaxMemoryRatio * 100}% of ` +
        `maxmemory ${mb(memory.maxmemory)}; claiming paused until it falls below ` +
        `${Math.round((config.redisMaxMemoryRatio - resumeMargin) * 100)}%`
      yield* gate.close
      yield* Metric.update(Metrics.redisBackpressure, 1)
      yield* health.report("redisMemory", reason)
      yield* Effect.logWarning("redis memory high: claiming paused").pipe(Effect.annotateLogs({ reason }))
    } else if (change === "resume") {
      yield* gate.open
      yield* Metric.update(Metrics.redisBackpressure, 0)
      yield* health.report("redisMemory")
      yield* Effect.logInfo("redis memory back below the threshold: claiming again").pipe(
        Effect.annotateLogs({ usedMemory: memory.usedMemory, maxmemory: memory.maxmemory })
      )
    }
  }).pipe(Effect.ignore)

  const loop = Effect.forever(
    Effect.andThen(poll, Effect.suspend(() => Effect.sleep(gate.isOpen() ? config.metricsInterval : pausedPoll)))
  )
  yield* Effect.forkScoped(loop)

  return Backpressure.of({
    paused: () => !gate.isOpen(),
    awaitResume: (within) => Effect.timeoutOption(gate.await, within)
  })
})

export class Backpressure extends Context.Service<Backpressure, {
  /** True while Redis memory is too high to claim more rows. A plain read, for the lanes' hot path. */
  readonly paused: () => boolean
  /** Waits until claiming may resume, or `within` passes (none). */
  readonly awaitResume: (within: Duration.Duration) => Effect.Effect<Option.Option<void>>
}>()("outbox-relay/relay/Backpressure") {
  static readonly layer = Layer.effect(this, make)
}
