/**
 * `outbox-relay dlq ...`: look at and replay a stream's dead letters from a shell.
 *
 *   dlq list <stream> [--count N] [--json]     oldest N (default 20) dead letters of <stream>:dlq
 *   dlq replay <stream> (--id ID ... | --all)  copy them back to <stream>, delete them from the DLQ
 *
 * Redis comes from RELAY_REDIS_URL (or REDIS_URL). Exit codes: 0 done, 1 Redis failed or an id was
 * not found, 2 bad usage.
 */
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import { Redis } from "ioredis"
import { deadLetterKey } from "../shared/RedisKeys.js"
import { countDeadLetters, type DeadLetterEntry, listDeadLetters, replayDeadLetters } from "./DeadLetters.js"

export const dlqUsage = `Usage:
  outbox-relay dlq list <stream> [--count N] [--json]
  outbox-relay dlq replay <stream> (--id ID [--id ID ...] | --all)

<stream> is the full stream key (e.g. outbox:orders); dead letters live in <stream>:dlq.
Redis: RELAY_REDIS_URL (or REDIS_URL), default redis://127.0.0.1:6379.`

interface Parsed {
  readonly action: "list" | "replay"
  readonly stream: string
  readonly count: number
  readonly json: boolean
  readonly ids: ReadonlyArray<string>
  readonly all: boolean
}

/** Parses the arguments after `dlq`; a string is the usage error. */
export const parseDlqArgs = (args: ReadonlyArray<string>): Parsed | string => {
  const [action, stream, ...rest] = args
  if (action !== "list" && action !== "replay") return `Unknown dlq action ${JSON.stringify(action ?? "")}.`
  if (!stream || stream.startsWith("--")) return "Missing <stream>."
  let count = 20
  let json = false
  let all = false
  const ids: Array<string> = []
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!
    if (arg === "--json" && action === "list") json = true
    else if (arg === "--all" && action === "replay") all = true
    else if (arg === "--count" && action === "list") {
      const value = Number(rest[++i])
      if (!Number.isInteger(value) || value < 1) return "--count needs a positive integer."
      count = value
    } else if (arg === "--id" && action === "replay") {
      const id = rest[++i]
      if (!id || !/^\d+-\d+$/.test(id)) return "--id needs an entry id such as 1700000000000-0."
      ids.push(id)
    } else return `Unexpected argument ${JSON.stringify(arg)}.`
  }
  if (action === "replay" && all === (ids.length > 0)) return "replay needs either --id ID ... or --all."
  return { action, stream, count, json, ids, all }
}

const describeEntry = (entry: DeadLetterEntry): string => {
  const f = entry.fields
  const attempts = entry.source === "relay" ? `attempts=${f.attempts ?? "?"}` : `deliveries=${f.delivery_count ?? "?"}`
  return `${entry.id}  ${f.event_type ?? "?"}  event_id=${f.event_id ?? "?"} aggregate=${f.aggregate_id ?? ""} ` +
    `${attempts} dead_at=${f.dead_at ?? "?"} by=${entry.source === "relay" ? "relay" : `group ${f.group}`}\n    reason: ${f.reason ?? "?"}`
}

/** Runs `dlq ...`; returns the exit code. */
export const runDlqCommand = (args: ReadonlyArray<string>, redisUrl: string): Effect.Effect<number> =>
  Effect.gen(function*() {
    const parsed = parseDlqArgs(args)
    if (typeof parsed === "string") {
      yield* Console.error(`${parsed}\n\n${dlqUsage}`)
      return 2
    }
    const redis = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const client = new Redis(redisUrl, { maxRetriesPerRequest: 1, connectTimeout: 5_000, retryStrategy: () => null })
        client.on("error", () => {})
        return client
      }),
      (client) => Effect.sync(() => client.disconnect())
    )
    if (parsed.action === "list") {
      const total = yield* countDeadLetters(redis, parsed.stream)
      const entries = yield* listDeadLetters(redis, parsed.stream, { count: parsed.count })
      if (parsed.json) {
        for (const entry of entries) yield* Console.log(JSON.stringify({ id: entry.id, source: entry.source, ...entry.fields }))
      } else {
        yield* Console.log(`${deadLetterKey(parsed.stream)}: ${total} dead letter(s)${total > entries.length ? `, showing the oldest ${entries.length}` : ""}`)
        for (const entry of entries) yield* Console.log(describeEntry(entry))
      }
      return 0
    }
    const result = yield* replayDeadLetters(redis, parsed.stream, parsed.all ? "all" : parsed.ids)
    for (const { id, newId } of result.replayed) yield* Console.log(`replayed ${id} -> ${parsed.stream} ${newId}`)
    for (const { id, reason } of result.skipped) yield* Console.error(`skipped ${id}: ${reason}`)
    yield* Console.log(`${result.replayed.length} replayed, ${result.skipped.length} skipped`)
    return result.skipped.some((s) => s.reason === "no such dead letter") ? 1 : 0
  }).pipe(
    Effect.scoped,
    Effect.catchTag("ConsumerRedisUnavailable", (error) =>
      Console.error(`Redis failed (${error.operation}): ${error.message}`).pipe(Effect.as(1)))
  )
