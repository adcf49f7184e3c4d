/**
 * The dashboard's rates: events relayed per second and the relay's latency (an event's `created_at`
 * to its XADD ack), read from this process's metrics once a second as deltas, so each point describes
 * its own interval and not the whole uptime. The last `historyLength` points feed the page's charts.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Metrics from "../relay/Metrics.js"

/** One interval's figures; latency fields are null when nothing was relayed in it. */
export interface RateSample {
  /** End of the interval, epoch milliseconds. */
  readonly at: number
  readonly relayedPerSecond: number
  readonly latencyP50: number | null
  readonly latencyP99: number | null
  readonly latencyMean: number | null
}

/** Points kept for the charts: two minutes at one a second. */
export const historyLength = 120

const sampleEvery = Schedule.spaced("1 second")

/**
 * The `q` quantile of the observations that fell between two readings of a histogram: the bucket
 * holding it from the count deltas, then linear interpolation inside the bucket. In the open last
 * bucket the histogram's maximum stands in for its upper bound. Null when nothing was observed.
 */
export const quantileBetween = (
  before: Metric.HistogramState | undefined,
  after: Metric.HistogramState,
  q: number
): number | null => {
  const deltas = after.buckets.map(([bound, count], i) => [bound, count - (before?.buckets[i]?.[1] ?? 0)] as const)
  const total = deltas[deltas.length - 1]?.[1] ?? 0
  if (total <= 0) return null
  const target = q * total
  let lowerBound = 0
  let lowerCount = 0
  for (const [bound, count] of deltas) {
    if (count >= target && count > lowerCount) {
      const upper = Number.isFinite(bound) ? bound : Math.max(after.max, lowerBound)
      return lowerBound + (upper - lowerBound) * ((target - lowerCount) / (count - lowerCount))
    }
    lowerBound = bound
    lowerCount = count
  }
  return after.max
}

/** One sample from two readings taken `seconds` apart. */
export const sampleBetween = (
  previous: { readonly relayed: number; readonly latency: Metric.HistogramState } | undefined,
  current: { readonly relayed: number; readonly latency: Metric.HistogramState },
  seconds: number,
  at: number
): RateSample => {
  const relayed = current.relayed - (previous?.relayed ?? current.relayed)
  const observed = current.latency.count - (previous?.latency.count ?? current.latency.count)
  const before = previous?.latency ?? current.latency
  return {
    at,
    relayedPerSecond: seconds > 0 ? relayed / seconds : 0,
    latencyP50: quantileBetween(before, current.latency, 0.5),
    latencyP99: quantileBetween(before, current.latency, 0.99),
    latencyMean: observed > 0 ? (current.latency.sum - before.sum) / observed : null
  }
}

/**
 * Starts sampling in the current scope and returns the recent samples, oldest first. The first
 * reading only sets the baseline, so a relay that already relayed much shows no spike at start.
 */
export const startSampling = Effect.gen(function*() {
  const history = yield* Ref.make<ReadonlyArray<RateSample>>([])
  const read = Effect.all({
    relayed: Effect.map(Metric.value(Metrics.eventsRelayed), (state) => Number(state.count)),
    latency: Metric.value(Metrics.latencySeconds),
    at: Clock.currentTimeMillis
  })
  let previous = yield* read
  const step = Effect.gen(function*() {
    const current = yield* read
    const sample = sampleBetween(previous, current, (current.at - previous.at) / 1000, current.at)
    previous = current
    yield* Ref.update(history, (samples) => [...samples.slice(-(historyLength - 1)), sample])
  })
  yield* Effect.forkScoped(Effect.repeat(step, sampleEvery))
  return Ref.get(history)
})
