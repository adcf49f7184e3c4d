/**
 * Each lane's row in `outbox_relay_wake`: registered (the lane is live and counts when the slots are
 * shared out; its heartbeat keeps the row fresh) and awake (while it keeps finding rows, producers skip
 * their NOTIFY, which would otherwise serialise their commits). Going back to sleep safely is
 * `Handover`'s job; sql/0003_relay_wake.sql and sql/0006_wake_summary.sql hold the protocol's SQL side
 * (docs/design.md, The NOTIFY hand-over).
 *
 * It has its own connection with `synchronous_commit = off`: the flags need no durability (a lost
 * update only costs a notification or a lease of a few seconds), and their commits must not wait for
 * a WAL flush.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Semaphore from "effect/Semaphore"
import { randomBytes } from "node:crypto"
import { type DatabaseUnavailable, describe } from "../shared/Errors.js"
import { currentMillis, preciseMillis } from "./CommitEstimate.js"
import { makePostgresClient, runQuery, withTimeout } from "./Database.js"
import { RelayConfig } from "./RelayConfig.js"
import { statements } from "./Statements.js"

/** How long an awake flag holds without a refresh; a relay that dies stops refreshing. */
export const awakeLease = Duration.seconds(5)

/** This lane's row: its own connection, its heartbeat fiber, and the flag's local view. */
const make = Effect.gen(function*() {
  const config = yield* RelayConfig
  const sqlText = statements(config.schema)
  const relayId = `${process.pid}-${randomBytes(6).toString("hex")}`
  const client = yield* Effect.acquireRelease(
    Effect.sync(() =>
      makePostgresClient(config.databaseUrl, {
        max: 1,
        applicationName: `outbox-relay-wake/${relayId}`,
        timeout: config.databaseTimeout,
        synchronousCommit: false,
        ca: config.databaseCa
      })
    ),
    (sql) =>
      // A clean stop leaves no flag behind.
      Effect.promise(() => sql.unsafe(sqlText.unregister, [relayId]).then(() => sql.end({ timeout: 1 })))
        .pipe(Effect.timeout("2 seconds"), Effect.ignore)
  )
  const statement = (text: string, params: Array<string | number>) => client.unsafe(text, params, { prepare: true })
  const query = (operation: string, text: string, params: Array<string | number>) =>
    runQuery(operation, config.databaseTimeout, () => statement(text, params))

  const leaseMs = Duration.toMillis(awakeLease)
  // Local view of the flag: set, and until when (local clock, with a margin for clock skew).
  let awakeUntil = 0
  let flagSet = false
  // For the commit estimate (`skipsFrom`, relay clock in `currentMillis`): every producer that
  // skipped its NOTIFY for this lane's flag had committed by `quietFrom`, and the flag has not been
  // raised again before `raisedAt`. Nothing is known before the lane registers.
  let quietFrom = Infinity
  let raisedAt = Infinity

  const clock = yield* Clock.Clock
  const services = yield* Effect.context<never>()

  const markAwake = Effect.suspend(() => {
    const now = clock.currentTimeMillisUnsafe()
    if (flagSet && awakeUntil - now > leaseMs / 2) return Effect.void
    // Before the query: it may set the flag even when it fails.
    raisedAt = Math.min(raisedAt, preciseMillis(clock))
    // Set from the moment it is sent, whatever the outcome: a hand-over (`markAsleep`) follows either way.
    flagSet = true
    awakeUntil = now + leaseMs
    // Not awaited: the lane claims on meanwhile. Whatever this connection runs later runs after it.
    withTimeout(statement(sqlText.markAwake, [relayId, leaseMs]), Duration.toMillis(config.databaseTimeout)).then(
      () => {
        awakeUntil = Math.max(awakeUntil, clock.currentTimeMillisUnsafe() + leaseMs)
      },
      (cause: unknown) => {
        // A later hand-over clears what may have been set; until then it is only a hint.
        Effect.runForkWith(services)(Effect.logDebug("could not mark the relay awake", describe(cause)))
      }
    )
    return Effect.void
  })

  const checkHandover = (free: boolean) => {
    if (free && !flagSet) {
      quietFrom = preciseMillis(clock)
      raisedAt = Infinity
    }
    return free
  }
  const isFree = (rows: ReadonlyArray<unknown>) => (rows[0] as { free: boolean } | undefined)?.free === true

  const handoverDone = query("handover", sqlText.tryHandover, []).pipe(
    Effect.map((rows) => checkHandover(isFree(rows)))
  )

  // The flag and the first hand-over check go out together: the check runs once the flag is down.
  const markAsleep = Effect.suspend(() =>
    flagSet
      ? runQuery(
        "markAsleep",
        config.databaseTimeout,
        () => Promise.all([statement(sqlText.markAsleep, [relayId]), statement(sqlText.tryHandover, [])])
      ).pipe(Effect.map(([, rows]) => {
        flagSet = false
        return checkHandover(isFree(rows))
      }))
      : handoverDone
  )

  // The lane registers itself when it starts relaying (`register`); while registered, the
  // heartbeat tells other relays it is live (they share the slots among live lanes, see
  // SlotLeases). A helper lane (HelperLanes) is unregistered while it is dormant.
  let registered = false
  // Registration, unregistration and heartbeats never overlap: a heartbeat landing after an
  // unregister would bring the row back and count a dormant lane as live.
  const rowLock = yield* Semaphore.make(1)
  // Registered from the call on, whatever the outcome: if the row could not be written now, the
  // heartbeat writes it (a caller that gives up calls `unregister`).
  const register = Semaphore.withPermit(
    rowLock,
    Effect.gen(function*() {
      registered = true
      flagSet = false
      // A producer that read the summary before this lane counted may still skip its NOTIFY and
      // commit after this: the estimate's blind spot while such a transaction stays open.
      quietFrom = yield* currentMillis
      raisedAt = Infinity
      yield* query("register", sqlText.markAsleep, [relayId])
    })
  )
  const unregister = Semaphore.withPermit(
    rowLock,
    Effect.suspend(() => {
      registered = false
      flagSet = false
      quietFrom = Infinity
      return Effect.asVoid(query("unregister", sqlText.unregister, [relayId]))
    })
  )
  // The heartbeat re-creates the row if it went missing (e.g. registering failed while Postgres
  // was down), so a registered lane always ends up counted.
  yield* Effect.forkScoped(
    Effect.repeat(
      Semaphore.withPermit(
        rowLock,
        Effect.suspend(() =>
          registered ? query("heartbeat", sqlText.heartbeat, [relayId]).pipe(Effect.ignore) : Effect.void
        )
      ),
      Schedule.spaced("1 second")
    )
  )

  return WakeRegistry.of({
    markAwake,
    markAsleep,
    handoverDone,
    isAwake: Effect.sync(() => flagSet),
    flagExpiresAt: Effect.sync(() => awakeUntil + 1000),
    skipsFrom: (since) => since < quietFrom ? -Infinity : raisedAt,
    register,
    unregister
  })
})

