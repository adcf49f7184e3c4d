/**
 * The Redis side of the operations surface: the streams under the prefix, their groups and consumers,
 * entries, pending entries and dead letters, and the two mutations (replay, purge) of dead letters.
 *
 * A stream name from outside (a URL, a command line) is only used after `resolveStream` checked it is
 * `<prefix><topic>` or `{<prefix><topic>}:dlq` with a topic the outbox table could hold, and that the key
 * is a stream: no request can read another key. Every argument goes to Redis as its own bulk string
 * (no command text is ever built), so no value can become a command or an option.
 */
import * as Effect from "effect/Effect"
import { Cluster } from "ioredis"
import { deadLetterSource, replayDeadLetters } from "../consumer/DeadLetters.js"
import { envelopeFields } from "../shared/Envelope.js"
import { describe } from "../shared/Errors.js"
import { primaries, type RedisConnection } from "../shared/RedisClient.js"
import { deadLetterKey, defaultTopicPattern, streamOfDeadLetterKey } from "../shared/RedisKeys.js"
import { BadInput, NotFound, Unavailable } from "./Errors.js"
import type {
  DeadLetterMessage,
  DeadLetterPage,
  DeadLetterSummary,
  Entry,
  EntryPage,
  Group,
  PendingPage,
  PurgeResult,
  ReplayResult,
  Selection,
  StreamDetails,
  StreamList,
  StreamSummary
} from "./Model.js"

const topicPattern = new RegExp(defaultTopicPattern)

/** How many dead letters `deadLetterSummary` reads at most to count them by reason. */
export const reasonScanLimit = 50_000

const unavailable = (operation: string) => (cause: unknown) =>
  new Unavailable({ error: `Redis ${operation} failed: ${describe(cause)}` })

const call = <A>(redis: RedisConnection, operation: string, ...args: Array<string | number>) =>
  Effect.tryPromise({
    try: () => redis.call(...(args as [string, ...Array<string | number>])) as Promise<A>,
    catch: unavailable(operation)
  })

/** Where a key sits under the prefix: its topic and whether it is a dead-letter stream; undefined if outside. */
export const classifyKey = (prefix: string, key: string): { topic: string; deadLetter: boolean } | undefined => {
  const stream = streamOfDeadLetterKey(key)
  const main = stream ?? key
  if (!main.startsWith(prefix)) return undefined
  const topic = main.slice(prefix.length)
  return topicPattern.test(topic) ? { topic, deadLetter: stream !== undefined } : undefined
}

const notFound = (prefix: string, name: string) =>
  new NotFound({ error: `no stream ${JSON.stringify(name)} under the prefix ${JSON.stringify(prefix)}` })

/** `name` if it is a stream under the prefix (a dead-letter stream when `allowDeadLetter`), else NotFound. */
export const resolveStream = (
  redis: RedisConnection,
  prefix: string,
  name: string,
  options: { readonly allowDeadLetter?: boolean; readonly orDeadLetters?: boolean } = {}
) =>
  Effect.gen(function*() {
    const place = classifyKey(prefix, name)
    if (!place || (place.deadLetter && !options.allowDeadLetter)) return yield* notFound(prefix, name)
    const type = yield* call<string>(redis, "TYPE", "TYPE", name)
    if (type === "stream") return name
    // A stream whose every event was dead-lettered by the relay has a dead-letter stream only.
    if (options.orDeadLetters && type === "none") {
      const dlqType = yield* call<string>(redis, "TYPE", "TYPE", deadLetterKey(name))
      if (dlqType === "stream") return name
    }
    return yield* notFound(prefix, name)
  })

/** Escapes glob characters so SCAN MATCH takes the prefix literally. */
const globEscape = (text: string) => text.replace(/[*?[\]\\]/g, (c) => `\\${c}`)

/**
 * Every stream key under the prefix and every dead-letter stream of one (SCAN, never KEYS), sorted by
 * stream; on a cluster, of every master.
 */
export const scanStreams = (redis: RedisConnection, prefix: string) =>
  Effect.gen(function*() {
    const keys = new Set<string>()
    for (const node of primaries(redis)) {
      for (const pattern of [`${globEscape(prefix)}*`, `{${globEscape(prefix)}*}:dlq`]) {
        let cursor = "0"
        do {
          const [next, batch] = yield* call<[string, Array<string>]>(
            node,
            "SCAN",
            "SCAN",
            cursor,
            "MATCH",
            pattern,
            "COUNT",
            1000,
            "TYPE",
            "stream"
          )
          for (const key of batch) if (classifyKey(prefix, key)) keys.add(key)
          cursor = next
        } while (cursor !== "0")
      }
    }
    // Each dead-letter stream right after its stream.
    const order = (key: string) => {
      const stream = streamOfDeadLetterKey(key)
      return stream === undefined ? `${key}\u0000` : `${stream}\u0001`
    }
    return [...keys].sort((a, b) => order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0)
  })

