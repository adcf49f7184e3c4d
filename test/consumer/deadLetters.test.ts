/**
 * Dead letters from a user's point of view: `node dist/main.js dlq list` shows what a consumer gave
 * up on and why; `dlq replay` puts it back on its stream, where the (fixed) consumer handles it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Console, Context, Effect, Schema } from "effect"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { Consumer } from "../../src/consumer/Consumer.js"
import * as DeadLetterCli from "../../src/consumer/DeadLetterCli.js"
import { eventually } from "../support/wait.js"
import { addEvents, pendingCount, start, testRedis } from "./helpers.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)
const main = fileURLToPath(new URL("../../dist/main.js", import.meta.url))

/** Runs `node dist/main.js dlq ...`; resolves with the exit code and output (never rejects). */
const dlq = (redisUrl: string, ...args: Array<string>) =>
  promisify(execFile)(process.execPath, [main, "dlq", ...args], { env: { ...process.env, RELAY_REDIS_URL: redisUrl } })
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
          `${stream}:dlq`,
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
      yield* promise(() => eventually(() => redis.xlen(`${stream}:dlq`), (n) => n === 2))
      yield* Context.get(strict, Consumer).stop

      const listed = yield* promise(() => dlq(url, "list", stream, "--json"))
      assert.strictEqual(listed.code, 0, listed.stderr)
      const rows = listed.stdout.trim().split("\n").map((line) => JSON.parse(line) as Record<string, string>)
      const consumerLetter = rows.find((row) => row.source === "consumer")!
      assert.strictEqual(consumerLetter.event_type, "OrderPlaced")
      assert.strictEqual(consumerLetter.aggregate_id, "o-7")
      assert.strictEqual(consumerLetter.entry_id, badId)
      assert.strictEqual(consumerLetter.group, "billing")
      assert.match(consumerLetter.reason!, /schema/)
      assert.strictEqual(rows.find((row) => row.source === "relay")?.event_id, "e-relay")

      // The same command in-process (spawning node costs a second each): the human-readable listing.
      const lines: Array<string> = []
      const code = yield* DeadLetterCli.list({ stream, count: 1, json: false }, url).pipe(
        Effect.provideService(
          Console.Console,
          { ...globalThis.console, log: (line: string) => void lines.push(line) } as never
        )
      )
      assert.strictEqual(code, 0)
      assert.match(lines.join("\n"), /2 dead letter\(s\), showing the oldest 1/)
      assert.match(lines.join("\n"), /reason: /)

      // Replay everything: the consumer's dead letter goes back, the relay's is skipped with a hint.
      const replayed = yield* promise(() => dlq(url, "replay", stream, "--all"))
      assert.strictEqual(replayed.code, 0, replayed.stderr)
      assert.match(replayed.stdout, /1 replayed, 1 skipped/, JSON.stringify(replayed))
      assert.match(replayed.stderr, /replay it from Postgres/)
      const entries = yield* promise(() => redis.xrange(stream, "-", "+"))
      assert.strictEqual(entries.length, 2)
      const [original, copy] = entries.map(([, fields]) => fields)
      assert.deepStrictEqual(copy, original, "the replayed entry carries the original envelope")
      assert.strictEqual(yield* promise(() => redis.xlen(`${stream}:dlq`)), 1)

      // An unknown id is reported (exit 1); bad usage (exit 2) is covered by test/unit/cli.test.ts.
      const quiet = Effect.provideService(
        Console.Console,
        { ...globalThis.console, log: () => {}, error: () => {} } as never
      )
      assert.strictEqual(yield* DeadLetterCli.replay({ stream, which: ["1-1"] }, url).pipe(quiet), 1)

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
