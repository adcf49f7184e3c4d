/**
 * Runs deliveries with bounded concurrency, optionally one at a time per aggregate.
 *
 * Every delivery goes into a *lane* keyed by its aggregate (`orderByAggregate`) or by its own entry id
 * (no ordering: every delivery is a lane of one). A lane is one fiber handling its deliveries in
 * arrival order (stream order); lanes run in parallel, at most `concurrency` handlers at a time
 * (a semaphore). So entries of one aggregate never overlap and never overtake each other, while
 * different aggregates proceed in parallel.
 *
 * The dispatcher also keeps the set of entries this consumer *holds* (read, not yet finished): the
 * reader waits while it holds too many (back-pressure), a second copy of a held entry (read again
 * from the pending list after a reconnect) is ignored, and the holder renews their idle time.
 */
import { Effect, FiberSet, Latch, Scope, Semaphore } from "effect"
import type { Delivery } from "./GroupClient.js"

export interface Dispatcher<R> {
  /** Queues a delivery in its lane; false when the entry is already held (nothing done). */
  readonly dispatch: (delivery: Delivery) => Effect.Effect<boolean, never, R>
  /** Entry ids held now. */
  readonly held: () => ReadonlyArray<string>
  readonly heldCount: () => number
  /** Forgets a held entry (finished, or left pending for a later delivery). */
  readonly release: (id: string) => void
  /** Waits until there is room for `count` more entries. */
  readonly awaitRoom: Effect.Effect<void>
  /** No delivery starts any more; queued ones are released (they stay pending in Redis). */
  readonly close: Effect.Effect<void>
  /** Waits for the handlers running now to finish. */
  readonly awaitRunning: Effect.Effect<void>
  /** Interrupts the handlers still running. */
  readonly interruptRunning: Effect.Effect<void>
}

export interface DispatcherOptions<R> {
  readonly concurrency: number
  readonly orderByAggregate: boolean
  /** Deliveries held at most before the reader waits. */
  readonly maxHeld: number
  /** Handles one delivery; never fails (outcomes are the handler's business). */
  readonly process: (delivery: Delivery) => Effect.Effect<void, never, R>
}

/** The `aggregate_id` field of a flat field list ("" when absent). */
const aggregateOf = (fields: ReadonlyArray<string> | null): string => {
  if (fields === null) return ""
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === "aggregate_id") return fields[i + 1]!
  return ""
}

export const makeDispatcher = <R>(options: DispatcherOptions<R>): Effect.Effect<Dispatcher<R>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const held = new Map<string, Delivery>()
    const lanes = new Map<string, Array<Delivery>>()
    const semaphore = yield* Semaphore.make(options.concurrency)
    const room = yield* Latch.make(true)
    const fibers = yield* FiberSet.make<void, never>()
    let closed = false

    const release = (id: string) => {
      held.delete(id)
      if (held.size < options.maxHeld) room.openUnsafe()
    }

    const runLane = (key: string, queue: Array<Delivery>): Effect.Effect<void, never, R> =>
      Effect.gen(function*() {
        while (queue.length > 0 && !closed) {
          const next = queue[0]!
          // Checked again once a permit is free: a stop may have come while this lane waited.
          yield* semaphore.withPermit(Effect.suspend(() => closed ? Effect.void : options.process(next)))
          queue.shift()
        }
      }).pipe(Effect.ensuring(Effect.sync(() => {
        // Stopped (or interrupted): what is still queued is not finished; it stays pending in Redis.
        for (const left of queue.splice(0)) release(left.id)
        lanes.delete(key)
      })))

    const dispatch = (delivery: Delivery): Effect.Effect<boolean, never, R> =>
      Effect.suspend(() => {
        if (closed || held.has(delivery.id)) return Effect.succeed(false)
        held.set(delivery.id, delivery)
        if (held.size >= options.maxHeld) room.closeUnsafe()
        const key = options.orderByAggregate ? `a:${aggregateOf(delivery.fields)}` : `e:${delivery.id}`
        const lane = lanes.get(key)
        if (lane !== undefined) {
          lane.push(delivery)
          return Effect.succeed(true)
        }
        const queue = [delivery]
        lanes.set(key, queue)
        return FiberSet.run(fibers, runLane(key, queue)).pipe(Effect.as(true))
      })

    return {
      dispatch,
      held: () => [...held.keys()],
      heldCount: () => held.size,
      release,
      awaitRoom: room.await,
      close: Effect.sync(() => {
        closed = true
        // Wake a reader waiting for room so it can notice the stop.
        room.openUnsafe()
      }),
      awaitRunning: FiberSet.awaitEmpty(fibers),
      interruptRunning: FiberSet.clear(fibers)
    } satisfies Dispatcher<R>
  })