/** A flat `[name, value, ...]` reply as a record. */
const pairs = (flat: ReadonlyArray<unknown>): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1]
  return out
}

const numberOrNull = (value: unknown): number | null => value === null || value === undefined ? null : Number(value)

const entryId = (entry: unknown): string | null =>
  Array.isArray(entry) && typeof entry[0] === "string" ? entry[0] : null

/** Milliseconds part of an entry id. */
const idMillis = (id: string) => Number(id.split("-")[0])

const ageSeconds = (id: string, now: number) => Math.max(0, (now - idMillis(id)) / 1000)

/**
 * Runs commands in one pipeline; a failed command yields its error as the value. On a cluster the keys
 * may be on several masters, so each command goes on its own (all at once).
 */
const pipeline = (
  redis: RedisConnection,
  operation: string,
  commands: ReadonlyArray<ReadonlyArray<string | number>>
) =>
  Effect.tryPromise({
    try: async () => {
      if (commands.length === 0) return []
      if (redis instanceof Cluster) {
        return Promise.all(
          commands.map((c) => redis.call(...(c as [string, ...Array<string | number>])).catch((error: Error) => error))
        )
      }
      const replies = await redis.pipeline(commands.map((c) => ["call", ...c]) as never).exec()
      if (!replies) throw new Error("pipeline aborted")
      return replies.map(([error, value]) => (error ? error : value) as unknown)
    },
    catch: unavailable(operation)
  })

const summarize = (
  prefix: string,
  key: string,
  info: unknown,
  memory: unknown,
  deadLetters: unknown,
  now: number
): StreamSummary | undefined => {
  if (!Array.isArray(info)) return undefined
  const place = classifyKey(prefix, key)!
  const fields = pairs(info)
  const firstId = entryId(fields["first-entry"])
  return {
    key,
    topic: place.topic,
    deadLetter: place.deadLetter,
    length: Number(fields.length ?? 0),
    firstId,
    lastId: entryId(fields["last-entry"]),
    firstEntryAgeSeconds: firstId === null ? null : ageSeconds(firstId, now),
    memoryBytes: typeof memory === "number" ? memory : null,
    groupCount: Number(fields.groups ?? 0),
    deadLetters: typeof deadLetters === "number" ? deadLetters : 0
  }
}

/** Summaries of the given keys, two pipelined round trips whatever their number; vanished keys are left out. */
const summaries = (redis: RedisConnection, prefix: string, keys: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const replies = yield* pipeline(
      redis,
      "XINFO STREAM",
      keys.flatMap((key) => [
        ["XINFO", "STREAM", key],
        ["MEMORY", "USAGE", key],
        ["XLEN", classifyKey(prefix, key)!.deadLetter ? key : deadLetterKey(key)]
      ])
    )
    const now = Date.now()
    return keys.flatMap((key, i) => {
      const summary = summarize(prefix, key, replies[3 * i], replies[3 * i + 1], replies[3 * i + 2], now)
      return summary ? [summary] : []
    })
  })

export const listStreams = (redis: RedisConnection, prefix: string) =>
  Effect.gen(function*() {
    const keys = yield* scanStreams(redis, prefix)
    return { prefix, streams: yield* summaries(redis, prefix, keys) } satisfies StreamList
  })

const groupsOf = (redis: RedisConnection, key: string) =>
  Effect.gen(function*() {
    const raw = yield* call<Array<Array<unknown>>>(redis, "XINFO GROUPS", "XINFO", "GROUPS", key)
    const groups = raw.map(pairs)
    const consumers = yield* pipeline(
      redis,
      "XINFO CONSUMERS",
      groups.map((g) => ["XINFO", "CONSUMERS", key, String(g.name)])
    )
    return groups.map((g, i): Group => {
      const list = consumers[i]
      return {
        name: String(g.name),
        pending: Number(g.pending ?? 0),
        lag: numberOrNull(g.lag),
        lastDeliveredId: String(g["last-delivered-id"] ?? "0-0"),
        entriesRead: numberOrNull(g["entries-read"]),
        consumers: Array.isArray(list)
          ? list.map((c: Array<unknown>) => {
            const f = pairs(c)
            return {
              name: String(f.name),
              pending: Number(f.pending ?? 0),
              idleMs: Number(f.idle ?? 0),
              inactiveMs: numberOrNull(f.inactive)
            }
          })
          : []
      }
    })
  })

