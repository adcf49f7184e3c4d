/**
 * Runs deliveries with bounded concurrency, optionally one at a time per aggregate, and bounds how
 * long a handler may run.
 *
 * Deliveries are grouped in *tracks*: one per aggregate (`orderByAggregate`), or one per delivery (no
 * ordering). `concurrency` long-lived worker fibers take tracks from a ready queue and handle a track's
 * deliveries one after the other, in arrival (stream) order, until it is empty. A track is in the
 * ready queue or with one worker, never both, so entries of one aggregate never overlap or overtake
 * each other, while different aggregates run in parallel. A delivery that settles in plain JavaScript
 * costs its worker no effect; one waiting for a handler's promise (`Waiting`) suspends the worker
 * once, and the deliveries after it run in that promise's `then` until one needs an effect.
 *
 * Timeouts: a worker marks when its handler started (`HandlerWatch.deadline`); a sweeper looks every
 * `timeout / 10` and interrupts a worker whose handler overran, reports that delivery as timed out,
 * and starts a fresh worker in its place. This costs nothing per message, unlike a timer per
 * delivery (docs/benchmarks.md has the consumer's measurements).
 *
 * The dispatcher also keeps the set of entries this consumer *holds* (read, not yet acknowledged):
 * the reader waits while too many are in flight (back-pressure), a second copy of a held entry (read
 * again from the pending list after a reconnect) is ignored, and the holder renews their idle time.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Latch from "effect/Latch"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import type { Delivery } from "./GroupClient.js"

/** Where a running delivery says when its handler must be done (0: not in a handler). */
export interface HandlerWatch {
  deadline: number
  timedOut: boolean
}

/**
 * A delivery whose handler returned a promise that has not settled yet. `wait` calls `done` once it
 * has: with undefined when the delivery was settled right there (its promise resolved), else with the
 * effect that settles it (a rejection: retries, dead letter). `abort` is called instead when the
 * worker is interrupted (timeout, stop): it aborts the handler's signal, and `done` is never called.
 */
export class Waiting<R> {
  constructor(
    readonly wait: (done: (rest: Effect.Effect<void, never, R> | undefined) => void) => void,
    readonly abort: () => void
  ) {}
}

/** A `Waiting` as an effect, for callers that need one (one suspension, an interruption aborts it). */
export const awaitWaiting = <R>(waiting: Waiting<R>): Effect.Effect<void, never, R> =>
  Effect.callback<void, never, R>((resume) => {
    waiting.wait((rest) => resume(rest ?? Effect.void))
    return Effect.sync(waiting.abort)
  })

/** What handling one delivery left to do: nothing (settled), an effect, or a promise to wait for. */
export type Step<R> = Effect.Effect<void, never, R> | Waiting<R> | undefined

export interface Dispatcher<R> {
  /** Queues a delivery in its track; false when the entry is already held (nothing done). */
  readonly dispatch: (delivery: Delivery) => Effect.Effect<boolean>
  /** `dispatch` for each delivery, in order, as one effect (a read's batch). */
  readonly dispatchAll: (deliveries: ReadonlyArray<Delivery>) => Effect.Effect<void>
  /** Entry ids held now. */
  readonly held: () => ReadonlyArray<string>
  readonly heldCount: () => number
  /** The entry's handler is done; it stays held until `release` (its XACK is on the way). */
  readonly finish: (id: string) => void
  /** Forgets a held entry (acknowledged, or left pending for a later delivery). */
  readonly release: (id: string) => void
  /** Waits until a whole batch fits: at most `maxInFlight - batchSize` entries in flight. */
  readonly awaitRoom: Effect.Effect<void>
  /** Starts the workers and the sweeper (in the caller's context, which the handlers need). */
  readonly start: Effect.Effect<void, never, R | Scope.Scope>
  /** No delivery starts any more; queued ones are released (they stay pending in Redis). */
  readonly close: Effect.Effect<void>
  /** Waits for the handlers running now to finish (after `close`). */
  readonly awaitRunning: Effect.Effect<void>
  /** Interrupts the handlers still running. */
  readonly interruptRunning: Effect.Effect<void>
}

