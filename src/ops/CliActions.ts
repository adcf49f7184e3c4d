/**
 * What the operations commands of the command line do once their arguments are parsed (cli.ts defines
 * the commands and loads this module only for them). Each call goes through `Operations`, the service
 * behind the HTTP API, straight to Postgres and Redis: no relay needs to run, and no admin token is
 * asked for (whoever has the RELAY_* credentials can do this anyway).
 *
 * Each action returns the exit code: 0 done; 1 a server failed, the stream or group is unknown, or an
 * id given was not found. Errors are one line on stderr; `--json` prints the API's document on stdout.
 */
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { RelayConfig, type RelaySettings } from "../relay/RelayConfig.js"
import * as Render from "./CliRender.js"
import { CliStatus, gatherStatus } from "./CliStatus.js"
import { type OperationError, Unavailable } from "./Errors.js"
import {
  DeadLetterPage,
  DeadRowPage,
  DeadRowReplay,
  type DeadRowSelection,
  Entry,
  PurgeResult,
  ReplayResult,
  type Selection,
  StreamDetails,
  StreamList
} from "./Model.js"
import { Operations } from "./Operations.js"
import { tail as followStream, type TailOptions } from "./Tail.js"

/** The terminal's width when stdout is one; output to a pipe or file is not cut to fit. */
const terminalWidth = (): number | undefined => process.stdout.isTTY ? process.stdout.columns : undefined

/** One JSON document, encoded by the Schema the API answers with. */
const printJson = <S extends Schema.Codec<unknown, unknown>>(schema: S, value: S["Type"]) =>
  Console.log(JSON.stringify(Schema.encodeSync(Schema.toCodecJson(schema))(value)))

const printLines = (lines: ReadonlyArray<string>) => lines.length === 0 ? Effect.void : Console.log(lines.join("\n"))
const printErrors = (lines: ReadonlyArray<string>) => lines.length === 0 ? Effect.void : Console.error(lines.join("\n"))

/** Dead rows and the outbox live in Postgres; `Unavailable` from there does not say so itself. */
const fromPostgres = <A, R>(effect: Effect.Effect<A, Unavailable, R>) =>
  Effect.mapError(effect, (error) => new Unavailable({ error: `Postgres failed: ${error.error}` }))

/**
 * Runs `action` with an `Operations` on the configured servers (closed afterwards); an operation
 * error becomes its sentence on stderr and exit code 1.
 */
export const withOperations = (
  settings: RelaySettings,
  action: Effect.Effect<number, OperationError, Operations>
): Effect.Effect<number> =>
  action.pipe(
    Effect.catch((error) => Console.error(error.error).pipe(Effect.as(1))),
    Effect.provide(Operations.layer.pipe(Layer.provide(Layer.succeed(RelayConfig, settings)))),
    Effect.scoped
  )

export const status = (json: boolean) =>
  Effect.gen(function*() {
    const result = yield* gatherStatus
    if (json) yield* printJson(CliStatus, result)
    else yield* printLines(Render.renderStatus(result))
    return result.postgres.ok && result.redis.ok ? 0 : 1
  })

export const streams = (stream: string | undefined, json: boolean) =>
  Effect.gen(function*() {
    const ops = yield* Operations
    if (stream === undefined) {
      const list = yield* ops.streams
      yield* json ? printJson(StreamList, list) : printLines(Render.renderStreamList(list))
    } else {
      const details = yield* ops.stream(stream)
      yield* json ? printJson(StreamDetails, details) : printLines(Render.renderStreamDetails(details))
    }
    return 0
  })

export const tail = (settings: RelaySettings, options: TailOptions, json: boolean) => {
  const width = terminalWidth()
  const print = (entry: Entry) => json ? printJson(Entry, entry) : Console.log(Render.entryLine(entry, width))
  const connection = {
    redisUrl: settings.redisUrl,
    connectTimeoutMs: Math.ceil(Duration.toMillis(settings.redisCommandTimeout)),
    tls: settings.redisTls,
    cluster: settings.redisCluster
  }
  return followStream(options, connection, print).pipe(Effect.as(0))
}

export const listDeadLetters = (stream: string, count: number, json: boolean) =>
  Effect.gen(function*() {
    const ops = yield* Operations
    const page = yield* ops.deadLetters(stream, { count })
    if (json) yield* printJson(DeadLetterPage, page)
    else yield* printLines(Render.renderDeadLetters(yield* ops.deadLetterSummary(stream), page))
    return 0
  })

export const replayDeadLetters = (stream: string, selection: Selection, json: boolean) =>
  Effect.gen(function*() {
    const result = yield* (yield* Operations).replayDeadLetters(stream, selection)
    if (json) yield* printJson(ReplayResult, result)
    else {
      const { err, out } = Render.renderReplay(stream, result)
      yield* printLines(out)
      yield* printErrors(err)
    }
    // The relay's dead letters are skipped by design; an id that does not exist is the user's mistake.
    return result.skipped.some((s) => s.reason === "no such dead letter") ? 1 : 0
  })

export const purgeDeadLetters = (stream: string, selection: Selection, json: boolean) =>
  Effect.gen(function*() {
    const result = yield* (yield* Operations).purgeDeadLetters(stream, selection)
    if (json) yield* printJson(PurgeResult, result)
    else {
      const { err, out } = Render.renderPurge(stream, result)
      yield* printLines(out)
      yield* printErrors(err)
    }
    return result.notFound.length > 0 ? 1 : 0
  })

export const listDeadRows = (topic: string | undefined, count: number, json: boolean) =>
  Effect.gen(function*() {
    const page = yield* fromPostgres((yield* Operations).deadRows({ topic, count }))
    yield* json ? printJson(DeadRowPage, page) : printLines(Render.renderDeadRows(page, terminalWidth()))
    return 0
  })

export const replayDeadRows = (selection: DeadRowSelection, json: boolean) =>
  Effect.gen(function*() {
    const result = yield* fromPostgres((yield* Operations).replayDeadRows(selection))
    if (json) yield* printJson(DeadRowReplay, result)
    else {
      const { err, out } = Render.renderDeadRowReplay(result)
      yield* printLines(out)
      yield* printErrors(err)
    }
    return result.notFound.length > 0 ? 1 : 0
  })
