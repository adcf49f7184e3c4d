/**
 * The command line in-process, without Postgres or Redis: `--help` on every command, usage errors
 * (exit 2, the error on the first line of stderr, then the command's help), bad settings (exit 2, one
 * line naming the variable), failures that are not the user's typing (exit 1), and no command but
 * `run` loading the relay.
 */
import * as NodeServices from "@effect/platform-node/NodeServices"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Console, Effect, Layer } from "effect"
import { TerminalCapabilities } from "effect/cli"
import { createRequire } from "node:module"
import { vi } from "vitest"
import { run } from "../../src/cli.js"

// `migrate`, `dlq` and `help` must start without the daemon's modules: any import of the relay counts.
const relayImports = vi.hoisted(() => ({ count: 0 }))
vi.mock("../../src/relay/Relay.js", () => {
  relayImports.count++
  return {}
})

const noColor = Layer.succeed(TerminalCapabilities.TerminalCapabilities, {
  canColor: false,
  canAnimate: false,
  canPrompt: false
})

interface Outcome {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs `outbox-relay <args>` with only `env` as its environment; never fails. */
const cli = (args: string | ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const stdout: Array<string> = []
    const stderr: Array<string> = []
    const console = {
      ...globalThis.console,
      log: (...parts: Array<unknown>) => void stdout.push(parts.join(" ")),
      error: (...parts: Array<unknown>) => void stderr.push(parts.join(" "))
    }
    const code = yield* run(typeof args === "string" ? args.split(" ").filter((arg) => arg !== "") : args).pipe(
      Effect.as(0),
      Effect.catchTag("ExitCode", (exit) => Effect.succeed(exit.code)),
      Effect.provideService(Console.Console, console as never),
      Effect.provide(Layer.mergeAll(NodeServices.layer, ConfigProvider.layer(ConfigProvider.fromEnv({ env })), noColor))
    )
    return { code, stdout: stdout.join("\n"), stderr: stderr.join("\n") } satisfies Outcome
  })

const lines = (text: string) => text.split("\n").filter((line) => line.trim() !== "")

describe("help", () => {
  for (const args of ["--help", "-h", "help"]) {
    it.effect(`${args} lists every command on stdout`, () =>
      Effect.gen(function*() {
        const { code, stderr, stdout } = yield* cli(args)
        assert.strictEqual(code, 0)
        assert.strictEqual(stderr, "")
        assert.include(stdout, "USAGE\n  outbox-relay <subcommand>")
        for (const command of ["run", "migrate", "dlq", "help"]) assert.match(stdout, new RegExp(`^  ${command} `, "m"))
      }))
  }

  for (const path of ["run", "migrate", "dlq", "dlq list", "dlq replay", "help"]) {
    it.effect(`${path} --help describes it and needs no settings; help ${path} says the same`, () =>
      Effect.gen(function*() {
        const flag = yield* cli(`${path} --help`)
        assert.strictEqual(flag.code, 0)
        assert.strictEqual(flag.stderr, "")
        assert.include(flag.stdout, `USAGE\n  outbox-relay ${path} `)
        assert.deepStrictEqual(yield* cli(`help ${path}`), flag)
      }))
  }

  it.effect("dlq list --help and dlq replay --help show their flags", () =>
    Effect.gen(function*() {
      const list = yield* cli("dlq list --help")
      assert.match(list.stdout, /--count N/)
      assert.match(list.stdout, /--json/)
      const replay = yield* cli("dlq replay --help")
      assert.match(replay.stdout, /--id ID/)
      assert.match(replay.stdout, /--all/)
    }))

  it.effect("--version prints the package version", () =>
    Effect.gen(function*() {
      const { version } = createRequire(import.meta.url)("../../package.json") as { version: string }
      const { code, stdout } = yield* cli("--version")
      assert.strictEqual(code, 0)
      assert.strictEqual(stdout, `outbox-relay v${version}`)
    }))
})

