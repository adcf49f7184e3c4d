/**
 * When did a claimed row's producer commit? The relay cannot see the producer's acknowledgement, so
 * `outbox_relay_commit_latency_seconds` measures from a lower bound of it, kept per lane:
 *
 * - `since`: when the lane sent its previous claim, if that claim came back less than full, nothing
 *   failed in between and the lane's slots did not change. A row it did not return was not visible
 *   then, so it committed later.
 * - The first `outbox_events` notification received at or after `since`: the row's own notification
 *   arrives no earlier, at about its producer's acknowledgement. Used only while the LISTEN connection
 *   was up the whole time and no producer can have skipped its NOTIFY (the lane's flag was down).
 *
 * The bound is then `max(created_at, that)`. Time is the relay's clock in fractional milliseconds
 * (`preciseMillis`): whole milliseconds would blur the sub-millisecond part. The reasoning and the
 * error bounds: docs/design.md, Latency from the commit.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"

/** The relay's wall clock in milliseconds with the fraction kept (`Date.now()` drops it). */
export const preciseMillis = (clock: Clock.Clock): number => Number(clock.currentTimeNanosUnsafe()) / 1e6

/** `preciseMillis` as an effect. */
export const currentMillis: Effect.Effect<number> = Clock.clockWith((clock) => Effect.sync(() => preciseMillis(clock)))

/** How many notification times are kept: enough for one batch cycle of notifying commits. */
export const notificationsKept = 256

/**
 * Receipt times of recent `outbox_events` notifications (a ring, oldest overwritten), and since when
 * the LISTEN connection has been up without a gap.
 */
export class NotificationTimes {
  private readonly times: Float64Array
  // Notifications recorded in all; the newest is at (recorded - 1) % capacity.
  private recorded = 0
  // The newest time overwritten: the ring reaches back to any moment after it.
  private dropped = -Infinity
  // Before this, notifications may have been missed (no connection, or a reconnect).
  private upSince = Infinity

  constructor(readonly capacity = notificationsKept) {
    this.times = new Float64Array(capacity)
  }

  /** A notification arrived at `at`. */
  record(at: number): void {
    const i = this.recorded % this.capacity
    if (this.recorded >= this.capacity) this.dropped = this.times[i]!
    this.times[i] = at
    this.recorded++
  }

  /** LISTEN is in place from `at` on: every later commit's notification is received. */
  listening(at: number): void {
    this.upSince = at
  }

  /** Whether LISTEN has been in place without a gap since `at` (every later commit's notification comes). */
  listeningSince(at: number): boolean {
    return this.upSince <= at
  }

  /** The connection is gone: notifications may be missed until `listening` again. */
  deaf(): void {
    this.upSince = Infinity
  }

  /**
   * The receipt time of the first notification at or after `since`; undefined when there is none,
   * when the connection was not up throughout, or when the ring no longer reaches back to `since`.
   */
  firstAfter(since: number): number | undefined {
    if (since < this.upSince || since <= this.dropped) return undefined
    let first: number | undefined
    for (let n = this.recorded - 1; n >= 0 && n >= this.recorded - this.capacity; n--) {
      const at = this.times[n % this.capacity]!
      if (at < since) break
      first = at
    }
    return first
  }
}

/**
 * The lower bound on when the rows of a claim committed (relay clock, ms), before `created_at` is
 * taken into account. `since`: when the lane sent its previous claim, or -Infinity when that claim
 * tells nothing (full, failed, slots changed). `repliedAt`: when this claim's reply arrived; every
 * row committed before it, so a first notification after it was late and says nothing. `skipsFrom`:
 * from when a producer may have committed without notifying (`WakeRegistry.skipsFrom`); the first
 * notification bounds only the rows committed before then.
 */
export const committedAfter = (
  since: number,
  repliedAt: number,
  notifications: NotificationTimes,
  skipsFrom: number
): number => {
  // Producers may have skipped NOTIFY all along (a busy lane): no notification can help.
  if (since === -Infinity || skipsFrom <= since) return since
  const first = notifications.firstAfter(since)
  return first === undefined || first > repliedAt ? since : Math.min(first, skipsFrom)
}

/** One row's latency from the estimated commit, in seconds (clamped at 0). */
export const commitLatencySeconds = (createdMillis: number, committedAfterMillis: number, ackedAt: number): number =>
  Math.max(0, ackedAt - Math.max(createdMillis, committedAfterMillis)) / 1000
