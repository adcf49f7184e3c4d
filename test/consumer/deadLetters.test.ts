/**
 * Dead letters from a user's point of view: `node dist/main.js dlq list` shows what a consumer gave
 * up on and why; `dlq replay` puts it back on its stream, where the (fixed) consumer handles it.
 * The other `dlq` cases (purge, unknown streams, servers down) are in test/cli-ops.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Schema } from "effect"
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { Consumer } from "../../src/consumer/Consumer.js"
import type { DeadLetterPage } from "../../src/ops/Model.js"
import { relayEnv, relayMainPath } from "../support/relayProcess.js"
import { eventually } from "../support/wait.js"
import { addEvents, pendingCount, start, testRedis } from "./helpers.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

/**
 * Runs `node dist/main.js dlq ...` as a consumer-only deployment would: Redis settings, no database
 * URL (`dlq` never touches Postgres); resolves with the exit code and output (never rejects).
 */
const dlq = (redisUrl: string, prefix: string, ...args: Array<string>) =>
  promisify(execFile)(process.execPath, [relayMainPath(), "dlq", ...args], {
    env: relayEnv({
      RELAY_REDIS_URL: redisUrl,
      RELAY_STREAM_PREFIX: prefix
    })
  })
    .then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (error: { code: number; stdout: string; stderr: string }) => ({
        code: error.code,
        stdout: error.stdout,
        stderr: error.stderr
      })
    )

describe("dead letters", () => {
  it.live("dlq list shows dead letters with their reason; dlq replay sends them back to be handled", () =>
    Effect.gen(function*() {
      const { prefix, redis, url } = yield* testRedis("dlq")
      const stream = `${prefix}orders`
      const [badId] = yield* promise(() =>
        addEvents(redis, stream, [{ event_type: "OrderPlaced", aggregate_id: "o-7", payload: { total: "ten" } }])
      )
      // A relay-mirrored dead letter in the same DLQ: listed, but replayed from Postgres, not from here.
      yield* promise(() =>
        redis.xadd(
          `{${stream}}:dlq`,
          "*",
          "event_id",
          "e-relay",
          "event_type",
          "Big",
          "outbox_id",
          "42",
          "reason",
          "payload too large",
          "attempts",
          "1"
        )
      )
      // Version 1 of the consumer refuses the payload: it is dead-lettered at once.
      const strict = yield* start(Consumer.layer({
        redisUrl: url,
        stream,
        group: "billing",
        payloadSchema: Schema.Struct({ total: Schema.Number }),
        handler: () => Effect.void
      }))
      yield* promise(() => eventually(() => redis.xlen(`{${stream}}:dlq`), (n) => n === 2))
      yield* Context.get(strict, Consumer).stop

      const listed = yield* promise(() => dlq(url, prefix, "list", stream, "--json"))
      assert.strictEqual(listed.code, 0, listed.stderr)
      const page = JSON.parse(listed.stdout) as DeadLetterPage
      assert.strictEqual(page.stream, stream)
      const consumerLetter = page.messages.find((message) => message.source === "consumer")!
      assert.strictEqual(consumerLetter.eventType, "OrderPlaced")
      assert.strictEqual(consumerLetter.aggregateId, "o-7")
      assert.strictEqual(consumerLetter.metadata.entry_id, badId)
      assert.strictEqual(consumerLetter.metadata.group, "billing")
      assert.match(consumerLetter.reason!, /schema/)
      assert.strictEqual(page.messages.find((message) => message.source === "relay")?.eventId, "e-relay")

      // The human-readable listing: a header with the total, two lines per dead letter.
      const text = yield* promise(() => dlq(url, prefix, "list", stream, "--count", "1"))
      assert.strictEqual(text.code, 0, text.stderr)
      assert.match(text.stdout, /2 dead letter\(s\) \(1 from consumers, 1 from the relay\), showing the oldest 1/)
      assert.match(text.stdout, /reason: /)

      // Replay everything: the consumer's dead letter goes back, the relay's is skipped with a hint.
      const replayed = yield* promise(() => dlq(url, prefix, "replay", stream, "--all"))
      assert.strictEqual(replayed.code, 0, replayed.stderr)
      assert.match(replayed.stdout, /1 replayed, 1 skipped/, JSON.stringify(replayed))
      assert.match(replayed.stderr, /replay it from Postgres/)
      const entries = yield* promise(() => redis.xrange(stream, "-", "+"))
      assert.strictEqual(entries.length, 2)
      const [original, copy] = entries.map(([, fields]) => fields)
      assert.deepStrictEqual(copy, original, "the replayed entry carries the original envelope")
      assert.strictEqual(yield* promise(() => redis.xlen(`{${stream}}:dlq`)), 1)

      // An unknown id is reported (exit 1); bad usage (exit 2) is covered by test/unit/cli.test.ts.
      const unknown = yield* promise(() => dlq(url, prefix, "replay", stream, "--id", "1-1"))
      assert.strictEqual(unknown.code, 1)
      assert.match(unknown.stderr, /skipped 1-1: no such dead letter/)

      // A fixed consumer (another group here, for the test) handles the replayed event.
      const totals: Array<unknown> = []
      yield* start(Consumer.layer({
        redisUrl: url,
        stream,
        group: "billing-v2",
        handler: (event) => Effect.sync(() => void totals.push(event.payload))
      }))
      yield* promise(() => eventually(() => totals.length, (n) => n >= 2))
      assert.deepStrictEqual(totals, [{ total: "ten" }, { total: "ten" }])
      assert.strictEqual(yield* promise(() => pendingCount(redis, stream, "billing")), 0)
    }).pipe(Effect.scoped))
})
