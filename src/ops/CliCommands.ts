/**
 * The operations commands of the command line: `status`, `streams`, `tail`, `dlq list|replay|purge`
 * and `outbox dead list|replay`, the same calls the HTTP API offers. This module only declares them;
 * what they do is in CliActions.ts, loaded when one of them runs, through `run` from cli.ts (which
 * reads the settings and turns the action's number into the exit code).
 */
import { Argument, CliError, Command, Flag } from "effect/cli"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { RelaySettings } from "../relay/RelayConfig.js"
import type * as Actions from "./CliActions.js"
import type { OperationError } from "./Errors.js"
import { streamIdPattern, uuidPattern } from "./Model.js"
import type { Operations } from "./Operations.js"

/** An action: the exit code it returns, given the settings, over an `Operations` on them. */
export type Action = (
  actions: typeof Actions,
  settings: RelaySettings
) => Effect.Effect<number, OperationError, Operations>

/**
 * Runs an action and exits with its code; cli.ts supplies it (settings, logging, exit codes). An action
 * that only needs Redis runs without a database URL (consumer-only deployments have none).
 */
export type RunAction<E> = (action: Action, needs?: "redis") => Effect.Effect<void, E>

const json = Flag.Boolean("json").pipe(
  Flag.withDefault(false),
  Flag.withDescription("Print the JSON document the HTTP API answers for this call, instead of text")
)

const stream = Argument.String("stream").pipe(
  Argument.withDescription("The full stream key, e.g. outbox:orders (the prefix is RELAY_STREAM_PREFIX)")
)

const countUpTo1000 = (text: string) =>
  /^\d+$/.test(text) && Number(text) >= 1 && Number(text) <= 1000 ? Option.some(Number(text)) : Option.none()

const count = (defaultCount: number, what: string) =>
  Flag.String("count").pipe(
    Flag.filterMap(countUpTo1000, () => "an integer from 1 to 1000"),
    Flag.withMetavar("N"),
    Flag.withDefault(defaultCount),
    Flag.withDescription(`${what} (default ${defaultCount}, at most 1000)`)
  )

const all = (what: string) => Flag.Boolean("all").pipe(Flag.withDefault(false), Flag.withDescription(what))

const entryIds = Flag.String("id").pipe(
  Flag.filter((id) => streamIdPattern.test(id), () => "an entry id such as 1700000000000-0"),
  Flag.withMetavar("ID"),
  Flag.atLeast(0),
  Flag.withDescription("A dead letter's entry id (as `dlq list` shows it); repeat for several")
)

const eventIds = Flag.String("id").pipe(
  Flag.filter((id) => uuidPattern.test(id), () => "an event id (UUID)"),
  Flag.withMetavar("EVENT_ID"),
  Flag.atLeast(0),
  Flag.withDescription("A dead row's event id (as `outbox dead list` shows it); repeat for several")
)

/** `--id ...` or `--all`, exactly one of them. */
const oneOf = <Input extends { readonly all: boolean; readonly ids: ReadonlyArray<string> }>(
  command: string,
  metavar: string
) =>
  Command.validate(({ all, ids }: Input) =>
    all === (ids.length > 0)
      ? Effect.fail(new CliError.ValidationError({ message: `${command} needs either --id ${metavar} ... or --all.` }))
      : Effect.void
  )

/** A command that only groups others: run alone it is a usage error naming its commands. */
const group = (path: ReadonlyArray<string>, commands: string) => () =>
  Effect.fail(
    new CliError.ShowHelp({
      commandPath: path,
      errors: [
        new CliError.ValidationError({ message: `${path[path.length - 1]} needs a command: ${commands}.` })
      ]
    })
  )

const connections = "Reads RELAY_DATABASE_URL, RELAY_REDIS_URL, RELAY_STREAM_PREFIX and RELAY_SCHEMA like the " +
  "relay; needs no running relay and no RELAY_ADMIN_TOKEN."

const redisConnections = "Reads RELAY_REDIS_URL and RELAY_STREAM_PREFIX like the relay; needs no database, no " +
  "running relay and no RELAY_ADMIN_TOKEN."

