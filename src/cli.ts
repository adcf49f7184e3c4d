/**
 * The command line, `outbox-relay [run|migrate|status|streams|tail|dlq|outbox|help]`, on Effect's CLI
 * module (main.ts calls `main`).
 *
 * `run` (also what no command means) validates every setting, refuses a database URL that goes through a
 * transaction-mode pooler, applies pending migrations, then relays until SIGTERM/SIGINT. `migrate` only
 * refuses such a URL and applies migrations. The operations commands (src/ops/CliCommands.ts) make the
 * HTTP API's calls straight to Postgres and Redis. `--help` works on every command (`help <command>` is
 * the same); `--version` prints the version.
 *
 * Exit codes: 0 done (also `tail` ended by Ctrl-C); 1 a migration failed, Postgres or Redis failed (for
 * `run` and `migrate`: also a TLS certificate that did not verify, checked once at start), a
 * stream or group is unknown, or an id given was not found; 2 bad usage (the error on stderr, then the
 * command's help) or a bad setting (one line naming the variable). The relay and the operations code
 * are imported only by the commands that use them.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Cause from "effect/Cause"
import { Argument, CliConfig, CliError, CliOutput, Command, Flag, GlobalFlag, TerminalCapabilities } from "effect/cli"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { identity } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import { createRequire } from "node:module"
import { operationsCommands, type RunAction } from "./ops/CliCommands.js"
import { migrate } from "./relay/Migrator.js"
import { type ConfigInvalid, loadSettings, RelayConfig, type RelaySettings } from "./relay/RelayConfig.js"
import { checkTls } from "./relay/TlsCheck.js"
import { loggerLayer } from "./shared/Logging.js"
import { retryMigration } from "./shared/Retry.js"

const name = "outbox-relay"
const { version } = createRequire(import.meta.url)("../package.json") as { readonly version: string }

/** Ends the program with `code`; what the user needs to know is already on stdout/stderr. */
export class ExitCode extends Schema.TaggedError<ExitCode>()("ExitCode", { code: Schema.Number }) {
  // Read by NodeRuntime.runMain: exit with this code, without logging the error.
  override readonly [Runtime.errorExitCode] = this.code
  override readonly [Runtime.errorReported] = false
}

const exitWith = (code: number) => code === 0 ? Effect.void : Effect.fail(new ExitCode({ code }))

// --- run and migrate --------------------------------------------------------------------------------

/** Migration problems that a later attempt can fix (the database is not up yet). */
const connectionPhases = new Set(["lock", "setup", "read"])

/**
 * Before anything takes a session lock: a database URL through a transaction-mode pooler stops `run` and
 * `migrate` here, with one line.
 */
const sessionsRequired = (
  settings: RelaySettings,
  options: { readonly listen: boolean; readonly whenUnreachable: "retry" | "skip" }
) =>
  Effect.flatMap(
    Effect.promise(() => import("./relay/SessionCheck.js")),
    ({ requireSessions }) => requireSessions(settings, options)
  )

const migrateOnce = (settings: RelaySettings) =>
  migrate({ databaseUrl: settings.databaseUrl, schema: settings.schema, databaseCa: settings.databaseCa }).pipe(
    Effect.tap((applied) => Effect.logInfo("migrations up to date").pipe(Effect.annotateLogs({ applied })))
  )

/** Bounds shutdown: if finalizers have not finished within the timeout, exit anyway. */
const onShutdownSignal = (timeout: Duration.Duration) => {
  const arm = (signal: string) => {
    setTimeout(() => {
      const message = `shutdown took longer than ${Duration.format(timeout)} after ${signal}; exiting`
      process.stderr.write(`${JSON.stringify({ level: "ERROR", message })}\n`)
      // Rows of an unfinished batch are released by Postgres when the connection closes.
      process.exit(1)
    }, Duration.toMillis(timeout)).unref()
  }
  process.once("SIGTERM", () => arm("SIGTERM"))
  process.once("SIGINT", () => arm("SIGINT"))
}

