/**
 * Every setting of the relay, read from `RELAY_*` environment variables (through Effect's
 * `ConfigProvider`, so tests can hand in a map), validated once at start.
 *
 * The `settings` table below is the single source of truth: the config service, the one-line error a
 * bad value produces, and the README table (checked by a test) all come from it.
 */
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { falseWords, trueWords } from "./BooleanWords.js"

/** A bad or missing setting; `message` is one line naming the variable and what it accepts. */
export class ConfigInvalid extends Schema.TaggedError<ConfigInvalid>()("ConfigInvalid", {
  variable: Schema.String,
  message: Schema.String
}) {}

type Parse<A> = (raw: string) => Option.Option<A>

interface Setting<A> {
  /** Environment variable names, first one wins. */
  readonly names: ReadonlyArray<string>
  /** Default as written in the README, or undefined when the setting is required. */
  readonly default: string | undefined
  /** What the variable accepts, as shown in the error line and the README. */
  readonly accepts: string
  readonly description: string
  readonly parse: Parse<A>
  readonly secret?: boolean
}

const int = (min: number, max: number): Parse<number> => (raw) => {
  const trimmed = raw.trim()
  if (!/^-?\d+$/.test(trimmed)) return Option.none()
  const n = Number(trimmed)
  return n >= min && n <= max ? Option.some(n) : Option.none()
}

const duration = (min: Duration.Duration): Parse<Duration.Duration> => (raw) => {
  const trimmed = raw.trim()
  // A bare number is milliseconds; otherwise "500 millis", "2 seconds", "1 minute"...
  const decoded = /^\d+$/.test(trimmed)
    ? Option.some(Duration.millis(Number(trimmed)))
    : Duration.fromInput(trimmed as Duration.Input)
  return Option.filter(decoded, (d) => Duration.isGreaterThanOrEqualTo(d, min))
}

const durationBetween = (min: Duration.Duration, max: Duration.Duration): Parse<Duration.Duration> => (raw) =>
  Option.filter(duration(min)(raw), (d) => Duration.isLessThanOrEqualTo(d, max))

const url = (protocols: ReadonlyArray<string>): Parse<Redacted.Redacted<string>> => (raw) => {
  try {
    const parsed = new URL(raw.trim())
    return protocols.includes(parsed.protocol) ? Option.some(Redacted.make(raw.trim())) : Option.none()
  } catch {
    return Option.none()
  }
}

const oneOf = <const L extends string>(values: ReadonlyArray<L>): Parse<L> => (raw) => {
  const v = raw.trim().toLowerCase()
  return values.includes(v as L) ? Option.some(v as L) : Option.none()
}

const regex: Parse<RegExp> = (raw) => {
  try {
    return Option.some(new RegExp(raw))
  } catch {
    return Option.none()
  }
}

const text = (pattern: RegExp): Parse<string> => (raw) => pattern.test(raw) ? Option.some(raw) : Option.none()

const bool: Parse<boolean> = (raw) => {
  const v = raw.trim().toLowerCase()
  if (trueWords.includes(v)) return Option.some(true)
  if (falseWords.includes(v)) return Option.some(false)
  return Option.none()
}

const durationAccepts = "a duration: milliseconds (\"500\") or \"500 millis\", \"2 seconds\", \"1 minute\""

