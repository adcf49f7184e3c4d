/**
 * Catalog routing: which handler takes an entry, and its payload decoded for it. Used when a consumer is
 * given `catalog` + `handlers` instead of one `handler`.
 *
 * Per entry: one Map lookup by `event_type`, then the event's decode (upgrade chain when the entry's
 * `schema_version` is older, then the schema). An entry of a type without a handler is `Unknown` (the
 * consumer acknowledges or dead-letters it, per `unknownEvents`); a payload the event refuses, or a
 * version newer than the catalog's, is `Poison` (dead-lettered with the reason, never retried).
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import type { AnyEvent, EventCatalog } from "../events/Catalog.js"
import type { ConsumedEvent } from "./Envelope.js"
import { ConsumerOptionsInvalid } from "./Errors.js"

export type AnyHandler<E, R> = (event: ConsumedEvent<any>) => Effect.Effect<void, E, R>

/**
 * A handler's promise that has not settled yet, and how to abort the handler (its `signal`) when the
 * delivery is interrupted (timeout, stop). Returned by a direct call so the consumer can settle the
 * delivery in plain JavaScript when the promise resolves.
 */
export class PendingCall {
  constructor(readonly promise: PromiseLike<void>, readonly abort: () => void) {}
}

/**
 * Waits for a pending call as an effect: fails with what the promise rejected with; an interruption
 * aborts the handler, and with `untilSettled` also waits for its promise to settle.
 */
const awaitPending = (call: PendingCall, untilSettled = false): Effect.Effect<void, unknown> =>
  Effect.tryPromise({ try: () => call.promise, catch: identity }).pipe(
    Effect.onInterrupt(() => {
      const abort = Effect.sync(call.abort)
      return untilSettled ? Effect.andThen(abort, Effect.promise(() => call.promise.then(noop, noop))) : abort
    })
  )

/** What a direct call left, as an effect: nothing, its pending promise (see `awaitPending`), or its failure. */
export const directResultAsEffect = <E>(
  result: Effect.Effect<void, E> | PendingCall | undefined,
  untilSettled = false
): Effect.Effect<void, unknown> =>
  result === undefined ? Effect.void : result instanceof PendingCall ? awaitPending(result, untilSettled) : result

const identity = <A>(a: A) => a
const noop = () => {}

/**
 * A handler's first attempt without an Effect: undefined when it finished synchronously and
 * succeeded, a `PendingCall` when it returned a promise, else the effect that fails the attempt.
 * Attached to a handler (`withDirectCall`) whose work is plain JavaScript, so the consumer runs no
 * effect for a handler that succeeds; retries still run the handler itself.
 */
export type DirectCall<E> = (event: ConsumedEvent<any>) => Effect.Effect<void, E> | PendingCall | undefined

const directCallKey = Symbol.for("outbox-relay/consumer/directCall")

/** `direct` as an Effect handler that also carries it, for `directCallOf`. */
export const withDirectCall = <E>(direct: DirectCall<E>): AnyHandler<unknown, never> =>
  Object.assign(
    (event: ConsumedEvent<any>) => Effect.suspend(() => directResultAsEffect(direct(event))),
    { [directCallKey]: direct }
  )

/** The direct call a handler carries, if any. */
export const directCallOf = <E, R>(handler: AnyHandler<E, R>): DirectCall<E> | undefined =>
  (handler as { readonly [directCallKey]?: DirectCall<E> })[directCallKey]

/** Where one entry goes. */
export type Routed<E, R> =
  | { readonly _tag: "Handle"; readonly event: ConsumedEvent<unknown>; readonly handler: AnyHandler<E, R> }
  | { readonly _tag: "Poison"; readonly reason: string }
  | { readonly _tag: "Unknown"; readonly inCatalog: boolean }

// No handler here: a type of the catalog this consumer leaves to others, or one the catalog lacks.
const unhandled = { _tag: "Unknown", inCatalog: true } as const
const unknown = { _tag: "Unknown", inCatalog: false } as const

interface Route<E, R> {
  readonly event: AnyEvent
  readonly handler: AnyHandler<E, R>
}

/**
 * The router of a catalog and its handlers; refuses a handler for a type the catalog does not have
 * (a typo would otherwise leave every entry of the real type unhandled).
 */
export const makeRouter = <E, R>(
  catalog: EventCatalog,
  handlers: { readonly [type: string]: AnyHandler<E, R> | undefined }
): Effect.Effect<(event: ConsumedEvent<unknown>) => Routed<E, R>, ConsumerOptionsInvalid> =>
  Effect.gen(function*() {
    const routes = new Map<string, Route<E, R>>()
    for (const [type, handler] of Object.entries(handlers)) {
      if (handler === undefined) continue
      const event = catalog.get(type)
      if (event === undefined) {
        return yield* new ConsumerOptionsInvalid({
          option: "handlers",
          message: `handlers.${type}: the catalog has no event of that type (it has ${
            catalog.events.map((e) => e.type).join(", ") || "none"
          })`
        })
      }
      if (typeof handler !== "function") {
        return yield* new ConsumerOptionsInvalid({ option: "handlers", message: `handlers.${type} is not a function` })
      }
      routes.set(type, { event, handler })
    }
    if (routes.size === 0) {
      return yield* new ConsumerOptionsInvalid({ option: "handlers", message: "handlers must name at least one event" })
    }
    return (entry: ConsumedEvent<unknown>): Routed<E, R> => {
      const route = routes.get(entry.eventType)
      if (route === undefined) return catalog.get(entry.eventType) === undefined ? unknown : unhandled
      const payload = route.event.decode(entry.schemaVersion, entry.payload)
      if (Result.isFailure(payload)) return { _tag: "Poison", reason: payload.failure.message }
      return { _tag: "Handle", event: { ...entry, payload: payload.success }, handler: route.handler }
    }
  })
