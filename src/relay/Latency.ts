/**
 * The relay's latency histograms: per event, the time from its `created_at`, and from the estimate of
 * its commit (`CommitEstimate`), to Redis acknowledging its XADD. Runs once per published batch with
 * the clock reading the batch already took, so it costs a timestamp parse and two histogram updates
 * per event and nothing else.
 *
 * `created_at` arrives as `timestamptz::text`: with Postgres's default DateStyle (ISO) that is
 * `YYYY-MM-DD HH:MM:SS[.ffffff]+HH[:MM[:SS]]` (the offset of the session's TimeZone, fraction
 * without trailing zeros). That shape is read digit by digit; anything else goes to `Date.parse`.
 */
import type * as Context from "effect/Context"
import { commitLatencySeconds } from "./CommitEstimate.js"
import type { OutboxRow } from "./Database.js"
import * as Metrics from "./Metrics.js"

// Rows of a batch were mostly created the same day: the day's epoch millis are computed once.
let cachedDay = -1
let cachedDayMillis = 0

const digit = (text: string, i: number): number => text.charCodeAt(i) - 48

const two = (text: string, i: number): number => digit(text, i) * 10 + digit(text, i + 1)

/** Epoch milliseconds of a Postgres `timestamptz::text` value; NaN when it cannot be read. */
export const timestamptzMillis = (text: string): number => {
  if (
    text.length < 22 || text.charCodeAt(4) !== 45 || text.charCodeAt(7) !== 45 || text.charCodeAt(10) !== 32 ||
    text.charCodeAt(13) !== 58 || text.charCodeAt(16) !== 58
  ) {
    return Date.parse(text)
  }
  const year = two(text, 0) * 100 + two(text, 2)
  const month = two(text, 5)
  const day = two(text, 8)
  const dayKey = year * 10000 + month * 100 + day
  if (dayKey !== cachedDay) {
    cachedDay = dayKey
    cachedDayMillis = Date.UTC(year, month - 1, day)
  }
  let millis = cachedDayMillis + ((two(text, 11) * 60 + two(text, 14)) * 60 + two(text, 17)) * 1000
  let i = 19
  if (text.charCodeAt(i) === 46) {
    // Fraction: up to six digits; only the first three matter for milliseconds.
    let scale = 100
    for (i++; i < text.length; i++) {
      const d = digit(text, i)
      if (d < 0 || d > 9) break
      millis += d * scale
      scale /= 10
    }
  }
  const sign = text.charCodeAt(i)
  if ((sign !== 43 && sign !== 45) || i + 3 > text.length) return Number.NaN
  let offset = two(text, i + 1) * 3600
  if (text.charCodeAt(i + 3) === 58) offset += two(text, i + 4) * 60
  if (text.charCodeAt(i + 6) === 58) offset += two(text, i + 7)
  return sign === 43 ? millis - offset * 1000 : millis + offset * 1000
}

/**
 * Records the latencies of each published row, acknowledged at `ackedAt` (epoch ms), whose commit
 * came after `committedAfter` (epoch ms, -Infinity when unknown).
 */
export const recordLatency = (
  rows: ReadonlyArray<OutboxRow>,
  ackedAt: number,
  committedAfter: number,
  context: Context.Context<never>
): void => {
  for (let i = 0; i < rows.length; i++) {
    const created = timestamptzMillis(rows[i]!.created_at)
    // NaN (unreadable) is skipped; a negative age (clocks apart) counts as 0.
    if (created === created) {
      Metrics.latencySeconds.updateUnsafe(Math.max(0, ackedAt - created) / 1000, context)
      Metrics.commitLatencySeconds.updateUnsafe(commitLatencySeconds(created, committedAfter, ackedAt), context)
    }
  }
}