/** Every setting, in README order. */
export const settings = {
  databaseUrl: {
    names: ["RELAY_DATABASE_URL", "DATABASE_URL"],
    default: undefined,
    accepts: "a postgres:// or postgresql:// URL",
    description: "Postgres holding `outbox_events` (falls back to `DATABASE_URL`).",
    parse: url(["postgres:", "postgresql:"]),
    secret: true
  } satisfies Setting<Redacted.Redacted<string>>,
  listenDatabaseUrl: {
    names: ["RELAY_LISTEN_DATABASE_URL"],
    default: "the database URL",
    accepts: "a postgres:// or postgresql:// URL",
    description: "Connection used only for LISTEN; point it past a transaction-mode pooler such as PgBouncer.",
    parse: url(["postgres:", "postgresql:"]),
    secret: true
  } satisfies Setting<Redacted.Redacted<string>>,
  redisUrl: {
    names: ["RELAY_REDIS_URL", "REDIS_URL"],
    default: "redis://127.0.0.1:6379",
    accepts: "a redis:// or rediss:// URL",
    description: "Redis receiving the streams (falls back to `REDIS_URL`).",
    parse: url(["redis:", "rediss:"]),
    secret: true
  } satisfies Setting<Redacted.Redacted<string>>,
  schema: {
    names: ["RELAY_SCHEMA"],
    default: "public",
    accepts: "a Postgres schema name (letters, digits, _; starting with a letter or _)",
    description: "Schema of `outbox_events` and the migrations table; created by `migrate` when missing.",
    parse: text(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/)
  } satisfies Setting<string>,
  streamPrefix: {
    names: ["RELAY_STREAM_PREFIX"],
    default: "outbox:",
    accepts: "up to 100 characters without spaces or braces",
    description: "Stream key = prefix + topic. Dead letters go to `<stream>:dlq`.",
    parse: text(/^[^\s{}]{0,100}$/)
  } satisfies Setting<string>,
  batchSize: {
    names: ["RELAY_BATCH_SIZE"],
    default: "1000",
    accepts: "an integer from 1 to 10000",
    description: "Rows claimed (and deleted) by one statement; published in one Redis round trip.",
    parse: int(1, 10_000)
  } satisfies Setting<number>,
  concurrency: {
    names: ["RELAY_CONCURRENCY"],
    default: "2",
    accepts: "an integer from 1 to 16",
    description: "Claim lanes in this process, at most. The first always relays; the others join only while there is a backlog (the first claimed a full batch) and leave once their slots are empty, so a steady trickle costs one claim per wake-up. Each lane has its own connection and slots (so order per aggregate holds) and claims while another publishes (README, Operating it: Lanes).",
    parse: int(1, 16)
  } satisfies Setting<number>,
  pollInterval: {
    names: ["RELAY_POLL_INTERVAL"],
    default: "5 seconds",
    accepts: `${durationAccepts}, at least 10 ms`,
    description: "Slow fallback poll; LISTEN/NOTIFY wakes the relay at once, this only catches missed notifications.",
    parse: duration(Duration.millis(10))
  } satisfies Setting<Duration.Duration>,
  busyPause: {
    names: ["RELAY_BUSY_PAUSE"],
    default: "0",
    accepts: `${durationAccepts}, at most 1 second`,
    description: "While producers keep a lane busy (two claims in a row found rows) and a claim comes back less than full, wait this long before the next claim, so batches grow and the relay spends less CPU per event (more left for producers on a shared machine) at the cost of up to this much latency under load. 0: claim again at once.",
    parse: durationBetween(Duration.zero, Duration.seconds(1))
  } satisfies Setting<Duration.Duration>,
  listenCheckInterval: {
    names: ["RELAY_LISTEN_CHECK_INTERVAL"],
    default: "5 seconds",
    accepts: `${durationAccepts}, at least 100 ms`,
    description: "How often the LISTEN connection proves it is alive (a NOTIFY to itself that must come back).",
    parse: duration(Duration.millis(100))
  } satisfies Setting<Duration.Duration>,
  listenCheckTimeout: {
    names: ["RELAY_LISTEN_CHECK_TIMEOUT"],
    default: "2 seconds",
    accepts: `${durationAccepts}, at least 10 ms`,
    description: "A liveness check slower than this replaces the LISTEN connection.",
    parse: duration(Duration.millis(10))
  } satisfies Setting<Duration.Duration>,
  maxPayloadBytes: {
    names: ["RELAY_MAX_PAYLOAD_BYTES"],
    default: "1048576",
    accepts: "an integer from 1 to 536870912",
    description: "Larger payloads (JSON text, bytes) are dead-lettered instead of published.",
    parse: int(1, 512 * 1024 * 1024)
  } satisfies Setting<number>,
  topicPattern: {
    names: ["RELAY_TOPIC_PATTERN"],
    default: "^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$",
    accepts: "a JavaScript regular expression",
    description: "Topics not matching are dead-lettered (the table's own check is the outer bound).",
    parse: regex
  } satisfies Setting<RegExp>,
  retention: {
    names: ["RELAY_RETENTION"],
    default: "0",
    accepts: `${durationAccepts}; 0 deletes rows as they are published`,
    description: "Keep published rows this long (marked `published_at`, then purged): `event_id` dedupes producer retries for that window. Costs an UPDATE instead of a DELETE per event.",
    parse: duration(Duration.zero)
  } satisfies Setting<Duration.Duration>,
  vacuumThreshold: {
    names: ["RELAY_VACUUM_THRESHOLD"],
    default: "10000",
    accepts: "an integer from 0 to 1000000000",
    description: "Every 10 s, when `outbox_events` holds more dead tuples than this (rows the relay deleted or updated), the relay runs `VACUUM (SKIP_LOCKED)` on it, so claims stay fast between autovacuum runs (which come at most once a minute by default). 0 leaves it to autovacuum. Needs the table's owner, the database owner or a superuser (else logged once and left to autovacuum).",
    parse: int(0, 1_000_000_000)
  } satisfies Setting<number>,
  streamMaxLen: {
    names: ["RELAY_STREAM_MAXLEN"],
    default: "0",
    accepts: "an integer from 0 (no trimming) to 2147483647",
    description: "When above 0, every XADD trims its stream with `MAXLEN ~ n`.",
    parse: int(0, 2_147_483_647)
  } satisfies Setting<number>,
  retryBaseDelay: {
    names: ["RELAY_RETRY_BASE_DELAY"],
    default: "100 millis",
    accepts: `${durationAccepts}, at least 1 ms`,
    description: "First delay of the jittered exponential retry after a transient failure.",
    parse: duration(Duration.millis(1))
  } satisfies Setting<Duration.Duration>,
  retryMaxDelay: {
    names: ["RELAY_RETRY_MAX_DELAY"],
    default: "10 seconds",
    accepts: `${durationAccepts}, at least 1 ms`,
    description: "Cap of the retry delay. Transient failures are retried without limit.",
    parse: duration(Duration.millis(1))
  } satisfies Setting<Duration.Duration>,
  redisCommandTimeout: {
    names: ["RELAY_REDIS_COMMAND_TIMEOUT"],
    default: "5 seconds",
    accepts: `${durationAccepts}, at least 10 ms`,
    description: "A Redis reply slower than this fails the batch (retried; rows go back to the table).",
    parse: duration(Duration.millis(10))
  } satisfies Setting<Duration.Duration>,
  databaseTimeout: {
    names: ["RELAY_DATABASE_TIMEOUT"],
    default: "30 seconds",
    accepts: `${durationAccepts}, at least 100 ms`,
    description: "Upper bound for one relay statement; also the server-side `idle_in_transaction_session_timeout`.",
    parse: duration(Duration.millis(100))
  } satisfies Setting<Duration.Duration>,
  leaseTimeout: {
    names: ["RELAY_LEASE_TIMEOUT"],
    default: "10 seconds",
    accepts: `${durationAccepts}, from 3 seconds`,
    description: "With several relays: how fast the others take over the slots of one that died (or lost its connection).",
    parse: duration(Duration.seconds(3))
  } satisfies Setting<Duration.Duration>,
  shutdownTimeout: {
    names: ["RELAY_SHUTDOWN_TIMEOUT"],
    default: "10 seconds",
    accepts: `${durationAccepts}, at least 100 ms`,
    description: "On SIGTERM/SIGINT: stop claiming, finish the batch in flight, exit within this time.",
    parse: duration(Duration.millis(100))
  } satisfies Setting<Duration.Duration>,
  httpHost: {
    names: ["RELAY_HTTP_HOST"],
    default: "127.0.0.1",
    accepts: "a host name or IP address to bind",
    description: "Address of the admin HTTP server (`0.0.0.0` in a container).",
    parse: text(/^[A-Za-z0-9.:_-]{1,255}$/)
  } satisfies Setting<string>,
  httpPort: {
    names: ["RELAY_HTTP_PORT"],
    default: "9464",
    accepts: "an integer from 0 (pick a free port) to 65535",
    description: "Port of `/healthz`, `/readyz` and `/metrics`. The chosen port is logged at start.",
    parse: int(0, 65_535)
  } satisfies Setting<number>,
  metricsInterval: {
    names: ["RELAY_METRICS_INTERVAL"],
    default: "5 seconds",
    accepts: `${durationAccepts}, at least 100 ms`,
    description: "How often the backlog, oldest pending age and dead-letter count are read from Postgres.",
    parse: duration(Duration.millis(100))
  } satisfies Setting<Duration.Duration>,
  logLevel: {
    names: ["RELAY_LOG_LEVEL"],
    default: "info",
    accepts: "one of trace, debug, info, warn, error, fatal, none",
    description: "Minimum level of the JSON log lines written to stdout.",
    parse: oneOf(["trace", "debug", "info", "warn", "error", "fatal", "none"] as const)
  } satisfies Setting<"trace" | "debug" | "info" | "warn" | "error" | "fatal" | "none">,
  logFormat: {
    names: ["RELAY_LOG_FORMAT"],
    default: "json",
    accepts: "json or pretty",
    description: "`json`: one JSON object per line; `pretty`: for a terminal.",
    parse: oneOf(["json", "pretty"] as const)
  } satisfies Setting<"json" | "pretty">,
  migrate: {
    names: ["RELAY_MIGRATE"],
    default: "true",
    accepts: "true or false",
    description: "Whether `run` applies pending migrations before relaying.",
    parse: bool
  } satisfies Setting<boolean>,
  heapTuning: {
    names: ["RELAY_HEAP_TUNING"],
    default: "true",
    accepts: "true or false",
    description: "Whether `run` restarts itself once at start (same pid, `process.execve`, Node 22.15+) with `--max-old-space-size=1024 --max-semi-space-size=4`, which bounds the heap's growth while draining (README, Memory). Skipped when you pass heap flags yourself (command line or `NODE_OPTIONS`).",
    parse: bool
  } satisfies Setting<boolean>
} as const

