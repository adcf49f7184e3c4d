/**
 * Going back to sleep without stranding a row. While a lane is awake, producers skip their NOTIFY;
 * a producer that read the flag just before the lane cleared it may commit after the lane's last
 * claim. So the lane clears its flag, then claims on (never blocking producers) until every producer
 * that may have seen the flag set has finished — the shared hand-over lock of sql/0003 tells — and
 * claims once more after that (docs/design.md, The NOTIFY hand-over).
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type { Wakeup } from "./1-Wakeups.js"
import type { BatchResult } from "./5-Batch.js"
import type { WakeRegistry } from "./7-WakeRegistry.js"

/** First wait between hand-over checks; it doubles up to `longestWait`. */
const firstWait = Duration.micros(200n)
const longestWait = Duration.millis(5)

/**
 * Clears the lane's flag and waits, claiming meanwhile with `claim`, until every producer that saw
 * the flag set has finished. Returns true when a claim found rows on the way (the lane stays awake);
 * false when the lane may sleep after one last claim.
 */
export const handOver = (
  registry: WakeRegistry["Service"],
  wakeups: Queue.Dequeue<Wakeup>,
  claim: Effect.Effect<BatchResult>
): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    // undefined: the flag could not be cleared.
    const clear = Effect.orElseSucceed(registry.markAsleep, () => undefined)
    let done = yield* clear
    let wait = firstWait
    while (true) {
      if (done === true) return false
      if (done === undefined) {
        // The flag could not be cleared: it lapses with its lease, then producers notify again.
        const now = yield* Clock.currentTimeMillis
        if (now > (yield* registry.flagExpiresAt)) return false
      }
      // Once the flag is down, producers notify again: a notification ends the wait at once.
      yield* Effect.raceFirst(Effect.sleep(wait), Queue.take(wakeups))
      wait = Duration.min(Duration.times(wait, 2), longestWait)
      if ((yield* claim).claimed > 0) return true
      done = done === undefined ? yield* clear : yield* Effect.orElseSucceed(registry.handoverDone, () => false)
    }
  })