/** The commands, under the program `name`. */
export const operationsCommands = <E>(name: string, run: RunAction<E>) => {
  const status = Command.make(
    "status",
    { json },
    ({ json }) => run((actions) => actions.status(json))
  ).pipe(
    Command.withDescription(
      "One screen: whether Postgres and Redis answer (and why not), the outbox backlog, oldest pending " +
        "age and dead rows, the relays with their lanes and slots, every stream with lag and pending per " +
        `group, and dead letters per stream. Exits 1 when either server failed. ${connections}`
    ),
    Command.withShortDescription("Postgres, Redis, the outbox, relays and streams on one screen")
  )

  const streams = Command.make(
    "streams",
    {
      stream: Argument.String("stream").pipe(
        Argument.withDescription("A stream key: show its groups and their consumers"),
        Argument.optional
      ),
      json
    },
    ({ json, stream }) => run((actions) => actions.streams(Option.getOrUndefined(stream), json), "redis")
  ).pipe(
    Command.withDescription(
      `Every stream under the prefix, or one stream with its groups and consumers. ${redisConnections}`
    ),
    Command.withShortDescription("The streams, or one stream with its groups and consumers")
  )

  const tail = Command.make(
    "tail",
    {
      stream,
      group: Flag.String("group").pipe(
        Flag.withMetavar("GROUP"),
        Flag.optional,
        Flag.withDescription(
          "Start after this group's last-delivered entry (what it has not received yet) instead of the last N"
        )
      ),
      count: count(10, "How many of the last entries to print before following"),
      json: Flag.Boolean("json").pipe(
        Flag.withDefault(false),
        Flag.withDescription("One JSON entry per line (as the API's entries call has them) instead of text")
      )
    },
    ({ count, group, json, stream }) =>
      run(
        (actions, settings) => actions.tail(settings, { stream, group: Option.getOrUndefined(group), count }, json),
        "redis"
      )
  ).pipe(
    Command.withDescription(
      "Print the last N entries of <stream>, then each new one as it arrives, until Ctrl-C (exit 0). One " +
        "line each: id, time added, event type, aggregate, payload. Only reads: never joins a group, so it " +
        `takes nothing from consumers and acknowledges nothing. ${redisConnections}`
    ),
    Command.withShortDescription("Print a stream's last entries, then follow it")
  )

  const dlqList = Command.make(
    "list",
    { stream, count: count(20, "How many to show, oldest first"), json },
    ({ count, json, stream }) => run((actions) => actions.listDeadLetters(stream, count, json), "redis")
  ).pipe(Command.withDescription(`Show the oldest dead letters of <stream> and why each one died. ${redisConnections}`))

  const dlqReplay = Command.make(
    "replay",
    { stream, ids: entryIds, all: all("Every dead letter of <stream>"), json },
    ({ all, ids, json, stream }) =>
      run((actions) => actions.replayDeadLetters(stream, all ? { all: true } : { ids }, json), "redis")
  ).pipe(
    oneOf("replay", "ID"),
    Command.withDescription(
      "Copy dead letters back to <stream> and delete them from {<stream>}:dlq. Those the relay dead-lettered " +
        "are skipped: replay them from Postgres (outbox dead replay). Exits 1 when an id was not found. " +
        redisConnections
    ),
    Command.withShortDescription("Copy dead letters back to <stream> and delete them from {<stream>}:dlq")
  )

  const dlqPurge = Command.make(
    "purge",
    { stream, ids: entryIds, all: all("Every dead letter of <stream>"), json },
    ({ all, ids, json, stream }) =>
      run((actions) => actions.purgeDeadLetters(stream, all ? { all: true } : { ids }, json), "redis")
  ).pipe(
    oneOf("purge", "ID"),
    Command.withDescription(
      `Delete dead letters from {<stream>}:dlq for good. Exits 1 when an id was not found. ${redisConnections}`
    ),
    Command.withShortDescription("Delete dead letters from {<stream>}:dlq")
  )

  const dlq = Command.make("dlq", {}, group([name, "dlq"], "list, replay or purge")).pipe(
    Command.withDescription(`List, replay or purge a stream's dead letters ({<stream>}:dlq). ${redisConnections}`),
    Command.withShortDescription("List, replay or purge a stream's dead letters"),
    Command.withSubcommands([dlqList, dlqReplay, dlqPurge])
  )

  const deadList = Command.make(
    "list",
    {
      topic: Flag.String("topic").pipe(
        Flag.withMetavar("TOPIC"),
        Flag.optional,
        Flag.withDescription("Only this topic")
      ),
      count: count(20, "How many to show, newest first"),
      json
    },
    ({ count, json, topic }) => run((actions) => actions.listDeadRows(Option.getOrUndefined(topic), count, json))
  ).pipe(
    Command.withDescription(
      `Show the outbox rows the relay gave up on (newest first) with their last error. ${connections}`
    ),
    Command.withShortDescription("Show the outbox rows the relay gave up on")
  )

  const deadReplay = Command.make(
    "replay",
    {
      ids: eventIds,
      all: all("Every dead row (of --topic, when given)"),
      topic: Flag.String("topic").pipe(
        Flag.withMetavar("TOPIC"),
        Flag.optional,
        Flag.withDescription("With --all: only this topic's dead rows")
      ),
      json
    },
    ({ all, ids, json, topic }) =>
      run((actions) =>
        actions.replayDeadRows(
          all ? { all: true, ...Option.match(topic, { onNone: () => ({}), onSome: (t) => ({ topic: t }) }) } : { ids },
          json
        )
      )
  ).pipe(
    oneOf("replay", "EVENT_ID"),
    Command.validate(({ all, topic }) =>
      !all && Option.isSome(topic)
        ? Effect.fail(new CliError.ValidationError({ message: "--topic goes with --all only." }))
        : Effect.void
    ),
    Command.withDescription(
      "Move dead outbox rows back to pending: the relay publishes them again at once (with a new row id, " +
        "the same event id). Exits 1 when an event id is not among the dead rows. " + connections
    ),
    Command.withShortDescription("Move dead outbox rows back to pending")
  )

  const dead = Command.make("dead", {}, group([name, "outbox", "dead"], "list or replay")).pipe(
    Command.withDescription("List or replay the outbox rows the relay dead-lettered"),
    Command.withSubcommands([deadList, deadReplay])
  )

  const outbox = Command.make("outbox", {}, group([name, "outbox"], "dead")).pipe(
    Command.withDescription(`The outbox table in Postgres: its dead rows. ${connections}`),
    Command.withShortDescription("The outbox table's dead rows"),
    Command.withSubcommands([dead])
  )

  return [status, streams, tail, dlq, outbox] as const
}
