/** When a lane counts as busy enough to pause (RELAY_BUSY_PAUSE): only a sustained rate above 2,000/s. */
import { describe, expect, it } from "vitest"
import { busyRate, intakeMeter } from "../../src/relay/6-Lane.js"

/** Feeds claims sent every `everyMs` with `rows` each (or a function of the claim's index). */
const feed = (
  meter: ReturnType<typeof intakeMeter>,
  from: number,
  count: number,
  everyMs: number,
  rows: (i: number) => number
) => {
  const verdicts: Array<boolean> = []
  for (let i = 0; i < count; i++) {
    meter.claimed(from + i * everyMs, rows(i))
    verdicts.push(meter.heavy)
  }
  return verdicts
}

describe("busy pause gate", () => {
  it("stays off at a steady 1,000 events/s, claims every 1.7 ms with one or two rows", () => {
    const meter = intakeMeter()
    expect(feed(meter, 0, 5_000, 1.7, (i) => (i % 3 === 0 ? 1 : 2))).not.toContain(true)
  })

  it("stays off for the catch-up batch after a 100 ms stall at 1,000 events/s", () => {
    const meter = intakeMeter()
    feed(meter, 0, 100, 1, () => 1)
    meter.claimed(200, 100)
    expect(meter.heavy).toBe(false)
    expect(feed(meter, 201, 100, 1, () => 1)).not.toContain(true)
  })

  it("turns on within a window or two above the rate, and off again when the rate falls", () => {
    const meter = intakeMeter()
    const heavy = feed(meter, 0, 20, 3, () => 3 * busyRate / 1000 + 1)
    expect(heavy.slice(-5)).toEqual([true, true, true, true, true])
    const calm = feed(meter, 60, 40, 1, () => 1)
    expect(calm.slice(-5)).toEqual([false, false, false, false, false])
  })

  it("starts over after an idle spell", () => {
    const meter = intakeMeter()
    feed(meter, 0, 20, 3, () => 30)
    expect(meter.heavy).toBe(true)
    meter.claimed(10_000, 1)
    expect(meter.heavy).toBe(false)
  })
})
