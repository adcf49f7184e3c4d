/**
 * The dashboard's live feed (`GET /api/live`): one JSON snapshot a second as Server-Sent Events —
 * health, the outbox overview, every stream with its groups and dead letters, and the relay's rates.
 *
 * Each part is fetched on its own with a time limit: Redis or Postgres down shows as that part's
 * `error`, and the feed goes on. Snapshots are shared by every open page (cached for most of a
 * second), so more viewers do not mean more queries. A feed ends when its client goes away (the
 * server interrupts it) or when the relay shuts down (`close`), so open pages never hold up SIGTERM.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Sse from "effect/encoding/Sse"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import type { HealthSnapshot } from "../relay/Health.js"
import { Health } from "../relay/Health.js"
import { type RateSample, startSampling } from "./LiveRates.js"
import type { OutboxOverview, StreamSummary } from "./Model.js"
import { Operations } from "./Operations.js"

/** A part of the snapshot: its value, or why it is missing this time. */
export type Part<A> = { readonly ok: true; readonly value: A } | { readonly ok: false; readonly error: string }

export interface LiveGroup {
  readonly name: string
  readonly lag: number | null
  readonly pending: number
  readonly consumers: number
}

export interface LiveStream {
  readonly key: string
  readonly topic: string
  readonly length: number
  readonly lastId: string | null
  readonly deadLetters: number
  readonly groups: ReadonlyArray<LiveGroup>
}

export interface LiveSnapshot {
  readonly at: string
  readonly prefix: string
  readonly health: HealthSnapshot
  readonly outbox: Part<OutboxOverview>
  readonly streams: Part<{ readonly streams: ReadonlyArray<LiveStream>; readonly more: number }>
  readonly rates: ReadonlyArray<RateSample>
}

/** How long one part may take before the snapshot goes out without it. */
const partTimeout = "3 seconds"

/** Streams whose groups are read each second; the rest are counted in `more`. */
export const streamLimit = 50

const interval = "1 second"

const part = <A>(effect: Effect.Effect<A, { readonly error: string }>): Effect.Effect<Part<A>> =>
  effect.pipe(
    Effect.timeoutOrElse({
      duration: partTimeout,
      orElse: () => Effect.fail({ error: `no answer within ${partTimeout}` })
    }),
    Effect.match({
      onSuccess: (value): Part<A> => ({ ok: true, value }),
      onFailure: (failure): Part<A> => ({ ok: false, error: failure.error })
    })
  )

/**
 * The streams as the page lists them: one row per topic with its dead-letter count, the groups of
 * each. A topic with only a dead-letter stream (every event dead-lettered by the relay) has length 0.
 */
const liveStreams = (ops: Operations["Service"]) =>
  Effect.gen(function*() {
    const list = yield* ops.streams
    const byKey = new Map<string, StreamSummary>()
    for (const summary of list.streams) {
      const key = summary.deadLetter ? list.prefix + summary.topic : summary.key
      if (!byKey.has(key) || !summary.deadLetter) byKey.set(key, summary)
    }
    const keys = [...byKey.keys()].sort()
    const shown = keys.slice(0, streamLimit)
    const streams = yield* Effect.forEach(shown, (key) => {
      const summary = byKey.get(key)!
      const base: LiveStream = summary.deadLetter
        ? { key, topic: summary.topic, length: 0, lastId: null, deadLetters: summary.length, groups: [] }
        : {
          key,
          topic: summary.topic,
          length: summary.length,
          lastId: summary.lastId,
          deadLetters: summary.deadLetters,
          groups: []
        }
      if (summary.deadLetter || summary.groupCount === 0) return Effect.succeed(base)
      // A stream deleted between the listing and this read keeps its row without groups.
      return ops.stream(key).pipe(
        Effect.map((details): LiveStream => ({
          ...base,
          groups: details.groups.map((g) => ({
            name: g.name,
            lag: g.lag,
            pending: g.pending,
            consumers: g.consumers.length
          }))
        })),
        Effect.catchTag("NotFound", () => Effect.succeed(base))
      )
    }, { concurrency: 4 })
    return { streams, more: keys.length - shown.length }
  })

export class LiveFeed extends Context.Service<LiveFeed, {
  /** The current snapshot (at most about a second old). */
  readonly snapshot: Effect.Effect<LiveSnapshot>
  /** Server-Sent Events text: a retry hint, then a snapshot at once and one a second after. */
  readonly events: Stream.Stream<Uint8Array>
  /** Ends every open feed; the relay calls it as it shuts down, before the HTTP server waits for them. */
  readonly close: Effect.Effect<void>
}>()("outbox-relay/ops/LiveFeed") {
  static readonly layer = Layer.effect(
    LiveFeed,
    Effect.gen(function*() {
      const ops = yield* Operations
      const health = yield* Health
      const rates = yield* startSampling
      const closed = yield* Deferred.make<void>()
      const compute = Effect.gen(function*() {
        const [now, healthNow, outbox, streams, samples] = yield* Effect.all([
          Clock.currentTimeMillis,
          health.snapshot,
          part(ops.outbox),
          part(liveStreams(ops)),
          rates
        ], { concurrency: "unbounded" })
        return {
          at: new Date(now).toISOString(),
          prefix: ops.prefix,
          health: healthNow,
          outbox,
          streams,
          rates: samples
        } satisfies LiveSnapshot
      })
      const snapshot = yield* Effect.cachedWithTTL(compute, "900 millis")
      const encode = (data: LiveSnapshot) =>
        Sse.encoder.write({ _tag: "Event", event: "message", id: undefined, data: JSON.stringify(data) })
      const retry = Sse.encoder.write(new Sse.Retry({ duration: Duration.seconds(2), lastEventId: undefined }))
      const events = Stream.concat(
        Stream.make(retry),
        Stream.tick(interval).pipe(Stream.mapEffect(() => Effect.map(snapshot, encode)))
      ).pipe(Stream.interruptWhen(Deferred.await(closed)), Stream.encodeText)
      // Shutdown of the whole relay also ends the feeds, in case `close` was not called first.
      yield* Effect.addFinalizer(() => Deferred.succeed(closed, undefined))
      return LiveFeed.of({ snapshot, events, close: Deferred.succeed(closed, undefined).pipe(Effect.asVoid) })
    })
  )
}
