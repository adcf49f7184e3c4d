/**
 * The consumer's option rules: defaults filled in, and every combination that cannot work refused
 * before the consumer starts, with the option named.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { type ConsumerOptions, resolveOptions } from "../../src/consumer/Options.js"

type Options = ConsumerOptions<unknown, never, never>

const base: Options = {
  redisUrl: "redis://127.0.0.1:6379",
  stream: "outbox:orders",
  group: "billing",
  handler: () => Effect.void
}

/** The option and message `changes` are refused with. */
const refusal = (changes: Partial<Options>) =>
  resolveOptions({ ...base, ...changes }).pipe(
    Effect.flip,
    Effect.map((error) => ({ option: error.option, message: error.message }))
  )

const duration = (option: string, min = 1) => ({
  option,
  message: `${option} must be a finite duration of at least ${min} ms`
})

const integer = (option: string, max: number) => ({ option, message: `${option} must be an integer from 1 to ${max}` })

/** Every way an option can be refused, with what the error must say. */
const refusals: Array<[string, Partial<Options>, { option: string; message: string }]> = [
  ["empty stream", { stream: "" }, { option: "stream", message: "stream must not be empty" }],
  ["redisUrl not a Redis URL", { redisUrl: "http://cache:6379" }, {
    option: "redisUrl",
    message: "redisUrl: not a redis:// or rediss:// URL"
  }],
  ["several hosts without cluster", { redisUrl: "redis://a:7000,b:7001" }, {
    option: "redisUrl",
    message: "redisUrl: several hosts are a cluster's seeds; set cluster: true"
  }],
  ["a database on a cluster", { redisUrl: "redis://a:7000/2", cluster: true }, {
    option: "redisUrl",
    message: "redisUrl: a Redis Cluster has only database 0"
  }],
  ["empty group", { group: "" }, { option: "group", message: "group must not be empty" }],
  ["handlerTimeout not a duration", { handlerTimeout: "soon" as never }, duration("handlerTimeout")],
  ["handlerTimeout zero", { handlerTimeout: 0 }, duration("handlerTimeout")],
  ["handlerTimeout infinite", { handlerTimeout: "Infinity" }, duration("handlerTimeout")],
  ["claimIdle not a duration", { claimIdle: "later" as never }, duration("claimIdle")],
  ["claimIdle not above handlerTimeout", { handlerTimeout: "1 minute", claimIdle: "1 minute" }, {
    option: "claimIdle",
    message: "claimIdle (60000 ms) must be above handlerTimeout (60000 ms), " +
      "or messages could be reclaimed while their handler is still running"
  }],
  ["startFrom unknown", { startFrom: "end" as never }, {
    option: "startFrom",
    message: "startFrom must be \"beginning\" or \"new\""
  }],
  ["concurrency zero", { concurrency: 0 }, integer("concurrency", 100_000)],
  ["concurrency fractional", { concurrency: 1.5 }, integer("concurrency", 100_000)],
  ["concurrency too large", { concurrency: 100_001 }, integer("concurrency", 100_000)],
  ["batchSize zero", { batchSize: 0 }, integer("batchSize", 100_000)],
  ["block zero", { block: 0 }, duration("block")],
  ["blockGrace infinite", { blockGrace: "Infinity" }, duration("blockGrace")],
  ["maxDeliveries too large", { maxDeliveries: 1_000_001 }, integer("maxDeliveries", 1_000_000)],
  ["claimInterval zero", { claimInterval: "0 millis" }, duration("claimInterval")],
  ["stopTimeout infinite", { stopTimeout: "Infinity" }, duration("stopTimeout", 0)],
  ["commandTimeout not a duration", { commandTimeout: "quick" as never }, duration("commandTimeout")]
]

describe("resolveOptions", () => {
  it.effect("fills in the documented defaults", () =>
    Effect.gen(function*() {
      const resolved = yield* resolveOptions(base)
      assert.strictEqual(Redacted.value(resolved.redisUrl), "redis://127.0.0.1:6379")
      assert.strictEqual(resolved.startFrom, "beginning")
      assert.strictEqual(resolved.concurrency, 16)
      assert.isFalse(resolved.orderByAggregate)
      assert.strictEqual(resolved.batchSize, 500)
      assert.strictEqual(resolved.blockMillis, 2_000)
      assert.strictEqual(resolved.blockGraceMillis, 5_000)
      assert.strictEqual(resolved.maxDeliveries, 5)
      assert.strictEqual(resolved.handlerTimeoutMillis, 30_000)
      assert.strictEqual(resolved.claimIdleMillis, 60_000)
      assert.strictEqual(resolved.claimIntervalMillis, 30_000)
      assert.strictEqual(resolved.renewIntervalMillis, 20_000)
      assert.strictEqual(resolved.stopTimeoutMillis, 10_000)
      assert.strictEqual(resolved.commandTimeoutMillis, 5_000)
      assert.match(resolved.consumer, /-\d+-[0-9a-f]{6}$/)
    }))

  it.effect("keeps claimIdle above a long handlerTimeout by default", () =>
    Effect.gen(function*() {
      const resolved = yield* resolveOptions({ ...base, handlerTimeout: "45 seconds" })
      assert.strictEqual(resolved.claimIdleMillis, 90_000)
      assert.strictEqual(resolved.claimIntervalMillis, 30_000)
      const short = yield* resolveOptions({ ...base, handlerTimeout: "1 second", claimIdle: "10 seconds" })
      assert.strictEqual(short.claimIntervalMillis, 5_000, "half of claimIdle when that is under 30 s")
      assert.strictEqual(short.renewIntervalMillis, 3_333)
    }))

  it.effect("accepts a redacted URL and a stop timeout of zero", () =>
    Effect.gen(function*() {
      const resolved = yield* resolveOptions({ ...base, redisUrl: Redacted.make("redis://r:1"), stopTimeout: 0 })
      assert.strictEqual(Redacted.value(resolved.redisUrl), "redis://r:1")
      assert.strictEqual(resolved.stopTimeoutMillis, 0)
    }))

  it.effect.each(refusals)("refuses %s", ([, changes, expected]) =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* refusal(changes), expected)
    }))
})
