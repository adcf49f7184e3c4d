/**
 * The dashboard's rates from two readings of the relay's metrics: events per second and latency
 * quantiles describe only what happened between the readings, not the whole uptime.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import { quantileBetween, sampleBetween } from "../../src/ops/LiveRates.js"

const histogram = () =>
  Metric.histogram(`test_latency_${Math.random().toString(36).slice(2)}`, {
    boundaries: Metric.exponentialBoundaries({ start: 0.0005, factor: 2, count: 18 })
  })

/** The bucket upper bounds around `value`: the quantile must land inside the bucket holding it. */
const bucketOf = (boundaries: ReadonlyArray<readonly [number, number]>, value: number) => {
  const index = boundaries.findIndex(([bound]) => value <= bound)
  return [index === 0 ? 0 : boundaries[index - 1]![0], boundaries[index]![0]] as const
}

describe("quantileBetween", () => {
  it.effect("reads only the observations made between the two readings", () =>
    Effect.gen(function*() {
      const latency = histogram()
      // Much earlier: slow events, which must not show in the later interval.
      for (let i = 0; i < 1000; i++) yield* Metric.update(latency, 5)
      const before = yield* Metric.value(latency)
      for (let i = 0; i < 98; i++) yield* Metric.update(latency, 0.003)
      yield* Metric.update(latency, 0.2)
      yield* Metric.update(latency, 0.2)
      const after = yield* Metric.value(latency)

      const p50 = quantileBetween(before, after, 0.5)!
      const [low50, high50] = bucketOf(after.buckets, 0.003)
      assert.isTrue(p50 > low50 && p50 <= high50, `p50 ${p50} outside (${low50}, ${high50}]`)
      const p99 = quantileBetween(before, after, 0.99)!
      const [low99, high99] = bucketOf(after.buckets, 0.2)
      assert.isTrue(p99 > low99 && p99 <= high99, `p99 ${p99} outside (${low99}, ${high99}]`)
    }))

  it.effect("is null when nothing was observed in between", () =>
    Effect.gen(function*() {
      const latency = histogram()
      yield* Metric.update(latency, 0.01)
      const reading = yield* Metric.value(latency)
      assert.isNull(quantileBetween(reading, reading, 0.5))
    }))

  it.effect("uses the maximum in the open last bucket", () =>
    Effect.gen(function*() {
      const latency = histogram()
      const before = yield* Metric.value(latency)
      yield* Metric.update(latency, 500)
      const after = yield* Metric.value(latency)
      const p99 = quantileBetween(before, after, 0.99)!
      assert.isTrue(p99 > after.buckets[after.buckets.length - 2]![0] && p99 <= 500, `p99 ${p99}`)
    }))
})

describe("sampleBetween", () => {
  it.effect("gives events per second and the mean latency of the interval", () =>
    Effect.gen(function*() {
      const latency = histogram()
      yield* Metric.update(latency, 1)
      const previous = { relayed: 10, latency: yield* Metric.value(latency) }
      yield* Metric.update(latency, 0.01)
      yield* Metric.update(latency, 0.03)
      const current = { relayed: 50, latency: yield* Metric.value(latency) }
      const sample = sampleBetween(previous, current, 2, 1234)
      assert.strictEqual(sample.relayedPerSecond, 20)
      assert.closeTo(sample.latencyMean!, 0.02, 1e-9)
      assert.strictEqual(sample.at, 1234)
    }))

  it.effect("starts at zero with no previous reading", () =>
    Effect.gen(function*() {
      const latency = histogram()
      yield* Metric.update(latency, 1)
      const sample = sampleBetween(undefined, { relayed: 500, latency: yield* Metric.value(latency) }, 1, 0)
      assert.strictEqual(sample.relayedPerSecond, 0)
      assert.isNull(sample.latencyP50)
      assert.isNull(sample.latencyMean)
    }))
})
