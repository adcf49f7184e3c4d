/**
 * When the relay pauses and resumes claiming for a Redis memory reading: past the ratio of
 * `maxmemory` it pauses, it resumes only a margin below (no flapping), and without a limit
 * (`maxmemory` 0, ratio 0 or 1) it never pauses.
 */
import { assert, describe, it } from "@effect/vitest"
import { nextState } from "../../src/relay/Backpressure.js"

const mb = 1024 * 1024
const reading = (usedMb: number, maxMb: number) => ({ usedMemory: usedMb * mb, maxmemory: maxMb * mb })

describe("backpressure", () => {
  it("pauses at the ratio and resumes only below it minus the margin", () => {
    assert.strictEqual(nextState(reading(89, 100), 0.9, false), undefined)
    assert.strictEqual(nextState(reading(90, 100), 0.9, false), "pause")
    assert.strictEqual(nextState(reading(87, 100), 0.9, true), undefined, "inside the margin: still paused")
    assert.strictEqual(nextState(reading(84, 100), 0.9, true), "resume")
  })

  it("never pauses without a limit, and resumes when the limit goes away", () => {
    assert.strictEqual(nextState(reading(500, 0), 0.9, false), undefined, "maxmemory 0: no limit")
    assert.strictEqual(nextState(reading(99, 100), 0, false), undefined, "ratio 0: off")
    assert.strictEqual(nextState(reading(100, 100), 1, false), undefined, "ratio 1: off")
    assert.strictEqual(nextState(reading(95, 0), 0.9, true), "resume", "CONFIG SET maxmemory 0 while paused")
  })
})