describe("usage errors exit 2: the error on the first line of stderr, then the command's help", () => {
  const cases: Array<[string, RegExp]> = [
    ["frobnicate", /^Unknown command "frobnicate"\.$/],
    ["--frobnicate", /^Unknown flag --frobnicate for outbox-relay\.$/],
    ["help frobnicate", /^Unknown command "frobnicate"\.$/],
    ["migrate extra", /^Unexpected positional argument: "extra"$/],
    ["run extra", /^Unexpected positional argument: "extra"$/],
    ["dlq", /^dlq needs a command: list or replay\.$/],
    ["dlq bogus", /^Unknown command "dlq bogus"\.$/],
    ["dlq list", /^Missing required argument: stream$/],
    ["dlq list --json", /^Missing required argument: stream$/],
    ["dlq list s --count 0", /^Invalid value for flag --count: "0"\. Expected: a positive integer$/],
    ["dlq list s --count x", /^Invalid value for flag --count: "x"\. Expected: a positive integer$/],
    ["dlq list s --count 1.5", /^Invalid value for flag --count: "1\.5"\. Expected: a positive integer$/],
    ["dlq list s --count", /^Missing value for flag --count/],
    ["dlq list s --all", /^Unknown flag --all for outbox-relay dlq list\.$/],
    ["dlq replay", /^Missing required argument: stream$/],
    ["dlq replay s", /^replay needs either --id ID \.\.\. or --all\.$/],
    ["dlq replay s --all --id 1-1", /^replay needs either --id ID \.\.\. or --all\.$/],
    ["dlq replay s --id abc", /^Invalid value for flag --id: "abc"\. Expected: an entry id such as 1700000000000-0$/],
    ["dlq replay s --id 1-1 extra", /^Unexpected positional argument: "extra"$/],
    ["dlq replay s --json", /^Unknown flag --json for outbox-relay dlq replay\.$/]
  ]
  for (const [args, firstLine] of cases) {
    it.effect(args, () =>
      Effect.gen(function*() {
        const { code, stderr, stdout } = yield* cli(args)
        assert.strictEqual(code, 2)
        assert.strictEqual(stdout, "")
        assert.match(stderr.split("\n")[0]!, firstLine)
        assert.include(stderr, "\n\nDESCRIPTION\n")
        assert.include(stderr, "\nUSAGE\n  outbox-relay ")
      }))
  }
})

describe("settings are checked before anything starts", () => {
  const database = "postgres://app:hunter2secret@127.0.0.1:1/app"
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ["migrate", {}, /^Missing RELAY_DATABASE_URL or DATABASE_URL: expected a postgres:\/\//],
    ["run", { RELAY_DATABASE_URL: database, RELAY_BATCH_SIZE: "lots" }, /^Invalid RELAY_BATCH_SIZE="lots": /],
    ["", { RELAY_DATABASE_URL: database, RELAY_REDIS_URL: "http://cache:6379" }, /^Invalid RELAY_REDIS_URL=<redacted>/]
  ]
  for (const [args, env, line] of cases) {
    it.effect(`${args || "(no command)"} with ${JSON.stringify(env)} exits 2 with one line`, () =>
      Effect.gen(function*() {
        const { code, stderr, stdout } = yield* cli(args, env)
        assert.strictEqual(code, 2)
        assert.strictEqual(stdout, "")
        assert.strictEqual(lines(stderr).length, 1)
        assert.match(stderr, line)
        assert.notInclude(stderr, "hunter2secret")
      }))
  }
})

describe("failures of the work itself exit 1 with one line", () => {
  // Port 1 refuses connections at once: no server is needed to see how a failure is reported.
  it.effect("migrate when Postgres refuses the connection", () =>
    Effect.gen(function*() {
      const { code, stderr } = yield* cli("migrate", { RELAY_DATABASE_URL: "postgres://app@127.0.0.1:1/app" })
      assert.strictEqual(code, 1)
      assert.deepStrictEqual(lines(stderr).length, 1)
      assert.match(stderr, /^Migration \w+ failed: /)
    }))

  for (const args of ["dlq list outbox:orders", "dlq replay outbox:orders --all"]) {
    it.effect(`${args} when Redis refuses the connection`, () =>
      Effect.gen(function*() {
        const { code, stderr, stdout } = yield* cli(args, { RELAY_REDIS_URL: "redis://127.0.0.1:1" })
        assert.strictEqual(code, 1)
        assert.strictEqual(stdout, "")
        assert.match(stderr, /^Redis failed \(.+\): /)
      }))
  }
})

describe("lazy loading", () => {
  // Runs last in this file: every command above has had its chance to load the relay.
  it("no command above imported the relay", () => {
    assert.strictEqual(relayImports.count, 0)
  })
})
