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
import * as Render from "../../src/ops/CliRender.js"

// `migrate`, the operations commands and `help` must start without the daemon's modules: any import of
// the relay counts.
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
        for (const command of ["run", "migrate", "status", "streams", "tail", "dlq", "outbox", "catalog", "help"]) {
          assert.match(stdout, new RegExp(`^  ${command} `, "m"))
        }
      }))
  }

  const paths = [
    "run",
    "migrate",
    "status",
    "streams",
    "tail",
    "dlq",
    "dlq list",
    "dlq replay",
    "dlq purge",
    "outbox",
    "outbox dead",
    "outbox dead list",
    "outbox dead replay",
    "catalog",
    "help"
  ]
  for (const path of paths) {
    it.effect(`${path} --help describes it and needs no settings; help ${path} says the same`, () =>
      Effect.gen(function*() {
        const flag = yield* cli(`${path} --help`)
        assert.strictEqual(flag.code, 0)
        assert.strictEqual(flag.stderr, "")
        assert.include(flag.stdout, `USAGE\n  outbox-relay ${path} `)
        assert.deepStrictEqual(yield* cli(`help ${path}`), flag)
      }))
  }

  it.effect("the operations commands show their flags, --json on each", () =>
    Effect.gen(function*() {
      const flags: Array<[string, ReadonlyArray<RegExp>]> = [
        ["status", []],
        ["streams", [/\[<stream>\]|stream/]],
        ["tail", [/--group GROUP/, /--count N/]],
        ["dlq list", [/--count N/]],
        ["dlq replay", [/--id ID/, /--all/]],
        ["dlq purge", [/--id ID/, /--all/]],
        ["outbox dead list", [/--topic TOPIC/, /--count N/]],
        ["outbox dead replay", [/--id EVENT_ID/, /--all/, /--topic TOPIC/]]
      ]
      for (const [path, expected] of flags) {
        const { stdout } = yield* cli(`${path} --help`)
        for (const flag of [...expected, /--json/]) assert.match(stdout, flag, path)
        // No command of the operations surface asks for the admin token.
        assert.include(stdout.replace(/\s+/g, " "), "no RELAY_ADMIN_TOKEN", path)
      }
    }))

  it.effect("catalog lists an application's events, as JSON with their payload schemas", () =>
    Effect.gen(function*() {
      const text = yield* cli("catalog examples/orders/catalog.mjs")
      assert.strictEqual(text.code, 0)
      assert.match(text.stdout, /^orders\tOrderPlaced\tv2 \(reads v1\)$/m)
      const json = yield* cli("catalog examples/orders/catalog.mjs --json")
      const events = JSON.parse(json.stdout) as Array<{ type: string; payloadSchema: { type: string } }>
      assert.deepStrictEqual(events.map((e) => e.type).sort(), ["OrderCancelled", "OrderPlaced"])
      assert.strictEqual(events[0]!.payloadSchema.type, "object")
      const missing = yield* cli("catalog no/such/module.mjs")
      assert.strictEqual(missing.code, 1)
      assert.match(missing.stderr, /^no\/such\/module\.mjs: it could not be loaded/)
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
    ["dlq", /^dlq needs a command: list, replay or purge\.$/],
    ["dlq bogus", /^Unknown command "dlq bogus"\.$/],
    ["dlq list", /^Missing required argument: stream$/],
    ["dlq list --json", /^Missing required argument: stream$/],
    ["dlq list s --count 0", /^Invalid value for flag --count: "0"\. Expected: an integer from 1 to 1000$/],
    ["dlq list s --count x", /^Invalid value for flag --count: "x"\. Expected: an integer from 1 to 1000$/],
    ["dlq list s --count 1.5", /^Invalid value for flag --count: "1\.5"\. Expected: an integer from 1 to 1000$/],
    ["dlq list s --count 1001", /^Invalid value for flag --count: "1001"\. Expected: an integer from 1 to 1000$/],
    ["dlq list s --count", /^Missing value for flag --count/],
    ["dlq list s --all", /^Unknown flag --all for outbox-relay dlq list\.$/],
    ["dlq replay", /^Missing required argument: stream$/],
    ["dlq replay s", /^replay needs either --id ID \.\.\. or --all\.$/],
    ["dlq replay s --all --id 1-1", /^replay needs either --id ID \.\.\. or --all\.$/],
    ["dlq replay s --id abc", /^Invalid value for flag --id: "abc"\. Expected: an entry id such as 1700000000000-0$/],
    ["dlq replay s --id 1-1 extra", /^Unexpected positional argument: "extra"$/],
    ["dlq replay s --json", /^replay needs either --id ID \.\.\. or --all\.$/],
    ["dlq purge s", /^purge needs either --id ID \.\.\. or --all\.$/],
    ["dlq purge s --id x", /^Invalid value for flag --id: "x"\. Expected: an entry id such as 1700000000000-0$/],
    ["status extra", /^Unexpected positional argument: "extra"$/],
    ["streams a b", /^Unexpected positional argument: "b"$/],
    ["tail", /^Missing required argument: stream$/],
    ["tail s --count 0", /^Invalid value for flag --count: "0"\. Expected: an integer from 1 to 1000$/],
    ["tail s --group", /^Missing value for flag --group/],
    ["outbox", /^outbox needs a command: dead\.$/],
    ["outbox dead", /^dead needs a command: list or replay\.$/],
    ["outbox dead replay", /^replay needs either --id EVENT_ID \.\.\. or --all\.$/],
    ["outbox dead replay --id 1-1", /^Invalid value for flag --id: "1-1"\. Expected: an event id \(UUID\)$/],
    ["outbox dead replay --id 6f1c3f4e-8b0a-4d5e-9c2b-1a2b3c4d5e6f --topic orders", /^--topic goes with --all only\.$/],
    ["outbox dead list --count 0", /^Invalid value for flag --count: "0"\. Expected: an integer from 1 to 1000$/]
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

  const refused = { RELAY_DATABASE_URL: "postgres://app@127.0.0.1:1/app", RELAY_REDIS_URL: "redis://127.0.0.1:1" }
  const cases: Array<[string, RegExp]> = [
    ["streams", /^Redis connect failed: .*ECONNREFUSED/],
    ["tail outbox:orders", /^Redis connect failed: .*ECONNREFUSED/],
    ["dlq list outbox:orders", /^Redis connect failed: .*ECONNREFUSED/],
    ["dlq replay outbox:orders --all", /^Redis connect failed: .*ECONNREFUSED/],
    ["dlq purge outbox:orders --id 1-1", /^Redis connect failed: .*ECONNREFUSED/],
    ["outbox dead list", /^Postgres failed: .*ECONNREFUSED/],
    ["outbox dead replay --all", /^Postgres failed: .*ECONNREFUSED/]
  ]
  for (const [args, line] of cases) {
    it.effect(`${args} when the server refuses the connection`, () =>
      Effect.gen(function*() {
        const { code, stderr, stdout } = yield* cli(args, refused)
        assert.strictEqual(code, 1)
        assert.strictEqual(stdout, "")
        assert.strictEqual(lines(stderr).length, 1, stderr)
        assert.match(stderr, line)
      }))
  }

  it.effect("status when both refuse: each named with its reason, exit 1", () =>
    Effect.gen(function*() {
      const { code, stderr, stdout } = yield* cli("status", refused)
      assert.strictEqual(code, 1)
      assert.strictEqual(stderr, "")
      assert.match(stdout, /^postgres {2}FAILING: Postgres failed: .*ECONNREFUSED/m)
      assert.match(stdout, /^redis {5}FAILING: Redis connect failed: .*ECONNREFUSED/m)
    }))

  it.effect("the operations commands read the relay's settings: a missing database URL is a bad setting", () =>
    Effect.gen(function*() {
      const { code, stderr } = yield* cli("status", { RELAY_REDIS_URL: "redis://127.0.0.1:1" })
      assert.strictEqual(code, 2)
      assert.match(stderr, /^Missing RELAY_DATABASE_URL or DATABASE_URL/)
    }))
})

describe("text output of the operations commands", () => {
  it("ages read at a glance", () => {
    const cases: Array<[number, string]> = [
      [0, "0.0s"],
      [0.44, "0.4s"],
      [12.7, "12s"],
      [200, "3m 20s"],
      [7500, "2h 05m"],
      [3 * 86_400 + 4 * 3600 + 5, "3d 4h"]
    ]
    for (const [seconds, text] of cases) assert.strictEqual(Render.age(seconds), text, String(seconds))
  })

  it("tables align their columns without trailing blanks", () => {
    assert.deepStrictEqual(Render.table(["A", "LONGER", "C"], [["wide cell", "1", ""], ["x", "22", "z"]]), [
      "A          LONGER  C",
      "wide cell  1",
      "x          22      z"
    ])
  })

  it("an entry is one line: id, time added, type, aggregate, payload cut to the width", () => {
    const entry = {
      id: "1700000000000-3",
      eventId: "e-1",
      eventType: "OrderPlaced",
      topic: "orders",
      aggregateType: "",
      aggregateId: "o-1",
      tenantId: "",
      schemaVersion: 1,
      occurredAt: null,
      payload: { note: "x".repeat(500) },
      headers: {},
      metadata: {},
      decodeError: null
    }
    const piped = Render.entryLine(entry, undefined)
    assert.match(piped, /^1700000000000-3 {2}2023-11-14T22:13:20\.000Z {2}OrderPlaced {2}o-1 {2}\{"note":"x+…$/)
    assert.strictEqual(piped.length, "1700000000000-3  2023-11-14T22:13:20.000Z  OrderPlaced  o-1  ".length + 200)
    const terminal = Render.entryLine(entry, 80)
    assert.strictEqual(terminal.length, 80)
    assert.isTrue(terminal.endsWith("…"))
    assert.strictEqual(Render.entryLine({ ...entry, payload: { n: 1 } }, 80).split("  ").pop(), "{\"n\":1}")
  })
})

describe("lazy loading", () => {
  // Runs last in this file: every command above has had its chance to load the relay.
  it("no command above imported the relay", () => {
    assert.strictEqual(relayImports.count, 0)
  })
})
