/**
 * The consumer when things break: a consumer that dies with messages in flight (another one of the
 * group takes them over), Redis restarted under a blocked read, and a connection that goes silent
 * without closing (the read watchdog replaces it). Servers are throwaway ones this file starts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Scope } from "effect"
import { Redis } from "ioredis"
import { Consumer } from "../../src/consumer/Consumer.js"
import { startRedisServer } from "../support/redisServer.js"
import { eventually, sleep } from "../support/wait.js"
import { addEvents, pendingCount, start, testRedis } from "./helpers.js"
import { startFreezingProxy } from "./proxy.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

const throwawayRedis = Effect.acquireRelease(
  promise(() => startRedisServer()),
  (server) => promise(() => server.dispose())
)

describe("Consumer faults", () => {
  it.live("a consumer that dies with messages in flight: another consumer of the group takes them over", () =>
    Effect.gen(function*() {
      const { prefix, redis, url } = yield* testRedis("reclaim")
      const stream = `${prefix}orders`
      const startedByA: Array<string> = []
      const doneByB: Array<string> = []
      const ids = yield* promise(() => addEvents(redis, stream, Array.from({ length: 5 }, () => ({}))))
      // A takes every message and hangs in its handlers; then it is gone without acknowledging.
      const scopeA = yield* Scope.make()
      yield* start(Consumer.layer({
        redisUrl: url,
        stream,
        group: "g",
        consumer: "a",
        concurrency: 5,
        stopTimeout: 0,
        handler: (event) => Effect.sync(() => void startedByA.push(event.id)).pipe(Effect.andThen(Effect.never))
      })).pipe(Scope.provide(scopeA))
      yield* promise(() => eventually(() => startedByA.length, (n) => n === 5))
      yield* Scope.close(scopeA, { _tag: "Success", value: undefined } as never)
      assert.strictEqual(yield* promise(() => pendingCount(redis, stream, "g")), 5)
      yield* start(Consumer.layer({
        redisUrl: url,
        stream,
        group: "g",
        consumer: "b",
        handlerTimeout: "200 millis",
        claimIdle: "500 millis",
        claimInterval: "100 millis",
        handler: (event) => Effect.sync(() => void doneByB.push(event.id))
      }))
      yield* promise(() => eventually(() => doneByB.length, (n) => n >= 5, 10_000))
      assert.deepStrictEqual(doneByB.sort(), [...ids].sort())
      assert.strictEqual(yield* promise(() => eventually(() => pendingCount(redis, stream, "g"), (n) => n === 0)), 0)
    }).pipe(Effect.scoped))

  it.live("Redis restarted (data lost) under a blocked read: the consumer recreates its group and goes on", () =>
    Effect.gen(function*() {
      const server = yield* throwawayRedis
      const { redis } = yield* testRedis("restart", server.url)
      const stream = "restart:orders"
      const seen: Array<string> = []
      yield* start(Consumer.layer({
        redisUrl: server.url,
        stream,
        group: "g",
        block: "300 millis",
        handler: (event) => Effect.sync(() => void seen.push(event.eventType))
      }))
      yield* promise(() => addEvents(redis, stream, [{ event_type: "Before" }]))
      yield* promise(() => eventually(() => seen.length, (n) => n === 1))
      yield* promise(() => server.stop())
      yield* promise(() => sleep(500))
      yield* promise(() => server.start())
      yield* promise(() =>
        eventually(() => addEvents(redis, stream, [{ event_type: "After" }]).then(() => true, () => false), (ok) => ok)
      )
      yield* promise(() => eventually(() => seen.length, (n) => n >= 2, 15_000))
      assert.deepStrictEqual(seen, ["Before", "After"])
      assert.strictEqual(yield* promise(() => eventually(() => pendingCount(redis, stream, "g"), (n) => n === 0)), 0)
    }).pipe(Effect.scoped))

  it.live("a connection that goes silent under a blocked read is replaced by the watchdog", () =>
    Effect.gen(function*() {
      const server = yield* throwawayRedis
      const proxy = yield* Effect.acquireRelease(
        promise(() => startFreezingProxy(server.port)),
        (p) => promise(() => p.close())
      )
      const redis = new Redis(server.url)
      yield* Effect.addFinalizer(() => Effect.sync(() => redis.disconnect()))
      const stream = "silent:orders"
      const seen: Array<string> = []
      yield* start(Consumer.layer({
        redisUrl: proxy.url,
        stream,
        group: "g",
        block: "200 millis",
        blockGrace: "300 millis",
        commandTimeout: "300 millis",
        handler: (event) => Effect.sync(() => void seen.push(event.eventType))
      }))
      yield* promise(() => addEvents(redis, stream, [{ event_type: "Before" }]))
      yield* promise(() => eventually(() => seen.length, (n) => n === 1))
      yield* promise(() => eventually(() => pendingCount(redis, stream, "g"), (n) => n === 0))
      proxy.freeze()
      yield* promise(() => addEvents(redis, stream, [{ event_type: "After" }]))
      yield* promise(() => eventually(() => seen.length, (n) => n >= 2, 10_000))
      assert.deepStrictEqual(seen, ["Before", "After"])
      assert.strictEqual(yield* promise(() => eventually(() => pendingCount(redis, stream, "g"), (n) => n === 0)), 0)
    }).pipe(Effect.scoped))
})