export interface DispatcherOptions<R> {
  readonly concurrency: number
  readonly orderByAggregate: boolean
  /** Entries read and not yet finished, at most (the reader asks for `batchSize` at a time). */
  readonly maxInFlight: number
  readonly batchSize: number
  readonly handlerTimeoutMillis: number
  /**
   * Handles one delivery, setting `watch.deadline` while its handler runs. Never fails. Undefined when
   * it settled the delivery synchronously (nothing left to run), a `Waiting` for a pending promise.
   */
  readonly process: (delivery: Delivery, watch: HandlerWatch) => Step<R>
  /** Settles a delivery whose handler was interrupted for overrunning its deadline. */
  readonly timedOut: (delivery: Delivery) => Effect.Effect<void>
}

interface Track {
  readonly key: string
  readonly items: Array<Delivery>
}

interface Worker {
  fiber: Fiber.Fiber<void> | undefined
  readonly watch: HandlerWatch
}

/** The `aggregate_id` field of a flat field list ("" when absent). */
const aggregateOf = (fields: ReadonlyArray<string> | null): string => {
  if (fields === null) return ""
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === "aggregate_id") return fields[i + 1]!
  return ""
}

export const makeDispatcher = <R>(options: DispatcherOptions<R>): Effect.Effect<Dispatcher<R>> =>
  Effect.gen(function*() {
    // Entry id -> true while its handler has not finished, false once it waits for its XACK.
    const held = new Map<string, boolean>()
    let inFlight = 0
    const roomLimit = Math.max(0, options.maxInFlight - options.batchSize)
    // Tracks of aggregates queued or being worked on (ordered mode only).
    const tracks = new Map<string, Track>()
    const ready = yield* Queue.unbounded<Track, Cause.Done>()
    const room = yield* Latch.make(true)
    const workers = new Set<Worker>()
    let closed = false

    const finish = (id: string) => {
      if (held.get(id) !== true) return
      held.set(id, false)
      if (--inFlight <= roomLimit) room.openUnsafe()
    }
    const release = (id: string) => {
      finish(id)
      held.delete(id)
    }
    const releaseTrack = (track: Track) => {
      for (const left of track.items.splice(0)) release(left.id)
      tracks.delete(track.key)
    }

    const work = (worker: Worker) => {
      let track: Track | undefined
      let current: Delivery | undefined
      // The delivery whose promise the worker waits for, to abort it when the worker is interrupted.
      let waiting: Waiting<R> | undefined

      /** `current` is settled: its track goes on with the next delivery. */
      const advance = () => {
        current = undefined
        track!.items.shift()
      }

      /**
       * Handles deliveries in plain JavaScript while they settle without an effect: the rest of the
       * track, then tracks already queued (taken without suspending, so with synchronous handlers a
       * worker goes through a read's batch in one go). Returns what `current` still needs, or undefined
       * when nothing is ready (then `track` is undefined).
       */
      const runReady = (): Exclude<Step<R>, undefined> | undefined => {
        while (true) {
          if (track !== undefined) {
            if (track.items.length > 0 && !closed) {
              current = track.items[0]!
              const rest = options.process(current, worker.watch)
              if (rest !== undefined) return rest
              advance()
              continue
            }
            // Stopped: what is still in the track was never started; it stays pending in Redis.
            releaseTrack(track)
            track = undefined
          }
          if (closed) return undefined
          const next = Queue.takeUnsafe(ready)
          if (next === undefined || next._tag !== "Success") return undefined
          track = next.value
        }
      }

      /**
       * Waits for `first` and goes on in its `then` with the deliveries after it, as long as each
       * settles in plain JavaScript or waits for a promise: one suspension of the worker for a run of
       * async handlers, not one per message. Resumes with the effect `current` needs, or undefined
       * when nothing is ready.
       */
      const waitFor = (first: Waiting<R>) =>
        Effect.callback<Effect.Effect<void, never, R> | undefined>((resume) => {
          const done = (rest: Effect.Effect<void, never, R> | undefined) => {
            waiting = undefined
            if (rest !== undefined) return resume(Effect.succeed(rest))
            // Outside the fiber's run loop: a throw here would leave the worker waiting forever, so it
            // becomes a defect of the worker, as it would inside the loop.
            try {
              advance()
              const step = runReady()
              if (!(step instanceof Waiting)) return resume(Effect.succeed(step))
              waiting = step
              step.wait(done)
            } catch (error) {
              resume(Effect.die(error))
            }
          }
          waiting = first
          first.wait(done)
        })

      return Effect.gen(function*() {
        while (true) {
          let step = runReady()
          while (step !== undefined) {
            if (step instanceof Waiting) {
              step = yield* waitFor(step)
              continue
            }
            yield* step
            advance()
            step = runReady()
          }
          // Nothing ready: wait for a track (or the end of the queue, on stop).
          track = yield* Queue.take(ready)
        }
      }).pipe(
        Effect.onInterrupt(() =>
          Effect.gen(function*() {
            waiting?.abort()
            waiting = undefined
            workers.delete(worker)
            if (track === undefined) return
            if (!worker.watch.timedOut || closed) return releaseTrack(track)
            // The sweeper interrupted an overrunning handler: settle that delivery (unless it got
            // settled just before the interruption landed), and let the track go on in another worker.
            if (current !== undefined && track.items[0] === current) {
              track.items.shift()
              if (held.get(current.id) === true) yield* options.timedOut(current)
            }
            if (track.items.length > 0) Queue.offerUnsafe(ready, track)
            else tracks.delete(track.key)
          })
        ),
        Effect.catchCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause) : Effect.void),
        Effect.ensuring(Effect.sync(() => workers.delete(worker)))
      ) as Effect.Effect<void, never, R>
    }

    const dispatchUnsafe = (delivery: Delivery): boolean => {
      if (closed || held.has(delivery.id)) return false
      held.set(delivery.id, true)
      if (++inFlight > roomLimit) room.closeUnsafe()
      if (!options.orderByAggregate) {
        Queue.offerUnsafe(ready, { key: "", items: [delivery] })
        return true
      }
      const key = aggregateOf(delivery.fields)
      const track = tracks.get(key)
      if (track !== undefined) {
        track.items.push(delivery)
      } else {
        const fresh = { key, items: [delivery] }
        tracks.set(key, fresh)
        Queue.offerUnsafe(ready, fresh)
      }
      return true
    }
    const dispatch = (delivery: Delivery) => Effect.sync(() => dispatchUnsafe(delivery))
    const dispatchAll = (deliveries: ReadonlyArray<Delivery>) =>
      Effect.sync(() => {
        for (const delivery of deliveries) dispatchUnsafe(delivery)
      })

    const start = Effect.gen(function*() {
      const scope = yield* Scope.Scope
      const spawn = Effect.gen(function*() {
        const worker: Worker = { fiber: undefined, watch: { deadline: 0, timedOut: false } }
        workers.add(worker)
        worker.fiber = yield* Effect.forkIn(work(worker), scope)
      })
      for (let i = 0; i < options.concurrency; i++) yield* spawn
      const sweep = Effect.gen(function*() {
        const now = (yield* Clock.Clock).currentTimeMillisUnsafe()
        for (const worker of [...workers]) {
          const { watch } = worker
          if (watch.deadline === 0 || now < watch.deadline || watch.timedOut || closed) continue
          watch.timedOut = true
          worker.fiber?.interruptUnsafe()
          yield* spawn
        }
      })
      const every = Duration.millis(Math.min(1_000, Math.max(10, options.handlerTimeoutMillis / 10)))
      yield* Effect.forkIn(Effect.repeat(sweep, Schedule.spaced(every)), scope)
    })

    const fibers = () => [...workers].flatMap((worker) => worker.fiber ? [worker.fiber] : [])
    return {
      dispatch,
      dispatchAll,
      held: () => [...held.keys()],
      heldCount: () => held.size,
      finish,
      release,
      awaitRoom: room.await,
      start,
      close: Effect.gen(function*() {
        closed = true
        for (const track of yield* Queue.clear(ready)) releaseTrack(track)
        // Idle workers wake up to `Done` and exit; busy ones exit after their current delivery.
        yield* Queue.end(ready)
        // Wake a reader waiting for room so it can notice the stop.
        room.openUnsafe()
      }),
      awaitRunning: Effect.suspend(() => Fiber.awaitAll(fibers())).pipe(Effect.asVoid),
      interruptRunning: Effect.suspend(() => Fiber.interruptAll(fibers()))
    } satisfies Dispatcher<R>
  })