export class WakeRegistry extends Context.Service<WakeRegistry, {
  /**
   * Marks this relay awake (or refreshes the lease when it is about to run out). Sends and returns:
   * the flag is a hint, so the lane does not wait for it.
   */
  readonly markAwake: Effect.Effect<void>
  /**
   * Clears the flag (producers notify again from the moment this returns) and tells, as
   * `handoverDone` does, whether the hand-over is already done.
   */
  readonly markAsleep: Effect.Effect<boolean, DatabaseUnavailable>
  /** True once every producer that may have seen the flag set has finished. Never blocks. */
  readonly handoverDone: Effect.Effect<boolean, DatabaseUnavailable>
  /** Whether this relay's flag is (as far as it knows) set. */
  readonly isAwake: Effect.Effect<boolean>
  /** When a failed `markAsleep` leaves the flag set, the time (ms, local clock) it surely expired. */
  readonly flagExpiresAt: Effect.Effect<number>
  /**
   * For rows committed after `since` (relay clock, `currentMillis`): from when one of them may have
   * been committed without a NOTIFY because of this lane's flag. -Infinity when that is possible from
   * `since` on (the flag was, or may have been, up then); Infinity when every such row notified.
   */
  readonly skipsFrom: (since: number) => number
  /**
   * Registers this lane (asleep): from now on producers notify until it marks itself awake, its
   * heartbeat runs, and other lanes and relays count it when they share the slots.
   */
  readonly register: Effect.Effect<void, DatabaseUnavailable>
  /** Deletes this lane's row: it no longer counts as live, and producers no longer wait for it. */
  readonly unregister: Effect.Effect<void, DatabaseUnavailable>
}>()("outbox-relay/relay/WakeRegistry") {
  static readonly layer = Layer.effect(this, make)
}
