/**
 * Dead letters of a stream (`{<stream>}:dlq`, in the stream's cluster slot): list them, and replay
 * them back to their stream.
 *
 * Two writers fill a dead-letter stream: consumers (a message that failed `maxDeliveries` times or can
 * never be decoded; fields: the envelope plus `reason`, `delivery_count`, `dead_at`, `group`,
 * `consumer`, `entry_id`) and the relay (an event that could not be published; it carries
 * `outbox_id`, and its record is the dead row in Postgres, replayed with `Database.replayDead`).
 * Replay here handles the consumers' dead letters: it XADDs the original envelope fields to the
 * original stream and XDELs the dead letter, both in one MULTI. The replayed entry is new to every
 * group of the stream, so groups that had handled it get it again: dedupe by `event_id` (the inbox does).
 */
import * as Effect from "effect/Effect"
import { describe } from "../shared/Errors.js"
import type { RedisConnection } from "../shared/RedisClient.js"
import { deadLetterKey } from "../shared/RedisKeys.js"
import { envelopeFields, fieldsToRecord } from "./Envelope.js"
import { ConsumerRedisUnavailable } from "./Errors.js"

export interface DeadLetterEntry {
  /** Entry id in the dead-letter stream. */
  readonly id: string
  readonly fields: Record<string, string>
  /** "consumer" (replayable here) or "relay" (replay from Postgres). */
  readonly source: "consumer" | "relay"
}

export interface ReplayResult {
  /** Dead-letter id -> new entry id in the stream. */
  readonly replayed: ReadonlyArray<{ readonly id: string; readonly newId: string }>
  /** Ids not replayed, with why. */
  readonly skipped: ReadonlyArray<{ readonly id: string; readonly reason: string }>
}

const fail = (operation: string) => (cause: unknown) =>
  new ConsumerRedisUnavailable({ operation, message: describe(cause) })

/** Who wrote a dead letter: the relay's carry `outbox_id` and no group. */
export const deadLetterSource = (fields: Readonly<Record<string, string>>): "consumer" | "relay" =>
  fields.outbox_id !== undefined && fields.group === undefined ? "relay" : "consumer"

const toEntry = ([id, flat]: [string, Array<string>]): DeadLetterEntry => {
  const fields = fieldsToRecord(flat)
  return { id, fields, source: deadLetterSource(fields) }
}

/** The oldest `count` dead letters of `stream` (after `afterId`, exclusive, when given). */
export const listDeadLetters = (
  redis: RedisConnection,
  stream: string,
  options: { readonly count?: number; readonly afterId?: string } = {}
) =>
  Effect.tryPromise({
    try: () =>
      redis.xrange(
        deadLetterKey(stream),
        options.afterId ? `(${options.afterId}` : "-",
        "+",
        "COUNT",
        options.count ?? 100
      ),
    catch: fail("xrange dlq")
  }).pipe(Effect.map((entries) => entries.map(toEntry)))

/** Number of dead letters of `stream`. */
export const countDeadLetters = (redis: RedisConnection, stream: string) =>
  Effect.tryPromise({ try: () => redis.xlen(deadLetterKey(stream)), catch: fail("xlen dlq") })

const replayOne = (redis: RedisConnection, stream: string, entry: DeadLetterEntry) =>
  Effect.tryPromise({
    try: async () => {
      const fields = envelopeFields.flatMap((name) =>
        entry.fields[name] === undefined ? [] : [name, entry.fields[name]!]
      )
      const replies = await redis.multi().xadd(stream, "*", ...fields).xdel(deadLetterKey(stream), entry.id).exec()
      const failed = replies?.find(([error]) => error !== null)
      if (!replies || failed) throw failed?.[0] ?? new Error("transaction aborted")
      return replies[0]![1] as string
    },
    catch: fail("replay")
  })

/**
 * Replays dead letters of `stream`: the given ids, or every one (`"all"`). Relay dead letters and ids
 * not found are skipped with a reason.
 */
export const replayDeadLetters = Effect.fnUntraced(function*(
  redis: RedisConnection,
  stream: string,
  which: ReadonlyArray<string> | "all"
) {
  const replayed: Array<{ id: string; newId: string }> = []
  const skipped: Array<{ id: string; reason: string }> = []
  const handle = Effect.fnUntraced(function*(entry: DeadLetterEntry) {
    if (entry.source === "relay") {
      skipped.push({
        id: entry.id,
        reason: "dead-lettered by the relay: replay it from Postgres (Database.replayDead)"
      })
    } else if (!entry.fields.event_id) {
      skipped.push({ id: entry.id, reason: "no event_id: not an outbox envelope" })
    } else {
      replayed.push({ id: entry.id, newId: yield* replayOne(redis, stream, entry) })
    }
  })
  if (which === "all") {
    let after: string | undefined
    while (true) {
      const page = yield* listDeadLetters(redis, stream, { count: 500, ...(after ? { afterId: after } : {}) })
      if (page.length === 0) break
      for (const entry of page) yield* handle(entry)
      after = page[page.length - 1]!.id
    }
  } else {
    for (const id of which) {
      const found = yield* Effect.tryPromise({
        try: () => redis.xrange(deadLetterKey(stream), id, id),
        catch: fail("xrange dlq")
      })
      if (found.length === 0) skipped.push({ id, reason: "no such dead letter" })
      else yield* handle(toEntry(found[0]!))
    }
  }
  return { replayed, skipped } satisfies ReplayResult
})

/** `listDeadLetters` for code without Effect. */
export const listDeadLettersAsync = (
  redis: RedisConnection,
  stream: string,
  options: { readonly count?: number; readonly afterId?: string } = {}
) => Effect.runPromise(listDeadLetters(redis, stream, options))

/** `replayDeadLetters` for code without Effect. */
export const replayDeadLettersAsync = (redis: RedisConnection, stream: string, which: ReadonlyArray<string> | "all") =>
  Effect.runPromise(replayDeadLetters(redis, stream, which))
