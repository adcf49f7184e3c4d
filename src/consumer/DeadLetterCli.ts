/**
 * What `outbox-relay dlq list|replay` do once their arguments are parsed (cli.ts defines the commands
 * and loads this module only for them, so other commands start without ioredis).
 *
 *   dlq list <stream> [--count N] [--json]     oldest N dead letters of <stream>:dlq
 *   dlq replay <stream> (--id ID ... | --all)  copy them back to <stream>, delete them from the DLQ
 *
 * Each returns the exit code: 0 done, 1 Redis failed or an id was not found.
 */
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { describe } from "../shared/Errors.js"
import { makeRedisClient } from "../shared/RedisClient.js"
import { deadLetterKey } from "../shared/RedisKeys.js"
import { countDeadLetters, type DeadLetterEntry, listDeadLetters, replayDeadLetters } from "./DeadLetters.js"
import { ConsumerRedisUnavailable } from "./Errors.js"

export interface ListOptions {
  readonly stream: string
  readonly count: number
  readonly json: boolean
}

export interface ReplayOptions {
  readonly stream: string
  /** Dead-letter entry ids, or every dead letter of the stream. */
  readonly which: ReadonlyArray<string> | "all"
}

const nonBlank = (name: string) => Config.String(name).pipe(Config.option, Config.map(Option.filter((s) => s !== "")))

/** RELAY_REDIS_URL, else REDIS_URL, else the local default (an empty variable counts as unset). */
export const redisUrl: Config.Config<string> = Config.all([nonBlank("RELAY_REDIS_URL"), nonBlank("REDIS_URL")]).pipe(
  Config.map(([relay, plain]) => Option.getOrElse(Option.orElse(relay, () => plain), () => "redis://127.0.0.1:6379"))
)

/** One short-lived connection that gives up at once: a shell command should fail fast, not retry. */
const connect = (url: string) =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const client = makeRedisClient(url, { name: "outbox-relay-dlq", commandTimeout: "5 seconds", reconnect: false })
        // ioredis rejects with "Connection is closed"; the reason came with its error event.
        let reason: unknown
        client.once("error", (error) => (reason = error))
        await client.connect().catch((error) => {
          client.disconnect()
          throw reason ?? error
        })
        return client
      },
      catch: (cause) => new ConsumerRedisUnavailable({ operation: "connect", message: describe(cause) })
    }),
    (client) => Effect.sync(() => client.disconnect())
  )

const describeEntry = (entry: DeadLetterEntry): string => {
  const f = entry.fields
  const attempts = entry.source === "relay" ? `attempts=${f.attempts ?? "?"}` : `deliveries=${f.delivery_count ?? "?"}`
  const by = entry.source === "relay" ? "relay" : `group ${f.group}`
  return `${entry.id}  ${f.event_type ?? "?"}  event_id=${f.event_id ?? "?"} aggregate=${f.aggregate_id ?? ""} ` +
    `${attempts} dead_at=${f.dead_at ?? "?"} by=${by}\n    reason: ${f.reason ?? "?"}`
}

const exitOnRedisFailure = (effect: Effect.Effect<number, ConsumerRedisUnavailable>) =>
  effect.pipe(
    Effect.catchTag("ConsumerRedisUnavailable", (error) =>
      Console.error(`Redis failed (${error.operation}): ${error.message}`).pipe(Effect.as(1)))
  )

/** `dlq list`: a header line and two lines per dead letter, or (`json`) one JSON object per line. */
export const list = (options: ListOptions, url: string): Effect.Effect<number> =>
  Effect.gen(function*() {
    const redis = yield* connect(url)
    const total = yield* countDeadLetters(redis, options.stream)
    const entries = yield* listDeadLetters(redis, options.stream, { count: options.count })
    if (options.json) {
      for (const entry of entries) {
        yield* Console.log(JSON.stringify({ id: entry.id, source: entry.source, ...entry.fields }))
      }
      return 0
    }
    const shown = total > entries.length ? `, showing the oldest ${entries.length}` : ""
    yield* Console.log(`${deadLetterKey(options.stream)}: ${total} dead letter(s)${shown}`)
    for (const entry of entries) yield* Console.log(describeEntry(entry))
    return 0
  }).pipe(Effect.scoped, exitOnRedisFailure)

/** `dlq replay`: a line per replayed entry, one on stderr per skipped one, then a summary line. */
export const replay = (options: ReplayOptions, url: string): Effect.Effect<number> =>
  Effect.gen(function*() {
    const redis = yield* connect(url)
    const result = yield* replayDeadLetters(redis, options.stream, options.which)
    for (const { id, newId } of result.replayed) yield* Console.log(`replayed ${id} -> ${options.stream} ${newId}`)
    for (const { id, reason } of result.skipped) yield* Console.error(`skipped ${id}: ${reason}`)
    yield* Console.log(`${result.replayed.length} replayed, ${result.skipped.length} skipped`)
    return result.skipped.some((s) => s.reason === "no such dead letter") ? 1 : 0
  }).pipe(Effect.scoped, exitOnRedisFailure)