export const streamDetails = (redis: RedisConnection, prefix: string, name: string) =>
  Effect.gen(function*() {
    const key = yield* resolveStream(redis, prefix, name, { allowDeadLetter: true })
    const [summary] = yield* summaries(redis, prefix, [key])
    if (!summary) return yield* notFound(prefix, name)
    return { ...summary, groups: yield* groupsOf(redis, key) } satisfies StreamDetails
  })

const safeJson = (text: string | undefined): { value: unknown; error?: string } => {
  if (text === undefined || text === "") return { value: null }
  try {
    return { value: JSON.parse(text) }
  } catch (error) {
    return { value: text, error: (error as Error).message }
  }
}

const envelopeNames = new Set<string>(envelopeFields)

/** An entry's flat fields read back as an envelope; other fields go to `metadata`. */
export const decodeEntry = (id: string, flat: ReadonlyArray<string>): Entry => {
  const f: Record<string, string> = {}
  const metadata: Record<string, string> = {}
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const name = flat[i]!
    if (envelopeNames.has(name)) f[name] = flat[i + 1]!
    else metadata[name] = flat[i + 1]!
  }
  const payload = safeJson(f.payload)
  const headers = safeJson(f.headers)
  const errors = [
    ...(payload.error ? [`payload is not JSON: ${payload.error}`] : []),
    ...(headers.error ? [`headers is not JSON: ${headers.error}`] : [])
  ]
  return {
    id,
    eventId: f.event_id ?? null,
    eventType: f.event_type ?? null,
    topic: f.topic ?? null,
    aggregateType: f.aggregate_type ?? null,
    aggregateId: f.aggregate_id ?? null,
    tenantId: f.tenant_id ?? null,
    schemaVersion: f.schema_version === undefined ? null : Number(f.schema_version),
    occurredAt: f.occurred_at ?? null,
    payload: payload.value,
    headers: headers.value,
    metadata,
    decodeError: errors.length === 0 ? null : errors.join("; ")
  }
}

/** Entries of `key` between `start` and `end` (XRANGE bounds), oldest first, or newest first when `reverse`. */
const readRange = (
  redis: RedisConnection,
  key: string,
  options: { readonly start?: string; readonly end?: string; readonly count: number; readonly reverse: boolean }
) =>
  Effect.gen(function*() {
    const start = options.start ?? "-"
    const end = options.end ?? "+"
    const raw = options.reverse
      ? yield* call<Array<[string, Array<string>]>>(
        redis,
        "XREVRANGE",
        "XREVRANGE",
        key,
        end,
        start,
        "COUNT",
        options.count
      )
      : yield* call<Array<[string, Array<string>]>>(redis, "XRANGE", "XRANGE", key, start, end, "COUNT", options.count)
    const last = raw[raw.length - 1]
    return { raw, next: raw.length === options.count && last ? `(${last[0]}` : null }
  })

export const readEntries = (
  redis: RedisConnection,
  prefix: string,
  name: string,
  options: { readonly start?: string; readonly end?: string; readonly count: number; readonly reverse: boolean }
) =>
  Effect.gen(function*() {
    const key = yield* resolveStream(redis, prefix, name, { allowDeadLetter: true })
    const { next, raw } = yield* readRange(redis, key, options)
    return { stream: key, entries: raw.map(([id, flat]) => decodeEntry(id, flat)), next } satisfies EntryPage
  })

/** Whether a Redis error says the group does not exist. */
const isNoGroup = (error: Unavailable) => error.error.includes("NOGROUP")

export const readPending = (
  redis: RedisConnection,
  prefix: string,
  name: string,
  options: {
    readonly group: string
    readonly consumer?: string
    readonly count: number
    readonly minIdleMs?: number
  }
) =>
  Effect.gen(function*() {
    const key = yield* resolveStream(redis, prefix, name)
    const raw = yield* call<Array<[string, string, number, number]>>(
      redis,
      "XPENDING",
      "XPENDING",
      key,
      options.group,
      "IDLE",
      options.minIdleMs ?? 0,
      "-",
      "+",
      options.count,
      ...(options.consumer === undefined ? [] : [options.consumer])
    ).pipe(
      Effect.catchIf(isNoGroup, () =>
        Effect.fail(
          new BadInput({
            error: `stream ${key} has no consumer group ${JSON.stringify(options.group)}`,
            field: "group"
          })
        ))
    )
    return {
      stream: key,
      group: options.group,
      entries: raw.map(([id, consumer, idleMs, deliveries]) => ({
        id,
        consumer,
        idleMs: Number(idleMs),
        deliveries: Number(deliveries)
      }))
    } satisfies PendingPage
  })

