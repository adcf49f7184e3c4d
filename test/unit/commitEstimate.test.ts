/**
 * The estimate of when a claimed row committed, as pure functions of the row's `created_at`, when the
 * lane sent its previous claim, the notifications received since, and when producers may have skipped
 * their NOTIFY: each case is a row whose producer committed at a known time, and the estimate must not
 * put the commit later than that.
 */
import { assert, describe, it } from "@effect/vitest"
import { commitLatencySeconds, committedAfter, NotificationTimes } from "../../src/relay/CommitEstimate.js"

/** A ring that has listened since `listeningSince` and received notifications at `times`. */
const ring = (times: ReadonlyArray<number>, listeningSince = 0, capacity = 8) => {
  const notifications = new NotificationTimes(capacity)
  notifications.listening(listeningSince)
  for (const at of times) notifications.record(at)
  return notifications
}

/** Latency in ms of a row created at `created`, acknowledged at `acked`, its claim replied at `replied`. */
const latencyMs = (options: {
  readonly created: number
  readonly since: number
  readonly notifications: NotificationTimes
  readonly skipsFrom?: number
  readonly replied?: number
  readonly acked: number
}) => {
  const bound = committedAfter(
    options.since,
    options.replied ?? options.acked,
    options.notifications,
    options.skipsFrom ?? Infinity
  )
  return commitLatencySeconds(options.created, bound, options.acked) * 1000
}

describe("commit estimate", () => {
  it("measures from the row's notification: a transaction that ran 300 ms before its commit", () => {
    // Created (transaction start) at 1000, committed and notified at 1300, acknowledged at 1301.
    const value = latencyMs({ created: 1000, since: 500, notifications: ring([1300]), acked: 1301 })
    assert.closeTo(value, 1, 1e-9)
  })

  it("takes the first notification after the previous claim, not a later one", () => {
    const value = latencyMs({ created: 1000, since: 1100, notifications: ring([900, 1200, 1250]), acked: 1260 })
    assert.closeTo(value, 60, 1e-9)
  })

  it("falls back to the previous claim without a notification after it", () => {
    const value = latencyMs({ created: 1000, since: 1100, notifications: ring([900]), acked: 1150 })
    assert.closeTo(value, 50, 1e-9)
  })

  it("falls back to created_at when the previous claim tells nothing (full, failed, new slots)", () => {
    const value = latencyMs({ created: 1000, since: -Infinity, notifications: ring([1290]), acked: 1300 })
    assert.closeTo(value, 300, 1e-9)
  })

  it("never measures from before created_at", () => {
    const value = latencyMs({ created: 1000, since: 400, notifications: ring([500]), acked: 1010 })
    assert.closeTo(value, 10, 1e-9)
  })

  it("ignores notifications once the ring no longer reaches back to the previous claim", () => {
    // Capacity 4: the notification at 1150 (the row's) was overwritten by later ones.
    const value = latencyMs({
      created: 1000,
      since: 1100,
      notifications: ring([1150, 1200, 1210, 1220, 1230], 0, 4),
      acked: 1240
    })
    assert.closeTo(value, 140, 1e-9)
  })

  it("ignores notifications when LISTEN was not up since the previous claim", () => {
    // Reconnected at 1200: the row's notification (1150) was missed.
    const value = latencyMs({ created: 1000, since: 1100, notifications: ring([1210], 1200), acked: 1220 })
    assert.closeTo(value, 120, 1e-9)
  })

  it("bounds skipped NOTIFYs by when the lane's flag went up", () => {
    // The flag went up at 1120: a producer committing after that may not notify; one did at 1180.
    const value = latencyMs({ created: 1000, since: 1100, notifications: ring([1180]), skipsFrom: 1120, acked: 1200 })
    assert.closeTo(value, 80, 1e-9)
    // Flag up at the previous claim: only the claim bounds the commit.
    const awake = latencyMs({
      created: 1000,
      since: 1100,
      notifications: ring([1180]),
      skipsFrom: -Infinity,
      acked: 1200
    })
    assert.closeTo(awake, 100, 1e-9)
  })

  it("ignores a first notification that arrived after the claim's reply (late, the row committed before)", () => {
    const value = latencyMs({ created: 1000, since: 1100, notifications: ring([1195]), replied: 1190, acked: 1200 })
    assert.closeTo(value, 100, 1e-9)
  })

  it("clamps a negative latency (clocks apart) at 0", () => {
    assert.strictEqual(latencyMs({ created: 2000, since: 1100, notifications: ring([]), acked: 1200 }), 0)
  })
})

describe("NotificationTimes", () => {
  it("knows nothing before LISTEN is in place", () => {
    const notifications = new NotificationTimes(4)
    notifications.record(10)
    assert.isUndefined(notifications.firstAfter(5))
    notifications.listening(20)
    notifications.record(30)
    assert.strictEqual(notifications.firstAfter(25), 30)
    notifications.deaf()
    assert.isUndefined(notifications.firstAfter(25))
  })

  it("finds the first time at or after a moment across the ring's wrap", () => {
    const notifications = ring([1, 2, 3, 4, 5, 6], 0, 4)
    assert.strictEqual(notifications.firstAfter(4), 4)
    assert.strictEqual(notifications.firstAfter(4.5), 5)
    assert.isUndefined(notifications.firstAfter(7))
    // 3 is the oldest kept; 2 was overwritten, so from 2 on nothing is known.
    assert.strictEqual(notifications.firstAfter(2.5), 3)
    assert.isUndefined(notifications.firstAfter(2))
  })
})
