/**
 * The first stage: `outbox_events` notifications (LISTEN) become wake-ups for the lanes.
 *
 * pg-listen holds a dedicated connection. Three things keep it honest:
 * - After every (re)connect a wake-up is emitted, so whatever was committed while the connection was
 *   down is relayed at once instead of waiting for the slow poll.
 * - Every `RELAY_LISTEN_CHECK_INTERVAL` the connection proves it is alive: it sends a NOTIFY on a
 *   channel of its own and must receive it back within `RELAY_LISTEN_CHECK_TIMEOUT`. That round trip
 *   checks more than `pg_listening_channels()` could (pg-listen does not hand out its client for
 *   arbitrary queries anyway): the socket, the session and the delivery of notifications.
 * - Any failure (error event, failed check, failed connect) closes the subscriber and opens a new
 *   one with backoff, for ever.
 *
 * Wake-ups coalesce: each lane's queue holds at most one, so a burst of commits costs one drain. The slow
 * poll (`RELAY_POLL_INTERVAL`) is the lane's own timer, in `Lane`. The receipt times of notifications
 * are also kept (`NotificationTimes`), for the estimate of when a claimed row committed (`CommitEstimate`).
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { randomBytes } from "node:crypto"
import pgListen from "pg-listen"
import { describe } from "../shared/Errors.js"
import { listenReconnectDelay } from "../shared/Retry.js"
import { postgresTarget } from "../shared/Tls.js"
import { NotificationTimes, preciseMillis } from "./CommitEstimate.js"
import { Health } from "./Health.js"
import { RelayConfig } from "./RelayConfig.js"

/** Why the relay was woken. */
export type Wakeup = "notification" | "connected"

/** The channel the insert trigger notifies (see sql/0001_outbox.sql). */
export const channel = "outbox_events"

// pg-listen is CommonJS with an `exports.default`.
const createSubscriber = pgListen.default

class ListenFailed extends Schema.TaggedError<ListenFailed>()("ListenFailed", {
  message: Schema.String
}) {}

