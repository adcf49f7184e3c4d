/** How many rows a lane's next claim asks for: RELAY_BATCH_SIZE, fewer while events are big. */
import { describe, expect, it } from "vitest"
import { batchTextBudget, nextClaimLimit } from "../../src/relay/5-Batch.js"

const mib = 1024 * 1024

describe("nextClaimLimit", () => {
  it("asks for the whole batch size while events are small", () => {
    expect(nextClaimLimit(2000, 2000, 2000 * 300)).toBe(2000)
    expect(nextClaimLimit(2000, 1, 200)).toBe(2000)
  })

  it("keeps a batch of big events inside the text budget", () => {
    // 2,000 events of 100 KiB would hold 200 MiB of text; the budget allows 16 MiB.
    const limit = nextClaimLimit(2000, 2000, 2000 * 100 * 1024)
    expect(limit).toBe(Math.floor(batchTextBudget / (100 * 1024)))
    expect(limit * 100 * 1024).toBeLessThanOrEqual(batchTextBudget)
  })

  it("takes at least one row, however big", () => {
    expect(nextClaimLimit(2000, 1, 200 * mib)).toBe(1)
  })

  it("starts a lane at the number of largest allowed payloads that fit", () => {
    expect(nextClaimLimit(2000, 1, mib)).toBe(16)
    expect(nextClaimLimit(10, 1, mib)).toBe(10)
  })

  it("grows back once events are small again", () => {
    const afterBig = nextClaimLimit(2000, 16, 16 * mib)
    expect(afterBig).toBe(16)
    expect(nextClaimLimit(2000, afterBig, afterBig * 250)).toBe(2000)
  })
})
