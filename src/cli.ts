/**
 * The commands behind `node dist/main.js [run|migrate|dlq|help]` (main.ts starts this module).
 *
 * `run` (the default) validates every setting, applies pending migrations, then relays until
 * SIGTERM/SIGINT. `migrate` only applies migrations. A bad setting exits with code 2 and one line
 * naming the variable and what it accepts.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import { loggerLayer } from "./shared/Logging.js"
import { migrate } from "./relay/Migrator.js"
import { ConfigInvalid, loadSettings, RelayConfig, type RelaySettings } from "./relay/RelayConfig.js"

const usage = `Usage: outbox-relay [command]

Commands:
  run       apply pending migrations (unless RELAY_MIGRATE=false), then relay until SIGTERM (default)
  migrate   apply pending migrations and exit
  dlq       list or replay a stream's dead letters (uses RELAY_REDIS_URL):
              dlq list <stream> [--count N] [--json]
              dlq replay <stream> (--id ID [--id ID ...] | --all)
  help      print this text

Settings come from RELAY_* environment variables; see the README.`

/** Migration problems that a later attempt can fix (the database is not up yet). */
const connectionPhases = new Set(["lock", "setup", "read"])

const migrateOnce = (settings: RelaySettings) =>
  migrate({ databaseUrl: settings.databaseUrl, schema: settings.schema }).pipe(
    Effect.tap((applied) => Effect.logInfo("migrations up to date").pipe(Effect.annotateLogs({ applied })))
  )

const runDaemon = (settings: RelaySettings) =>
  Effect.gen(function*() {
    if (settings.migrate) {
      yield* migrateOnce(settings).pipe(
        Effect.tapError((error) =>
          Effect.logWarning("migration failed").pipe(
            Effect.annotateLogs({ migration: error.migration, reason: error.message })
          )
        ),
        Effect.retry({
          schedule: Schedule.min([Schedule.exponential("200 millis"), Schedule.spaced("5 seconds")]),
          while: (error) => connectionPhases.has(error.migration)
        })
      )
    }
    onShutdownSignal(settings.shutdownTimeout)
    // Loaded here so `migrate`, `dlq` and `help` start without the daemon's modules.
    const { RelayDaemon } = yield* Effect.promise(() => import("./relay/Relay.js"))
    return yield* Layer.launch(RelayDaemon.pipe(Layer.provide(Layer.succeed(RelayConfig, settings))))
  })

/** Bounds shutdown: if finalizers have not finished within the timeout, exit anyway. */
const onShutdownSignal = (timeout: Duration.Duration) => {
  const arm = (signal: string) => {
    setTimeout(() => {
      process.stderr.write(
        `${JSON.stringify({ level: "ERROR", message: `shutdown took longer than ${Duration.format(timeout)} after ${signal}; exiting` })}\n`
      )
      // Rows of an unfinished batch are released by Postgres when the connection closes.
      process.exit(1)
    }, Duration.toMillis(timeout)).unref()
  }
  process.once("SIGTERM", () => arm("SIGTERM"))
  process.once("SIGINT", () => arm("SIGINT"))
}

const command = process.argv[2] ?? "run"

const program = Effect.gen(function*() {
  if (command === "help" || command === "--help" || command === "-h") {
    return yield* Console.log(usage)
  }
  if (command === "dlq") {
    const redisUrl = process.env.RELAY_REDIS_URL || process.env.REDIS_URL || "redis://127.0.0.1:6379"
    const { runDlqCommand } = yield* Effect.promise(() => import("./consumer/DeadLetterCli.js"))
    const code = yield* runDlqCommand(process.argv.slice(3), redisUrl)
    return yield* Effect.sync(() => void (process.exitCode = code))
  }
  if (command !== "run" && command !== "migrate") {
    yield* Console.error(`Unknown command ${JSON.stringify(command)}.\n\n${usage}`)
    return yield* Effect.sync(() => process.exit(2))
  }
  const settings = yield* loadSettings
  const work = command === "migrate" ? Effect.asVoid(migrateOnce(settings)) : runDaemon(settings)
  return yield* work.pipe(Effect.provide(loggerLayer(settings)))
}).pipe(
  Effect.catchTag("ConfigInvalid", (error: ConfigInvalid) =>
    Effect.andThen(Console.error(error.message), Effect.sync(() => process.exit(2)))),
  Effect.catchTag("MigrationFailed", (error) =>
    Effect.andThen(
      Console.error(`Migration ${error.migration} failed: ${error.message}`),
      Effect.sync(() => process.exit(1))
    ))
)

NodeRuntime.runMain(program, {
  // SIGTERM/SIGINT interrupt the program; a clean stop after a signal is a successful exit.
  teardown: (exit, onExit) =>
    Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)
})