/** The LISTEN connection, supervised for as long as the scope lives. */
const make = Effect.gen(function*() {
  const config = yield* RelayConfig
  const health = yield* Health
  const subscribers = new Set<Queue.Queue<Wakeup>>()
  const wake = (reason: Wakeup) => {
    for (const queue of subscribers) Queue.offerUnsafe(queue, reason)
  }
  const subscribe = Effect.acquireRelease(
    Effect.tap(Queue.sliding<Wakeup>(1), (queue) => Effect.sync(() => subscribers.add(queue))),
    (queue) => Effect.sync(() => subscribers.delete(queue))
  )
  const target = postgresTarget(Redacted.value(config.listenDatabaseUrl), config.databaseCa)
  const pingChannel = `outbox_relay_ping_${process.pid}_${randomBytes(4).toString("hex")}`
  const clock = yield* Clock.Clock
  const notifications = new NotificationTimes()

  let healthySinceLastFailure = false
  const session = Effect.scoped(Effect.gen(function*() {
    const failed = yield* Deferred.make<never, ListenFailed>()
    const fail = (message: string) => Deferred.doneUnsafe(failed, Effect.fail(new ListenFailed({ message })))
    const pending = new Map<string, () => void>()
    const subscriber = yield* Effect.acquireRelease(
      Effect.sync(() =>
        createSubscriber({
          connectionString: target.url,
          ...(target.ssl === undefined ? {} : { ssl: target.ssl }),
          application_name: "outbox-relay-listen",
          connectionTimeoutMillis: Duration.toMillis(config.listenCheckTimeout) + 3000
        }, {
          paranoidChecking: false,
          retryInterval: 100,
          retryTimeout: 1000,
          parse: (text: string) => text,
          serialize: (value: unknown) => String(value)
        })
      ),
      (subscriber) => Effect.promise(() => subscriber.close()).pipe(Effect.timeout("2 seconds"), Effect.ignore)
    )
    // Until LISTEN is in place (and again from a drop until pg-listen has re-LISTENed), notifications
    // can be missed: their times say nothing then.
    let listened = false
    yield* Effect.addFinalizer(() => Effect.sync(() => notifications.deaf()))
    subscriber.notifications.on(channel, () => {
      notifications.record(preciseMillis(clock))
      wake("notification")
    })
    subscriber.notifications.on(pingChannel, (token: string) => pending.get(token)?.())
    // pg-listen re-LISTENs by itself after a dropped connection, then says "connected".
    subscriber.events.on("reconnect", () => notifications.deaf())
    subscriber.events.on("connected", () => {
      if (listened) notifications.listening(preciseMillis(clock))
      wake("connected")
    })
    subscriber.events.on("error", (error: Error) => fail(describe(error)))

    const attempt = (what: string, run: () => Promise<unknown> | undefined) =>
      Effect.tryPromise({
        try: async () => run(),
        catch: (cause) => new ListenFailed({ message: `${what}: ${describe(cause)}` })
      })
    yield* attempt("connect", () => subscriber.connect())
    yield* attempt("listen", () => subscriber.listenTo(channel))
    listened = true
    notifications.listening(preciseMillis(clock))
    yield* attempt("listen", () => subscriber.listenTo(pingChannel))

    const check = Effect.callback<void, ListenFailed>((resume) => {
      const token = randomBytes(8).toString("hex")
      pending.set(token, () => resume(Effect.void))
      subscriber.notify(pingChannel, token).catch((cause: unknown) =>
        resume(Effect.fail(new ListenFailed({ message: `check: ${describe(cause)}` })))
      )
      return Effect.sync(() => pending.delete(token))
    }).pipe(
      Effect.timeoutOrElse({
        duration: config.listenCheckTimeout,
        orElse: () =>
          Effect.fail(
            new ListenFailed({
              message: `liveness check got no answer within ${Duration.format(config.listenCheckTimeout)}`
            })
          )
      })
    )
    // Prove the connection works before calling it healthy, then catch up on the gap.
    yield* check
    healthySinceLastFailure = true
    yield* health.report("listen")
    wake("connected")
    yield* Effect.logInfo("listening for outbox notifications").pipe(Effect.annotateLogs({ channel }))
    return yield* Effect.raceFirst(
      Deferred.await(failed),
      Effect.forever(Effect.andThen(Effect.sleep(config.listenCheckInterval), check))
    )
  }))

  // Supervisor: one session after another, with backoff; each outage logged once.
  yield* Effect.forkScoped(Effect.gen(function*() {
    let failures = 0
    while (true) {
      const error = yield* Effect.flip(session)
      if (healthySinceLastFailure) {
        healthySinceLastFailure = false
        failures = 0
      }
      failures++
      yield* health.report("listen", error.message)
      if (failures === 1) {
        yield* Effect.logWarning("LISTEN connection lost; reconnecting (the slow poll covers the gap)").pipe(
          Effect.annotateLogs({ reason: error.message })
        )
      } else {
        yield* Effect.logDebug("LISTEN reconnect failed").pipe(Effect.annotateLogs({ reason: error.message, failures }))
      }
      yield* Effect.sleep(listenReconnectDelay(failures))
    }
  }))

  return Wakeups.of({ subscribe, notifications })
})

export class Wakeups extends Context.Service<Wakeups, {
  /** A queue of coalesced wake-ups of one's own (one per lane): take one, then drain the outbox. */
  readonly subscribe: Effect.Effect<Queue.Dequeue<Wakeup>, never, Scope.Scope>
  /** When recent notifications arrived (relay clock, `preciseMillis`), for the commit estimate. */
  readonly notifications: NotificationTimes
}>()("outbox-relay/relay/Wakeups") {
  static readonly layer = Layer.effect(this, make)
}
