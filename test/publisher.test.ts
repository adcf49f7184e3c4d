/**
 * The publish script's promise: a batch published again (its transaction failed, or the relay died
 * between XADD and COMMIT) adds nothing twice, and the records only hold attempts not yet committed.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { makeLedger, StreamPublisher } from "../src/relay/4-Publish.js"
import type { OutboxRow } from "../src/relay/Database.js"
import { RelayConfig } from "../src/relay/RelayConfig.js"
import { attemptsKey, legacyInflightKey, orphansKey } from "../src/shared/RedisKeys.js"
import { readStream, type TestEnv, testEnv } from "./support/relayHarness.js"

const row = (n: number, topic: string): OutboxRow => ({
  id: String(n),
  event_id: `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`,
  topic,
  event_type: "Counted",
  aggregate_type: "counter",
  aggregate_id: `agg-${n % 3}`,
  tenant_id: "t1",
  payload: JSON.stringify({ n }),
  headers: "{}",
  schema_version: 1,
  occurred_at: "2026-01-01T00:00:00.000000Z",
  created_at: "2026-01-01 00:00:00+00",
  attempts: 0,
  slot: n % 3
})

// Every slot's lease epoch is 1 unless a test says otherwise (fencing has tests of its own).
const epochs: ReadonlyMap<number, string> = new Map([[0, "1"], [1, "1"], [2, "1"]])
const newerEpochs: ReadonlyMap<number, string> = new Map([[0, "2"], [1, "2"], [2, "2"]])

const payloads = (t: TestEnv, topic: string) =>
  Effect.promise(async () =>
    (await readStream(t.redis, `${t.prefix}${topic}`)).map((e) => (JSON.parse(e.fields.payload!) as { n: number }).n)
  )
const hashKeys = (t: TestEnv, key: string) => Effect.promise(() => t.redis.hkeys(key))

const makePublisher = (t: TestEnv) =>
  Effect.map(
    Layer.build(StreamPublisher.layer.pipe(Layer.provide(RelayConfig.layerFrom(t.env)))),
    (context) => Context.get(context, StreamPublisher)
  )

describe("StreamPublisher", () => {
  it.live("publishes a batch claimed again after its transaction failed once", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("publisher")
      const publisher = yield* makePublisher(t)
      const ledger = makeLedger()
      const rows = Array.from({ length: 10 }, (_, i) => row(i + 1, i % 2 === 0 ? "a" : "b"))

      const first = yield* publisher.publish(rows.slice(0, 6), epochs, ledger)
      assert.isTrue(first.every((o) => o._tag === "Published" && !o.duplicate))
      // The transaction did not commit: the rows come back, with more behind them.
      const second = yield* publisher.publish(rows, epochs, ledger)
      assert.deepStrictEqual(
        second.map((o) => o._tag === "Published" && o.duplicate),
        [true, true, true, true, true, true, false, false, false, false]
      )
      for (const topic of ["a", "b"]) {
        assert.deepStrictEqual(
          yield* payloads(t, topic),
          rows.filter((r) => r.topic === topic).map((r) => Number(r.id))
        )
      }
      yield* publisher.forgetLater(ledger)
      yield* publisher.flushForgotten
      for (const topic of ["a", "b"]) {
        assert.deepStrictEqual(yield* hashKeys(t, attemptsKey(`${t.prefix}${topic}`)), [], "no attempt left")
      }
    }).pipe(Effect.scoped))

  it.live("publishes once what a relay that lost its slots had added without committing", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("takeover")
      const rows = Array.from({ length: 6 }, (_, i) => row(i + 1, "a"))
      // Relay A adds four events and dies before its COMMIT: nobody abandons its attempt.
      const crashed = yield* makePublisher(t)
      yield* crashed.publish(rows.slice(0, 4), epochs, makeLedger())
      // Relay B leases the slots again (newer epochs) and claims the rows with two more.
      const publisher = yield* makePublisher(t)
      const outcomes = yield* publisher.publish(rows, newerEpochs, makeLedger())
      assert.deepStrictEqual(outcomes.map((o) => o._tag === "Published" && o.duplicate), [
        true,
        true,
        true,
        true,
        false,
        false
      ])
      assert.deepStrictEqual(yield* payloads(t, "a"), [1, 2, 3, 4, 5, 6])
    }).pipe(Effect.scoped))

  it.live("drops committed attempts with the next call for the stream, or when flushed", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("forget-later")
      const publisher = yield* makePublisher(t)
      const ledger = makeLedger()
      const attempts = (topic: string) => hashKeys(t, attemptsKey(`${t.prefix}${topic}`))
      const first = [row(1, "a"), row(2, "a"), row(3, "b")]
      const second = [row(4, "a"), row(5, "a")]
      yield* publisher.publish(first, epochs, ledger)
      const firstTokens = ledger.unconfirmed.map(([, token]) => token)
      yield* publisher.forgetLater(ledger)
      // Queued, not sent: the records are still there until the stream's next call.
      assert.strictEqual((yield* attempts("a")).length, 1)
      yield* publisher.publish(second, epochs, ledger)
      const a = yield* attempts("a")
      assert.strictEqual(a.length, 1)
      assert.notInclude(firstTokens, a[0], "stream a: only the new batch")
      assert.strictEqual((yield* attempts("b")).length, 1, "stream b had no call since")
      // A batch published again after its record was dropped would be added twice: only committed
      // attempts are forgotten, and a re-claim of an uncommitted one still finds it.
      const again = yield* publisher.publish(second, epochs, ledger)
      assert.isTrue(again.every((o) => o._tag === "Published" && o.duplicate))
      yield* publisher.forgetLater(ledger)
      yield* publisher.flushForgotten
      assert.deepStrictEqual(yield* attempts("a"), [])
      assert.deepStrictEqual(yield* attempts("b"), [], "stream b's record went with the flush")
      assert.deepStrictEqual(yield* payloads(t, "a"), [1, 2, 4, 5])
    }).pipe(Effect.scoped))

  it.live("a committed attempt made an orphan by a lease change stops costing lookups once forgotten", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("orphan-forget")
      const stream = `${t.prefix}a`
      const giver = yield* makePublisher(t)
      const taker = yield* makePublisher(t)
      const ledger = makeLedger()
      yield* giver.publish([row(1, "a")], epochs, ledger)
      yield* giver.forgetLater(ledger)
      // The slots move on before the giver's next call: the taker's call orphans the committed attempt.
      yield* taker.publish([row(4, "a")], newerEpochs, makeLedger())
      assert.strictEqual((yield* hashKeys(t, orphansKey(stream))).length, 1)
      yield* giver.flushForgotten
      assert.deepStrictEqual(yield* hashKeys(t, orphansKey(stream)), [])
    }).pipe(Effect.scoped))

  it.live("an event Redis refused is not remembered as added", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("refused")
      const publisher = yield* makePublisher(t)
      const ledger = makeLedger()
      const stream = `${t.prefix}a`
      yield* Effect.promise(() => t.redis.set(stream, "not a stream"))
      const refused = yield* publisher.publish([row(1, "a"), row(2, "a")], epochs, ledger)
      assert.isTrue(refused.every((o) => o._tag === "Rejected"))
      // The key is fixed and the rows (dead letters) are replayed while the attempt is an orphan.
      yield* Effect.promise(() => t.redis.del(stream))
      const replayed = yield* publisher.publish([row(1, "a"), row(2, "a")], epochs, ledger)
      assert.isTrue(replayed.every((o) => o._tag === "Published" && !o.duplicate))
      assert.deepStrictEqual(yield* payloads(t, "a"), [1, 2])
    }).pipe(Effect.scoped))

  it.live("looks up the per-event markers an older relay left behind", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("legacy")
      const publisher = yield* makePublisher(t)
      const stream = `${t.prefix}a`
      yield* Effect.promise(() => t.redis.hset(legacyInflightKey(stream), row(1, "a").event_id, "1-1"))
      const outcomes = yield* publisher.publish([row(1, "a"), row(2, "a")], epochs, makeLedger())
      assert.deepStrictEqual(outcomes.map((o) => o._tag === "Published" && o.duplicate), [true, false])
      assert.deepStrictEqual(yield* payloads(t, "a"), [2])
    }).pipe(Effect.scoped))

  it.live("trims streams with MAXLEN ~ when asked", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("maxlen", { RELAY_STREAM_MAXLEN: "100" })
      const publisher = yield* makePublisher(t)
      const ledger = makeLedger()
      for (let batch = 0; batch < 10; batch++) {
        const rows = Array.from({ length: 100 }, (_, i) => row(batch * 100 + i + 1, "trimmed"))
        yield* publisher.publish(rows, epochs, ledger)
        yield* publisher.forgetLater(ledger)
      }
      const length = yield* Effect.promise(() => t.redis.xlen(`${t.prefix}trimmed`))
      assert.isAtMost(length, 300)
      assert.isAtLeast(length, 100)
    }).pipe(Effect.scoped))
})