const runDaemon = (settings: RelaySettings) =>
  Effect.gen(function*() {
    yield* checkTls(settings, "redis and postgres")
    yield* sessionsRequired(settings, { listen: true, whenUnreachable: "retry" })
    if (settings.migrate) {
      yield* migrateOnce(settings).pipe(
        Effect.tapError((error) =>
          Effect.logWarning("migration failed").pipe(
            Effect.annotateLogs({ migration: error.migration, reason: error.message })
          )
        ),
        Effect.retry({
          schedule: retryMigration,
          while: (error) => connectionPhases.has(error.migration)
        })
      )
    }
    onShutdownSignal(settings.shutdownTimeout)
    // Loaded here so the other commands start without the daemon's modules.
    const { RelayDaemon } = yield* Effect.promise(() => import("./relay/Relay.js"))
    return yield* Layer.launch(RelayDaemon.pipe(Layer.provide(Layer.succeed(RelayConfig, settings))))
  })

/** Loads the settings (a bad one stops here), then runs `work` with the configured logger. */
const withSettings = <A, E, R>(work: (settings: RelaySettings) => Effect.Effect<A, E, R>) =>
  Effect.flatMap(loadSettings, (settings) => work(settings).pipe(Effect.provide(loggerLayer(settings))))

const relay = () => withSettings(runDaemon)

const runCommand = Command.make("run", {}, relay).pipe(
  Command.withDescription(
    "Apply pending migrations (unless RELAY_MIGRATE=false), then relay until SIGTERM or SIGINT. " +
      "This is what no command means."
  ),
  Command.withShortDescription("Apply pending migrations, then relay until SIGTERM (the default)")
)

const migrateOnly = () =>
  withSettings((settings) =>
    checkTls(settings, "postgres").pipe(
      Effect.andThen(sessionsRequired(settings, { listen: false, whenUnreachable: "skip" })),
      Effect.andThen(Effect.asVoid(migrateOnce(settings)))
    )
  )

const migrateCommand = Command.make("migrate", {}, migrateOnly).pipe(
  Command.withDescription("Apply pending migrations and exit; safe to run twice or concurrently")
)

// --- operations: status, streams, tail, dlq, outbox ------------------------------------------------

const actions = Effect.promise(() => import("./ops/CliActions.js"))

/** Loads the settings, runs the action over an `Operations` on them, exits with the code it returns. */
const runAction: RunAction<ExitCode | ConfigInvalid> = (action, needs) =>
  withSettings((settings) =>
    Effect.flatMap(actions, (loaded) => loaded.withOperations(settings, action(loaded, settings)))
  ).pipe(
    needs === "redis" ? withoutDatabase : identity,
    Effect.flatMap(exitWith)
  )

/**
 * Lets a Redis-only command run where no database URL is set: the placeholder satisfies the settings
 * and is never dialled (the Postgres pool connects on its first query, which such a command never runs).
 */
const withoutDatabase = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(Effect.context<never>(), (context) => {
    const current = Context.getOrUndefined(context, ConfigProvider.ConfigProvider) ??
      ConfigProvider.fromEnv({ preserveEmptyStrings: true })
    const placeholder = ConfigProvider.fromEnv({ env: { RELAY_DATABASE_URL: "postgres://unused.invalid/redis-only" } })
    return Effect.provideService(self, ConfigProvider.ConfigProvider, ConfigProvider.orElse(current, placeholder))
  })

const operations = operationsCommands(name, runAction)

// --- catalog ---------------------------------------------------------------------------------------

const catalogCommand = Command.make(
  "catalog",
  {
    module: Argument.String("module").pipe(
      Argument.withDescription("A module exporting an event catalog, e.g. dist/events.js")
    ),
    json: Flag.Boolean("json").pipe(
      Flag.withDefault(false),
      Flag.withDescription("Print the events as JSON, with each payload's JSON Schema")
    )
  },
  (options) =>
    Effect.promise(() => import("./events/CatalogCli.js")).pipe(
      Effect.flatMap((catalog) => catalog.list(options)),
      Effect.flatMap(exitWith)
    )
).pipe(
  Command.withDescription(
    "List the events of an application's catalog (type, topic, version, older versions still read); needs " +
      "no settings."
  ),
  Command.withShortDescription("List the events of an application's catalog")
)

// --- help and the whole command line ------------------------------------------------------------------