const deadLetterMessage = (id: string, flat: ReadonlyArray<string>): DeadLetterMessage => {
  const entry = decodeEntry(id, flat)
  return { ...entry, source: deadLetterSource(entry.metadata), reason: entry.metadata.reason ?? null }
}

export const deadLetterSummary = (redis: RedisConnection, prefix: string, name: string) =>
  Effect.gen(function*() {
    const key = yield* resolveStream(redis, prefix, name, { orDeadLetters: true })
    const dlq = deadLetterKey(key)
    const byReason: Record<string, number> = {}
    const bySource = { consumer: 0, relay: 0 }
    let read = 0
    let start = "-"
    while (read < reasonScanLimit) {
      const page = yield* readRange(redis, dlq, { start, count: 1000, reverse: false })
      for (const [id, flat] of page.raw) {
        const message = deadLetterMessage(id, flat)
        const reason = message.reason ?? (message.source === "relay" ? "dead-lettered by the relay" : "unknown")
        byReason[reason] = (byReason[reason] ?? 0) + 1
        bySource[message.source]++
      }
      read += page.raw.length
      if (page.next === null) break
      start = page.next
    }
    const [count, first, last] = yield* pipeline(redis, "dead letters", [
      ["XLEN", dlq],
      ["XRANGE", dlq, "-", "+", "COUNT", 1],
      ["XREVRANGE", dlq, "+", "-", "COUNT", 1]
    ])
    const now = Date.now()
    const edge = (reply: unknown) => {
      const id = Array.isArray(reply) ? entryId(reply[0]) : null
      return id === null ? null : { id, ageSeconds: ageSeconds(id, now) }
    }
    const total = typeof count === "number" ? count : 0
    return {
      stream: key,
      deadLetterStream: dlq,
      count: total,
      byReason,
      bySource,
      oldest: edge(first),
      newest: edge(last),
      complete: read >= total
    } satisfies DeadLetterSummary
  })

export const readDeadLetters = (
  redis: RedisConnection,
  prefix: string,
  name: string,
  options: { readonly start?: string; readonly count: number }
) =>
  Effect.gen(function*() {
    const key = yield* resolveStream(redis, prefix, name, { orDeadLetters: true })
    const page = yield* readRange(redis, deadLetterKey(key), { ...options, reverse: false })
    return {
      stream: key,
      messages: page.raw.map(([id, flat]) => deadLetterMessage(id, flat)),
      next: page.next
    } satisfies DeadLetterPage
  })

/** Replays consumers' dead letters to their stream (see DeadLetters.ts); the relay's are skipped with why. */
export const replayDeadLetterSelection = (redis: RedisConnection, prefix: string, name: string, selection: Selection) =>
  Effect.gen(function*() {
    const key = yield* resolveStream(redis, prefix, name, { orDeadLetters: true })
    const result = yield* replayDeadLetters(redis, key, "all" in selection ? "all" : selection.ids).pipe(
      Effect.mapError((error) => new Unavailable({ error: `Redis replay failed: ${error.message}` }))
    )
    return result satisfies ReplayResult
  })

/** Deletes dead letters: the given ids (unknown ones reported), or the whole dead-letter stream. */
export const purgeDeadLetters = (redis: RedisConnection, prefix: string, name: string, selection: Selection) =>
  Effect.gen(function*() {
    const key = yield* resolveStream(redis, prefix, name, { orDeadLetters: true })
    const dlq = deadLetterKey(key)
    if ("all" in selection) {
      const replies = yield* Effect.tryPromise({
        try: () => redis.multi().xlen(dlq).del(dlq).exec(),
        catch: unavailable("purge")
      })
      return { purged: Number(replies?.[0]?.[1] ?? 0), notFound: [] } satisfies PurgeResult
    }
    const found = yield* pipeline(redis, "purge", selection.ids.map((id) => ["XRANGE", dlq, id, id]))
    const present = selection.ids.filter((_, i) => Array.isArray(found[i]) && (found[i] as Array<unknown>).length > 0)
    const purged = present.length === 0 ? 0 : yield* call<number>(redis, "XDEL", "XDEL", dlq, ...present)
    return {
      purged,
      notFound: selection.ids.filter((id) => !present.includes(id))
    } satisfies PurgeResult
  })