type Settings = typeof settings
export type RelaySettings = {
  readonly [K in keyof Settings]: Settings[K] extends Setting<infer A> ? A : never
}

const readRaw = (name: string) =>
  Config.String(name).pipe(Config.option, Config.map(Option.filter((s) => s.trim() !== "")))

/** Reads one setting from the current ConfigProvider: value, default, or a ConfigInvalid. */
const readSetting = <A>(setting: Setting<A>) =>
  Effect.gen(function*() {
    for (const name of setting.names) {
      const raw = yield* Effect.orDie(readRaw(name))
      if (Option.isSome(raw)) {
        const parsed = setting.parse(raw.value)
        if (Option.isSome(parsed)) return Option.some(parsed.value)
        const shown = setting.secret ? "<redacted>" : JSON.stringify(raw.value)
        return yield* new ConfigInvalid({
          variable: name,
          message: `Invalid ${name}=${shown}: expected ${setting.accepts}`
        })
      }
    }
    if (setting.default === undefined) {
      return yield* new ConfigInvalid({
        variable: setting.names[0]!,
        message: `Missing ${setting.names.join(" or ")}: expected ${setting.accepts}`
      })
    }
    return Option.none<A>()
  })

/** Loads and validates every setting from the current ConfigProvider. */
export const loadSettings: Effect.Effect<RelaySettings, ConfigInvalid> = Effect.gen(function*() {
  const out: Record<string, unknown> = {}
  for (const [key, setting] of Object.entries(settings) as Array<[keyof Settings, Setting<unknown>]>) {
    const value = yield* readSetting(setting)
    if (Option.isSome(value)) {
      out[key] = value.value
    } else if (key === "listenDatabaseUrl") {
      out[key] = out.databaseUrl
    } else {
      out[key] = Option.getOrThrow(setting.parse(setting.default!))
    }
  }
  const result = out as RelaySettings
  if (Duration.isGreaterThan(result.retryBaseDelay, result.retryMaxDelay)) {
    return yield* new ConfigInvalid({
      variable: "RELAY_RETRY_BASE_DELAY",
      message: "Invalid RELAY_RETRY_BASE_DELAY: expected a duration no longer than RELAY_RETRY_MAX_DELAY"
    })
  }
  return result
})

