/**
 * The Redis side of one consumer (ioredis): the group's commands, on two connections.
 *
 * - The *blocking* connection only runs `XREADGROUP ... BLOCK`. It has no command timeout (a blocked
 *   read is supposed to wait) but a watchdog: a read not answered within `block + blockGrace` means
 *   the connection is half dead (peer gone without a FIN, server paused), so it is dropped and
 *   reconnected. It never resends an unanswered command after a reconnect (a resent read would
 *   deliver entries to a promise nobody awaits any more); entries the lost read may have delivered
 *   are found again by reading the consumer's own pending list.
 * - The *command* connection runs everything else with a timeout and auto-pipelining, so the XACKs
 *   of many handlers finishing in one tick leave in one write.
 *
 * Both fail fast while disconnected (`enableOfflineQueue: false`) and reconnect in the background;
 * the consumer's loops decide when to try again.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { describe } from "../shared/Errors.js"
import { makeRedisClient, type RedisConnection } from "../shared/RedisClient.js"
import { deadLetterKey } from "../shared/RedisKeys.js"
import type { RawEntry } from "./Envelope.js"
import { ConsumerRedisUnavailable } from "./Errors.js"
import type { ResolvedOptions } from "./Options.js"

/**
 * renew: resets the idle time of entries this consumer still owns, so messages it holds (queued
 * behind others of their aggregate, or running) are not reclaimed as abandoned. Ownership is checked
 * in the script, so an entry another consumer already took over is not taken back.
 * KEYS[1] the stream; ARGV[1] group; ARGV[2] consumer; ARGV[3..] entry ids.
 * Returns the ids this consumer no longer owns.
 */
const renewScript = `
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost`

/** An entry with how many times the group delivered it (this delivery included). */
export interface Delivery extends RawEntry {
  readonly deliveryCount: number
}

type RenewRedis = RedisConnection & {
  consumerRenew(stream: string, group: string, consumer: string, ...ids: Array<string>): Promise<Array<string>>
}

export interface GroupClient {
  /** XGROUP CREATE ... MKSTREAM from `startId` ("0" or "$"); an existing group is left as it is. */
  readonly ensureGroup: (startId: string) => Effect.Effect<void, ConsumerRedisUnavailable>
  /** New entries (`>`), waiting up to `block`; empty when none came. */
  readonly readNew: (count: number) => Effect.Effect<ReadonlyArray<Delivery>, ConsumerRedisUnavailable>
  /** This consumer's own pending entries after `afterId` (what it was given but never acknowledged). */
  readonly readOwnPending: (
    afterId: string,
    count: number
  ) => Effect.Effect<ReadonlyArray<Delivery>, ConsumerRedisUnavailable>
  /** XAUTOCLAIM: takes over entries idle for `minIdle` ms; returns the next cursor ("0-0" at the end). */
  readonly reclaimIdle: (
    cursor: string,
    count: number
  ) => Effect.Effect<{ readonly next: string; readonly deliveries: ReadonlyArray<Delivery> }, ConsumerRedisUnavailable>
  readonly ack: (ids: ReadonlyArray<string>) => Effect.Effect<void, ConsumerRedisUnavailable>
  /** Copies the entry to `{<stream>}:dlq` with `extra` fields and acknowledges it, atomically (MULTI). */
  readonly deadLetter: (
    entry: RawEntry,
    extra: ReadonlyArray<string>
  ) => Effect.Effect<void, ConsumerRedisUnavailable>
  /** Resets the idle time of entries still owned; returns those owned by someone else now. */
  readonly renew: (ids: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<string>, ConsumerRedisUnavailable>
  /** Drops the blocking connection for good: a read in progress ends at once (used on stop). */
  readonly closeBlocking: Effect.Effect<void>
  /** The group's row of `XINFO GROUPS`; undefined when the stream or the group does not exist. */
  readonly groupInfo: Effect.Effect<GroupInfo | undefined, ConsumerRedisUnavailable>
}

/** What `XINFO GROUPS` says about one group. */
export interface GroupInfo {
  /** Entries delivered to the group and not acknowledged yet. */
  readonly pending: number
  /** Entries not delivered to the group yet; null when Redis cannot tell (after XDEL or XSETID). */
  readonly lag: number | null
}

/** The `XINFO GROUPS` row of `group` (a flat `name, value, ...` list per group). */
export const findGroupInfo = (reply: unknown, group: string): GroupInfo | undefined => {
  for (const row of (reply ?? []) as Array<Array<unknown>>) {
    const field = (name: string) => {
      const i = row.indexOf(name)
      return i >= 0 && i % 2 === 0 ? row[i + 1] : undefined
    }
    if (String(field("name")) !== group) continue
    const lag = field("lag")
    return { pending: Number(field("pending") ?? 0), lag: lag === null || lag === undefined ? null : Number(lag) }
  }
  return undefined
}

/** XREADGROUP / XAUTOCLAIM entry lists: `[[id, [field, value, ...] | null], ...]`. */
const toEntries = (raw: unknown): Array<RawEntry> =>
  ((raw ?? []) as Array<[string, Array<string> | null]>).map(([id, fields]) => ({ id, fields }))

/** New entries of XREADGROUP `>`: first deliveries, built in one pass (one object per entry). */
const toFirstDeliveries = (raw: unknown): Array<Delivery> => {
  const entries = (raw ?? []) as Array<[string, Array<string> | null]>
  const out = new Array<Delivery>(entries.length)
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!
    out[i] = { id: entry[0], fields: entry[1], deliveryCount: 1 }
  }
  return out
}

