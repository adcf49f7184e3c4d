/**
 * One service behind the three faces of the operations surface (HTTP API, dashboard, command line):
 * what the streams and the outbox hold, and the mutations an operator may run. It has its own Redis
 * client and a two-connection Postgres pool, so a slow listing never queues behind the relay's
 * publishing or its claims. Connection strings never appear in what it returns.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { makePostgresClient } from "../relay/Database.js"
import { RelayConfig } from "../relay/RelayConfig.js"
import { describe } from "../shared/Errors.js"
import { makeRedisClient } from "../shared/RedisClient.js"
import type { BadInput, NotFound } from "./Errors.js"
import { Unavailable } from "./Errors.js"
import type {
  DeadLetterPage,
  DeadLetterSummary,
  DeadRowPage,
  DeadRowReplay,
  DeadRowSelection,
  EntryPage,
  OutboxOverview,
  PendingPage,
  PurgeResult,
  ReplayResult,
  Selection,
  StreamDetails,
  StreamList
} from "./Model.js"
import { makeOutboxInspector } from "./OutboxInspector.js"
import * as Streams from "./StreamInspector.js"

type Fails<A> = Effect.Effect<A, Unavailable>
type Looks<A> = Effect.Effect<A, NotFound | Unavailable>
type Asks<A> = Effect.Effect<A, BadInput | NotFound | Unavailable>

export class Operations extends Context.Service<Operations, {
  readonly prefix: string
  readonly streams: Fails<StreamList>
  readonly stream: (name: string) => Looks<StreamDetails>
  readonly entries: (
    name: string,
    options: { readonly start?: string; readonly end?: string; readonly count: number; readonly reverse: boolean }
  ) => Looks<EntryPage>
  readonly pending: (
    name: string,
    options: { readonly group: string; readonly consumer?: string; readonly count: number; readonly minIdleMs?: number }
  ) => Asks<PendingPage>
  readonly deadLetterSummary: (name: string) => Looks<DeadLetterSummary>
  readonly deadLetters: (name: string, options: { readonly start?: string; readonly count: number }) => Looks<
    DeadLetterPage
  >
  readonly replayDeadLetters: (name: string, selection: Selection) => Looks<ReplayResult>
  readonly purgeDeadLetters: (name: string, selection: Selection) => Looks<PurgeResult>
  readonly outbox: Fails<OutboxOverview>
  readonly deadRows: (options: { readonly topic?: string | undefined; readonly count: number }) => Fails<DeadRowPage>
  readonly replayDeadRows: (selection: DeadRowSelection) => Fails<DeadRowReplay>
}>()("outbox-relay/ops/Operations") {
  /** The service on the configured servers; the clients connect on first use and close with the scope. */
  static readonly layer = Layer.effect(
    Operations,
    Effect.gen(function*() {
      const config = yield* RelayConfig
      const redis = yield* Effect.acquireRelease(
        Effect.sync(() =>
          makeRedisClient(config.redisUrl, {
            name: "outbox-relay-admin",
            commandTimeout: config.redisCommandTimeout,
            tls: config.redisTls,
            cluster: config.redisCluster
          })
        ),
        (client) => Effect.sync(() => client.disconnect())
      )
      const sql = yield* Effect.acquireRelease(
        Effect.sync(() =>
          makePostgresClient(config.databaseUrl, {
            max: 2,
            applicationName: "outbox-relay-admin",
            timeout: config.databaseTimeout,
            ca: config.databaseCa
          })
        ),
        (client) => Effect.promise(() => client.end({ timeout: 1 })).pipe(Effect.ignore)
      )
      // ioredis rejects connect() with "Connection is closed"; the reason (refused, DNS, auth) came as an event.
      let lastError: unknown
      redis.on("error", (error) => lastError = error)
      // Commands fail at once while disconnected; connect first (again after a drop the client reconnects itself).
      let connecting: Promise<void> | undefined
      const connected = <A, E>(effect: Effect.Effect<A, E>) =>
        Effect.suspend(() =>
          redis.status === "wait" || redis.status === "end"
            ? Effect.tryPromise({
              try: () => {
                if (connecting === undefined) lastError = undefined
                return connecting ??= redis.connect().finally(() => connecting = undefined)
              },
              catch: (cause) => new Unavailable({ error: `Redis connect failed: ${describe(lastError ?? cause)}` })
            }).pipe(Effect.andThen(effect))
            : effect
        )
      const prefix = config.streamPrefix
      const outbox = makeOutboxInspector(sql, config.schema, config.databaseTimeout)
      return Operations.of({
        prefix,
        streams: connected(Streams.listStreams(redis, prefix)),
        stream: (name) => connected(Streams.streamDetails(redis, prefix, name)),
        entries: (name, options) => connected(Streams.readEntries(redis, prefix, name, options)),
        pending: (name, options) => connected(Streams.readPending(redis, prefix, name, options)),
        deadLetterSummary: (name) => connected(Streams.deadLetterSummary(redis, prefix, name)),
        deadLetters: (name, options) => connected(Streams.readDeadLetters(redis, prefix, name, options)),
        replayDeadLetters: (name, selection) =>
          connected(Streams.replayDeadLetterSelection(redis, prefix, name, selection)),
        purgeDeadLetters: (name, selection) => connected(Streams.purgeDeadLetters(redis, prefix, name, selection)),
        outbox: outbox.overview,
        deadRows: outbox.listDead,
        replayDeadRows: outbox.replayDead
      })
    })
  )
}