/** The validated settings of this relay. */
export class RelayConfig extends Context.Service<RelayConfig, RelaySettings>()("outbox-relay/RelayConfig") {
  /** Reads the settings from the current ConfigProvider (the environment by default). */
  static readonly layer: Layer.Layer<RelayConfig, ConfigInvalid> = Layer.effect(RelayConfig, loadSettings)

  /** Settings from a plain map, as a test or an embedding application would give them. */
  static readonly layerFrom = (env: Record<string, string | undefined>): Layer.Layer<RelayConfig, ConfigInvalid> =>
    RelayConfig.layer.pipe(
      Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({
        env: Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined))
      })))
    )
}

/** The README's settings table (Markdown), generated from `settings`; a test keeps the README in step. */
export const settingsTable = (): string => {
  const rows = Object.values(settings).map((s: Setting<unknown>) => {
    const names = s.names.map((n) => `\`${n}\``).join(" / ")
    const fallback = s.default === undefined ? "(required)" : s.names[0] === "RELAY_LISTEN_DATABASE_URL" ? s.default : `\`${s.default}\``
    return `| ${names} | ${fallback} | ${s.accepts.replaceAll("|", "\\|")} | ${s.description} |`
  })
  return ["| Variable | Default | Accepts | What it does |", "|---|---|---|---|", ...rows].join("\n")
}