/** Opens both connections (closed with the scope) and returns the group's commands. */
export const makeGroupClient = (options: ResolvedOptions): Effect.Effect<GroupClient, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { stream, group, consumer } = options
    const open = (name: string, timeout: number | undefined) =>
      Effect.acquireRelease(
        Effect.sync(() =>
          makeRedisClient(options.redisUrl, {
            name,
            commandTimeout: timeout === undefined ? undefined : Duration.millis(timeout),
            connectTimeout: "5 seconds",
            // The command connection gathers the XACKs of many handlers finishing in one tick.
            autoPipelining: timeout !== undefined,
            resendUnanswered: false,
            tls: options.tls,
            cluster: options.cluster
          })
        ),
        (client) =>
          Effect.promise(() => client.quit().catch(() => "")).pipe(
            Effect.timeout("1 second"),
            Effect.ignore,
            // Whatever QUIT did (or not, Redis being down), the socket is closed and never reopened.
            Effect.ensuring(Effect.sync(() => client.disconnect(false)))
          )
      )
    const commands = (yield* open(`outbox-consumer:${consumer}`, options.commandTimeoutMillis)) as RenewRedis
    commands.defineCommand("consumerRenew", { numberOfKeys: 1, lua: renewScript })
    const blocking = yield* open(`outbox-consumer-read:${consumer}`, undefined)
    let blockingClosed = false
    // Connect in the background; until then commands fail fast and the loops retry.
    yield* Effect.promise(() => Promise.allSettled([commands.connect(), blocking.connect()])).pipe(
      Effect.timeoutOption(Duration.millis(options.commandTimeoutMillis))
    )

    const run = <A>(operation: string, f: () => Promise<A>) =>
      Effect.tryPromise({
        try: f,
        catch: (cause) => new ConsumerRedisUnavailable({ operation, message: describe(cause) })
      }).pipe(
        Effect.tapError((error) =>
          // A command that timed out on an open connection: the connection may be half dead; replace it.
          error.message.includes("Command timed out") && commands.status === "ready"
            ? Effect.sync(() => commands.disconnect(true))
            : Effect.void
        )
      )

    /** Adds each entry's delivery count, read with XPENDING over the entries' id range. */
    const withDeliveryCounts = (entries: ReadonlyArray<RawEntry>) =>
      entries.length === 0
        ? Effect.succeed([] as Array<Delivery>)
        : run("xpending", () =>
          commands.call(
            "XPENDING",
            stream,
            group,
            entries[0]!.id,
            entries[entries.length - 1]!.id,
            entries.length,
            consumer
          )).pipe(Effect.map((raw) => {
            const counts = new Map(
              (raw as Array<[string, string, number, number]>).map(([id, , , n]) => [id, Number(n)])
            )
            return entries.map((entry) => ({ ...entry, deliveryCount: counts.get(entry.id) ?? 1 }))
          }))

    const ensureGroup = (startId: string) =>
      run("xgroup create", () => commands.call("XGROUP", "CREATE", stream, group, startId, "MKSTREAM")).pipe(
        Effect.catchIf((error) => error.message.includes("BUSYGROUP"), () => Effect.void),
        Effect.asVoid
      )

    const readNew = (count: number) =>
      run(
        "xreadgroup",
        () =>
          blocking.call(
            "XREADGROUP",
            "GROUP",
            group,
            consumer,
            "COUNT",
            count,
            "BLOCK",
            options.blockMillis,
            "STREAMS",
            stream,
            ">"
          )
      ).pipe(
        Effect.timeoutOrElse({
          duration: Duration.millis(options.blockMillis + options.blockGraceMillis),
          orElse: () =>
            Effect.andThen(
              // Half-dead connection: drop it (the unanswered read is rejected, never resent) and reconnect.
              Effect.sync(() => blockingClosed || blocking.disconnect(true)),
              Effect.fail(
                new ConsumerRedisUnavailable({
                  operation: "xreadgroup",
                  message: `no reply within ${options.blockMillis + options.blockGraceMillis} ms; connection replaced`
                })
              )
            )
        }),
        Effect.map((reply) => {
          const streams = reply as Array<[string, unknown]> | null
          return streams === null ? [] : toFirstDeliveries(streams[0]![1])
        })
      )

    const readOwnPending = (afterId: string, count: number) =>
      run(
        "xreadgroup pending",
        () => commands.call("XREADGROUP", "GROUP", group, consumer, "COUNT", count, "STREAMS", stream, afterId)
      ).pipe(Effect.flatMap((reply) => {
        const streams = reply as Array<[string, unknown]> | null
        return withDeliveryCounts(streams === null ? [] : toEntries(streams[0]![1]))
      }))

    const reclaimIdle = (cursor: string, count: number) =>
      run(
        "xautoclaim",
        () => commands.call("XAUTOCLAIM", stream, group, consumer, options.claimIdleMillis, cursor, "COUNT", count)
      ).pipe(Effect.flatMap((reply) => {
        const [next, entries] = reply as [string, unknown]
        // Redis 7 drops entries deleted from the stream from the pending list itself (third element).
        return withDeliveryCounts(toEntries(entries).filter((e) => e.fields !== null)).pipe(
          Effect.map((deliveries) => ({ next, deliveries }))
        )
      }))

    const ack = (ids: ReadonlyArray<string>) =>
      ids.length === 0
        ? Effect.void
        : run("xack", () => commands.call("XACK", stream, group, ...ids)).pipe(Effect.asVoid)

    const deadLetter = (entry: RawEntry, extra: ReadonlyArray<string>) =>
      run("dead letter", async () => {
        const replies = await commands.multi()
          .xadd(deadLetterKey(stream), "*", ...(entry.fields ?? []), ...extra)
          .xack(stream, group, entry.id)
          .exec()
        const failed = replies?.find(([error]) => error !== null)
        if (!replies || failed) throw failed?.[0] ?? new Error("transaction aborted")
      })

    const renew = (ids: ReadonlyArray<string>) =>
      ids.length === 0
        ? Effect.succeed([] as ReadonlyArray<string>)
        : run("renew", () => commands.consumerRenew(stream, group, consumer, ...ids))

    const closeBlocking = Effect.sync(() => {
      blockingClosed = true
      blocking.disconnect(false)
    })

    const groupInfo = run("xinfo groups", () => commands.call("XINFO", "GROUPS", stream)).pipe(
      Effect.map((reply) => findGroupInfo(reply, group)),
      // No stream yet: nothing to report.
      Effect.catchIf((error) => error.message.includes("no such key"), () => Effect.succeed(undefined))
    )

    return {
      groupInfo,
      ensureGroup,
      readNew,
      readOwnPending,
      reclaimIdle,
      ack,
      deadLetter,
      renew,
      closeBlocking
    } satisfies GroupClient
  })
