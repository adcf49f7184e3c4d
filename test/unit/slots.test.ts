/**
 * Slots. The slot of an aggregate is computed by Postgres alone (sql/0004_slots.sql: `hashtext` of
 * aggregate_id, or of event_id when there is none, & 63), so there is no TypeScript hash to test here;
 * the relay's side is the mask of slots a lane may claim, tested the way the claim statement reads it:
 * `((1::int8 << slot) & mask) <> 0`, in signed 64-bit arithmetic.
 */
import { assert, describe, it } from "@effect/vitest"
import { arrayParam, quoteIdent, quoteLiteral, slotCount, slotMask } from "../../src/relay/Statements.js"

/** What the claim statement takes from a mask: the slots whose bit is set. */
const slotsIn = (mask: string): Array<number> =>
  Array.from({ length: slotCount }, (_, slot) => slot).filter((slot) =>
    (BigInt.asIntN(64, 1n << BigInt(slot)) & BigInt(mask)) !== 0n
  )

describe("slotMask", () => {
  it("has 64 slots, as sql/0004_slots.sql hashes into (& 63)", () => {
    assert.strictEqual(slotCount, 64)
  })

  it("sets exactly the given slots' bits, for every slot", () => {
    for (let slot = 0; slot < slotCount; slot++) {
      assert.deepStrictEqual(slotsIn(slotMask([slot])), [slot], `slot ${slot}`)
    }
    assert.deepStrictEqual(slotsIn(slotMask([0, 5, 31, 32, 62, 63])), [0, 5, 31, 32, 62, 63])
  })

  it("writes the signed decimal an int8 parameter takes", () => {
    assert.strictEqual(slotMask([]), "0")
    assert.strictEqual(slotMask([0]), "1")
    assert.strictEqual(slotMask([0, 1, 2]), "7")
    assert.strictEqual(slotMask([63]), "-9223372036854775808")
    assert.strictEqual(slotMask(Array.from({ length: slotCount }, (_, slot) => slot)), "-1")
    for (const mask of [slotMask([63]), slotMask([62, 63])]) {
      const value = BigInt(mask)
      assert.isTrue(value >= -(2n ** 63n) && value < 2n ** 63n, `${mask} fits an int8`)
    }
  })

  it("ignores order and repeats", () => {
    assert.strictEqual(slotMask([3, 1, 3, 2, 1]), slotMask([1, 2, 3]))
    assert.strictEqual(slotMask(new Set([9, 40])), slotMask([40, 9]))
  })
})

describe("statement helpers", () => {
  it("quotes identifiers and literals for Postgres", () => {
    assert.strictEqual(quoteIdent("relay"), "\"relay\"")
    assert.strictEqual(quoteIdent("we\"ird"), "\"we\"\"ird\"")
    assert.strictEqual(quoteLiteral("it's"), "'it''s'")
  })

  it("writes array parameters as Postgres array text", () => {
    assert.strictEqual(arrayParam([]), "{}")
    assert.strictEqual(arrayParam([1, 2, 63]), "{1,2,63}")
  })
})
