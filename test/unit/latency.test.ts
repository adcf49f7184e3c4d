/**
 * Reading `created_at` as Postgres prints `timestamptz::text` (DateStyle ISO): every offset form a
 * session TimeZone can give, fractions of any length or none, and other shapes through `Date.parse`.
 */
import { assert, describe, it } from "@effect/vitest"
import { parseMemoryInfo } from "../../src/relay/4-Publish.js"
import { timestamptzMillis } from "../../src/relay/Latency.js"

describe("timestamptzMillis", () => {
  const cases: ReadonlyArray<readonly [string, string]> = [
    ["2026-11-29 15:26:44.503704+00", "2026-11-29T15:26:44.503704Z"],
    ["2026-01-01 00:00:00+00", "2026-01-01T00:00:00Z"],
    ["2026-01-01 00:00:00.1+00", "2026-01-01T00:00:00.100Z"],
    ["2025-12-31 23:59:59.999999+00", "2025-12-31T23:59:59.999Z"],
    ["2026-03-01 05:30:00.25+05:30", "2026-03-01T00:00:00.250Z"],
    ["2026-02-28 21:00:00-03", "2026-03-01T00:00:00Z"],
    ["2024-02-29 12:00:00+00", "2024-02-29T12:00:00Z"],
    // Historical zones print seconds in the offset (LMT).
    ["1890-01-01 00:00:00+00:09:21", "1889-12-31T23:50:39Z"],
    ["2026-11-29T15:26:44.503Z", "2026-11-29T15:26:44.503Z"]
  ]
  for (const [text, iso] of cases) {
    it(`reads ${text}`, () => {
      // Sub-millisecond digits are kept as a fraction; compare to the millisecond.
      assert.strictEqual(Math.floor(timestamptzMillis(text)), Date.parse(iso))
    })
  }

  it("gives NaN for text that is no timestamp", () => {
    assert.isNaN(timestamptzMillis("not a timestamp at all"))
    assert.isNaN(timestamptzMillis("2026-11-29 15:26:44.503704"))
  })

  it("does not reuse the cached day across days", () => {
    const a = timestamptzMillis("2026-11-29 10:00:00+00")
    const b = timestamptzMillis("2026-11-30 10:00:00+00")
    assert.strictEqual(b - a, 86_400_000)
  })
})

describe("parseMemoryInfo", () => {
  it("reads used_memory and maxmemory from INFO memory", () => {
    const info = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nmaxmemory:104857600\r\n" +
      "maxmemory_human:100.00M\r\n"
    assert.deepStrictEqual(parseMemoryInfo(info), { usedMemory: 1048576, maxmemory: 104857600 })
  })

  it("gives NaN for a missing field", () => {
    assert.isNaN(parseMemoryInfo("# Memory\r\nused_memory:5\r\n").maxmemory)
  })
})