/** `help dlq replay` is `dlq replay --help`; an unknown word is a usage error, as it is without `help`. */
const helpFor = (words: ReadonlyArray<string>): Effect.Effect<void, CliError.ShowHelp, Command.Environment> => {
  const path = [name]
  let current: Command.Command.Any = command
  for (const word of words) {
    const next = current.subcommands.flatMap((group) => group.commands).find((sub) => sub.name === word)
    if (next === undefined) {
      const unknown = new CliError.UnknownSubcommand({ subcommand: word, parent: path, suggestions: [] })
      return Effect.fail(new CliError.ShowHelp({ commandPath: path, errors: [unknown] }))
    }
    path.push(word)
    current = next
  }
  // `--help` never runs a command, so this cannot fail.
  return Effect.orDie(run([...words, "--help"]))
}

const help = Command.make("help", {
  words: Argument.String("command").pipe(
    Argument.withDescription("The command to describe, e.g. dlq replay"),
    Argument.variadic()
  )
}, ({ words }) => Effect.suspend(() => helpFor(words))).pipe(
  Command.withDescription("Print help for a command (all commands when none is given)")
)

/** The whole command line; without a command it runs the relay. */
export const command = Command.make(name, {}, relay).pipe(
  Command.withDescription(
    "Moves committed rows of a Postgres outbox table to Redis Streams. " +
      "Settings come from RELAY_* environment variables; see the README."
  ),
  Command.withSubcommands([runCommand, migrateCommand, ...operations, catalogCommand, help])
)

/** A usage error as one line; Effect's own messages add suggestions on lines of their own. */
const describeUsageError = (error: CliError.NonShowHelpErrors): string => {
  const didYouMean = (suggestions: ReadonlyArray<string>) =>
    suggestions.length === 0 ? "" : ` Did you mean ${suggestions.map((s) => JSON.stringify(s)).join(" or ")}?`
  switch (error._tag) {
    case "UnknownSubcommand": {
      const words = [...(error.parent ?? []).slice(1), error.subcommand].join(" ")
      return `Unknown command ${JSON.stringify(words)}.${didYouMean(error.suggestions)}`
    }
    case "UnrecognizedOption":
      return `Unknown flag ${error.option}${error.command ? ` for ${error.command.join(" ")}` : ""}.` +
        didYouMean(error.suggestions)
    default:
      return error.message
  }
}

/** Help on stdout; a usage error on stderr: the error first, then the help of the command it concerns. */
const presenter: CliOutput.Presenter = {
  present: Effect.fnUntraced(function*(event) {
    const { canColor } = yield* TerminalCapabilities.TerminalCapabilities
    const formatter = CliOutput.defaultFormatter({ colors: canColor })
    switch (event._tag) {
      case "Help":
        return yield* Console.log(formatter.formatHelpDoc(event.helpDoc))
      case "Version":
        return yield* Console.log(formatter.formatVersion(event.name, event.version))
      case "InvalidInvocation": {
        const plain = CliOutput.defaultFormatter({ colors: false })
        const errors = event.errors.map(describeUsageError)
        return yield* Console.error([...errors, "", plain.formatHelpDoc(event.helpDoc)].join("\n"))
      }
    }
  })
}

// --help and --version only: the other built-ins (--log-level, --wizard, --completions) would compete
// with the RELAY_* settings or prompt on a terminal.
const cliLayer = Layer.mergeAll(
  CliConfig.layer({ builtIns: [GlobalFlag.Help, GlobalFlag.Version] }),
  CliOutput.layerPresenter(presenter)
)

/** Runs the command line on `args` (without node and the script); fails with `ExitCode` unless all went well. */
export const run = (args: ReadonlyArray<string>) =>
  Command.runWith(command, { version })(args).pipe(
    Effect.catchTags({
      // Already presented: the error and the command's help.
      ShowHelp: () => Effect.fail(new ExitCode({ code: 2 })),
      ConfigInvalid: (error) => Effect.andThen(Console.error(error.message), exitWith(2)),
      MigrationFailed: (error) =>
        Effect.andThen(Console.error(`Migration ${error.migration} failed: ${error.message}`), exitWith(1)),
      TlsRejected: (error) => Effect.andThen(Console.error(error.message), exitWith(1))
    }),
    Effect.catchIf(CliError.isCliError, (error) => Effect.andThen(Console.error(error.message), exitWith(2))),
    Effect.provide(cliLayer)
  )

/** The process: runs `args`; SIGTERM/SIGINT interrupt it, and a clean stop after a signal exits 0. */
export const main = (args: ReadonlyArray<string>): void =>
  NodeRuntime.runMain(run(args).pipe(Effect.provide(NodeServices.layer)), {
    teardown: (exit, onExit) =>
      Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)
  })
