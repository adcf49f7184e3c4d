/**
 * Every setting of the relay, read from `RELAY_*` environment variables with Effect's `Config` (through
 * the current `ConfigProvider`, so tests can hand in a map), validated once at start.
 *
 * The `settings` table below is the single source of truth: the config service, the one-line error a
 * bad value produces, and the README table (checked by a test) all come from it.
 *
 * Empty values: a blank variable counts as unset, except for a setting that takes empty as a value
 * (`RELAY_STREAM_PREFIX=`: no prefix), where a variable set to the empty string is that value.
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
import * as SchemaTransformation from "effect/SchemaTransformation"
import { clusterMismatch, parseRedisUrl, type RedisTarget } from "../shared/RedisClient.js"
import { defaultTopicPattern } from "../shared/RedisKeys.js"
import { readPem, type RedisTls, sslModeConflict, sslRootCert } from "../shared/Tls.js"
import { falseWords, trueWords } from "./BooleanWords.js"

/** A bad or missing setting; `message` is one line naming the variable and what it accepts. */
export class ConfigInvalid extends Schema.TaggedError<ConfigInvalid>()("ConfigInvalid", {
  variable: Schema.String,
  message: Schema.String
}) {}

interface Setting<A> {
  /** Environment variable names, first one wins. */
  readonly names: ReadonlyArray<string>
  /** Default as written in the README, or undefined when the setting is required. */
  readonly default: string | undefined
  /** What the variable accepts, as shown in the error line and the README. */
  readonly accepts: string
  readonly description: string
  /** Reads one variable of the setting; a value it refuses fails with a `ConfigError`. */
  readonly config: (name: string) => Config.Config<A>
  readonly secret?: boolean
  /** A variable set to "" is the value "" (else a blank variable counts as unset). */
  readonly emptyIsValue?: boolean
}

// -----------------------------------------------------------------------------
// Value configs: how one variable's text becomes a value
// -----------------------------------------------------------------------------

const integer = (minimum: number, maximum: number) => (name: string): Config.Config<number> =>
  Config.schema(
    Schema.Trim.check(Schema.isPattern(/^-?\d+$/)).pipe(
      Schema.decodeTo(Schema.NumberFromString),
      Schema.check(Schema.isBetween({ minimum, maximum }))
    ),
    name
  )

/** A decimal number from `minimum` to `maximum` ("0.9", ".9", "1"). */
const decimal = (minimum: number, maximum: number) => (name: string): Config.Config<number> =>
  Config.schema(
    Schema.Trim.check(Schema.isPattern(/^(\d+(\.\d*)?|\.\d+)$/)).pipe(
      Schema.decodeTo(Schema.NumberFromString),
      Schema.check(Schema.isBetween({ minimum, maximum }))
    ),
    name
  )

/** A bare number of milliseconds ("500"). */
const Millis = Schema.String.check(Schema.isPattern(/^\d+$/)).pipe(
  Schema.decodeTo(Schema.NumberFromString),
  Schema.decodeTo(Schema.DurationFromMillis)
)

/** Milliseconds, or the duration text `Config.Duration` reads ("500 millis", "2 seconds", "1 minute"). */
const DurationText = Schema.Trim.pipe(Schema.decodeTo(Schema.Union([Millis, Schema.DurationFromString])))

const duration = (minimum: Duration.Duration, maximum: Duration.Duration = Duration.infinity) => {
  const inRange = Schema.makeFilter((d: Duration.Duration) => Duration.between(d, { minimum, maximum }))
  return (name: string): Config.Config<Duration.Duration> => Config.schema(DurationText.check(inRange), name)
}

const isUrlOf = (protocols: ReadonlyArray<string>) => (text: string) =>
  URL.canParse(text) && protocols.includes(new URL(text).protocol)

/** A connection URL, kept as written (trimmed) and redacted: it may carry a password. */
const url = (protocols: ReadonlyArray<string>) => (name: string): Config.Config<Redacted.Redacted<string>> =>
  Config.schema(Schema.Redacted(Schema.Trim.check(Schema.makeFilter(isUrlOf(protocols)))), name)

/** A Redis URL (several hosts allowed: a cluster's seeds), kept as written (trimmed) and redacted. */
const redisUrl = (name: string): Config.Config<Redacted.Redacted<string>> =>
  Config.schema(
    Schema.Redacted(Schema.Trim.check(Schema.makeFilter((text: string) => typeof parseRedisUrl(text) !== "string"))),
    name
  )

/** A URL that carries no secret, trimmed; empty means none. */
const optionalUrl = (protocols: ReadonlyArray<string>) => (name: string): Config.Config<string | undefined> =>
  Config.schema(Schema.Trim.check(Schema.makeFilter((text: string) => text === "" || isUrlOf(protocols)(text))), name)
    .pipe(Config.map((text) => text === "" ? undefined : text))

/** Free text, taken as written (no trimming: the pattern decides). */
const text = (pattern: RegExp) => (name: string): Config.Config<string> =>
  Config.schema(Schema.String.check(Schema.isPattern(pattern)), name)

/** A file path, trimmed; empty means none (read once at start, see `readTlsFiles`). */
const optionalPath = (name: string): Config.Config<string | undefined> =>
  Config.schema(Schema.Trim.check(Schema.isPattern(/^[^\n\r\0]*$/)), name).pipe(
    Config.map((path) => path === "" ? undefined : path)
  )

/** A secret of at least `minimum` characters; empty means none. */
const optionalToken = (minimum: number) => (name: string): Config.Config<Redacted.Redacted<string> | undefined> =>
  Config.schema(
    Schema.Trim.check(
      Schema.makeFilter((token: string) => token === "" || (token.length >= minimum && !/\s/.test(token)))
    ),
    name
  ).pipe(Config.map((token) => token === "" ? undefined : Redacted.make(token)))

const compiles = (source: string) => {
  try {
    new RegExp(source)
    return true
  } catch {
    return false
  }
}

const regExp = (name: string): Config.Config<RegExp> =>
  Config.schema(
    Schema.String.check(Schema.makeFilter(compiles)).pipe(
      Schema.decodeTo(
        Schema.RegExp,
        SchemaTransformation.transform({ decode: (source) => new RegExp(source), encode: (regex) => regex.source })
      )
    ),
    name
  )

/** A word, trimmed and lower-cased (`Info` is `info`). */
const Word = Schema.Trim.pipe(Schema.decode(SchemaTransformation.toLowerCase()))

const oneOf = <const L extends string>(values: ReadonlyArray<L>) => (name: string): Config.Config<L> =>
  Config.schema(Word.pipe(Schema.decodeTo(Schema.Literals(values))), name)

/** Our boolean words (BooleanWords.ts), not `Config.Boolean`'s: main.ts reads them before Effect loads. */
const boolean = (name: string): Config.Config<boolean> =>
  Config.schema(
    Word.check(Schema.makeFilter((word: string) => trueWords.includes(word) || falseWords.includes(word))).pipe(
      Schema.decodeTo(
        Schema.Boolean,
        SchemaTransformation.transform({ decode: (word) => trueWords.includes(word), encode: String })
      )
    ),
    name
  )

const durationAccepts = "a duration: milliseconds (\"500\") or \"500 millis\", \"2 seconds\", \"1 minute\""

// -----------------------------------------------------------------------------
// The settings
// -----------------------------------------------------------------------------

/** Every setting, in README order. */
export const settings = {
  databaseUrl: {
    names: ["RELAY_DATABASE_URL", "DATABASE_URL"],
    default: undefined,
    accepts: "a postgres:// or postgresql:// URL",
    description: "Postgres holding `outbox_events` (falls back to `DATABASE_URL`).",
    config: url(["postgres:", "postgresql:"]),
    secret: true
  } satisfies Setting<Redacted.Redacted<string>>,
  listenDatabaseUrl: {
    names: ["RELAY_LISTEN_DATABASE_URL"],
    default: "the database URL",
    accepts: "a postgres:// or postgresql:// URL",
    description: "Used only for LISTEN: Postgres directly or a session-mode pooler, not a transaction-mode one.",
    config: url(["postgres:", "postgresql:"]),
    secret: true
  } satisfies Setting<Redacted.Redacted<string>>,
  redisUrl: {
    names: ["RELAY_REDIS_URL", "REDIS_URL"],
    default: "redis://127.0.0.1:6379",
    accepts: "a redis:// or rediss:// URL (a cluster's seeds: `redis://h1:p1,h2:p2`)",
    description: "Redis receiving the streams (falls back to `REDIS_URL`).",
    config: redisUrl,
    secret: true
  } satisfies Setting<Redacted.Redacted<string>>,
  redisCluster: {
    names: ["RELAY_REDIS_CLUSTER"],
    default: "false",
    accepts: "true or false",
    description: "Redis is a Cluster ([more](docs/production.md#redis-cluster)).",
    config: boolean
  } satisfies Setting<boolean>,
  databaseTlsCaFile: {
    names: ["RELAY_DATABASE_TLS_CA_FILE"],
    default: "",
    accepts: "a PEM file path",
    description: "CA for Postgres TLS, verify-full ([TLS](docs/production.md#tls)).",
    config: optionalPath
  } satisfies Setting<string | undefined>,
  redisTlsCaFile: {
    names: ["RELAY_REDIS_TLS_CA_FILE"],
    default: "",
    accepts: "a PEM file path",
    description: "CA for `rediss://`.",
    config: optionalPath
  } satisfies Setting<string | undefined>,
  redisTlsCertFile: {
    names: ["RELAY_REDIS_TLS_CERT_FILE"],
    default: "",
    accepts: "a PEM file path",
    description: "Client certificate for `rediss://`.",
    config: optionalPath
  } satisfies Setting<string | undefined>,
  redisTlsKeyFile: {
    names: ["RELAY_REDIS_TLS_KEY_FILE"],
    default: "",
    accepts: "a PEM file path",
    description: "Its key.",
    config: optionalPath
  } satisfies Setting<string | undefined>,
  schema: {
    names: ["RELAY_SCHEMA"],
    default: "public",
    accepts: "a Postgres schema name (letters, digits, _; starting with a letter or _)",
    description: "Schema of `outbox_events` and the migrations table; created by `migrate` when missing.",
    config: text(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/)
  } satisfies Setting<string>,
  streamPrefix: {
    names: ["RELAY_STREAM_PREFIX"],
    default: "outbox:",
    accepts: "up to 100 characters without spaces or braces",
    description: "Stream key = prefix + topic; an empty value (`RELAY_STREAM_PREFIX=`) makes the stream key the " +
      "topic itself. Dead letters go to `{<stream>}:dlq`.",
    config: text(/^[^\s{}]{0,100}$/),
    emptyIsValue: true
  } satisfies Setting<string>,
  batchSize: {
    names: ["RELAY_BATCH_SIZE"],
    // 2000 rather than 1000: a claim has a fixed cost besides its rows, so fewer, bigger claims drain
    // faster (docs/benchmarks.md, Bigger batches, bigger young generation).
    default: "2000",
    accepts: "an integer from 1 to 10000",
    description: "Rows claimed (and deleted) by one statement, fewer while events are big (16 MiB of payload " +
      "per batch); published in one Redis round trip.",
    config: integer(1, 10_000)
  } satisfies Setting<number>,
  concurrency: {
    names: ["RELAY_CONCURRENCY"],
    default: "2",
    accepts: "an integer from 1 to 16",
    description: "Claim lanes in this process, at most; the others join the first only while there is a backlog, " +
      "and order per aggregate holds ([design](docs/design.md#helper-lanes)).",
    config: integer(1, 16)
  } satisfies Setting<number>,
  pollInterval: {
    names: ["RELAY_POLL_INTERVAL"],
    default: "5 seconds",
    accepts: `${durationAccepts}, at least 10 ms`,
    description: "Slow fallback poll; LISTEN/NOTIFY wakes the relay at once, this only catches missed notifications.",
    config: duration(Duration.millis(10))
  } satisfies Setting<Duration.Duration>,
  busyPause: {
    names: ["RELAY_BUSY_PAUSE"],
    default: "10 millis",
    accepts: `${durationAccepts}, at most 1 second`,
    description: "While a lane brings in more than 2,000 events/s, wait this long after a claim that was not " +
      "full: bigger batches, less CPU for the relay and producers, up to this much more latency. 0: claim at once.",
    config: duration(Duration.zero, Duration.seconds(1))
  } satisfies Setting<Duration.Duration>,
  listenCheckInterval: {
    names: ["RELAY_LISTEN_CHECK_INTERVAL"],
    default: "5 seconds",
    accepts: `${durationAccepts}, at least 100 ms`,
    description: "How often the LISTEN connection proves it is alive (a NOTIFY to itself that must come back).",
    config: duration(Duration.millis(100))
  } satisfies Setting<Duration.Duration>,
  listenCheckTimeout: {
    names: ["RELAY_LISTEN_CHECK_TIMEOUT"],
    default: "2 seconds",
    accepts: `${durationAccepts}, at least 10 ms`,
    description: "A liveness check slower than this replaces the LISTEN connection.",
    config: duration(Duration.millis(10))
  } satisfies Setting<Duration.Duration>,
  maxPayloadBytes: {
    names: ["RELAY_MAX_PAYLOAD_BYTES"],
    default: "1048576",
    accepts: "an integer from 1 to 536870912",
    description: "Larger payloads (JSON text, bytes) are dead-lettered instead of published.",
    config: integer(1, 512 * 1024 * 1024)
  } satisfies Setting<number>,
  topicPattern: {
    names: ["RELAY_TOPIC_PATTERN"],
    default: defaultTopicPattern,
    accepts: "a JavaScript regular expression",
    description: "Topics not matching are dead-lettered (the table's own check is the outer bound).",
    config: regExp
  } satisfies Setting<RegExp>,
  retention: {
    names: ["RELAY_RETENTION"],
    default: "0",
    accepts: `${durationAccepts}; 0 deletes rows as they are published`,
    description: "Keep published rows this long (marked `published_at`, then purged): `event_id` dedupes producer " +
      "retries for that window. Costs an UPDATE instead of a DELETE per event.",
    config: duration(Duration.zero)
  } satisfies Setting<Duration.Duration>,
  vacuumThreshold: {
    names: ["RELAY_VACUUM_THRESHOLD"],
    default: "10000",
    accepts: "an integer from 0 to 1000000000",
    description: "Every 10 s, `VACUUM (SKIP_LOCKED)` the outbox table when it holds more dead tuples than this; " +
      "0 leaves it to autovacuum ([design](docs/design.md#table-health-retention-and-vacuum)).",
    config: integer(0, 1_000_000_000)
  } satisfies Setting<number>,
  streamMaxLen: {
    names: ["RELAY_STREAM_MAXLEN"],
    default: "0",
    accepts: "an integer from 0 (no trimming) to 2147483647",
    description: "When above 0, every XADD trims its stream with `MAXLEN ~ n`.",
    config: integer(0, 2_147_483_647)
  } satisfies Setting<number>,
  streamTrim: {
    names: ["RELAY_STREAM_TRIM"],
    default: "none",
    accepts: "none or acked",
    description: "`acked`: also trim streams below what every consumer group acknowledged " +
      "([more](docs/production.md#consumer-safe-trimming)).",
    config: oneOf(["none", "acked"] as const)
  } satisfies Setting<"none" | "acked">,
  redisMaxMemoryRatio: {
    names: ["RELAY_REDIS_MAX_MEMORY_RATIO"],
    default: "0.9",
    accepts: "a number from 0 to 1 (0 or 1: off)",
    description: "Pause claiming while Redis `used_memory` is above this share of `maxmemory` " +
      "([more](docs/production.md#redis-memory-backpressure)).",
    config: decimal(0, 1)
  } satisfies Setting<number>,
  redisMinReplicas: {
    names: ["RELAY_REDIS_MIN_REPLICAS"],
    default: "0",
    accepts: "an integer from 0 to 16",
    description: "Commit a batch once this many replicas have it (`WAIT`) " +
      "([more](docs/production.md#waiting-for-replicas)).",
    config: integer(0, 16)
  } satisfies Setting<number>,
  retryBaseDelay: {
    names: ["RELAY_RETRY_BASE_DELAY"],
    default: "100 millis",
    accepts: `${durationAccepts}, at least 1 ms`,
    description: "First delay of the jittered exponential retry after a transient failure.",
    config: duration(Duration.millis(1))
  } satisfies Setting<Duration.Duration>,
  retryMaxDelay: {
    names: ["RELAY_RETRY_MAX_DELAY"],
    default: "10 seconds",
    accepts: `${durationAccepts}, at least 1 ms`,
    description: "Cap of the retry delay. Transient failures are retried without limit.",
    config: duration(Duration.millis(1))
  } satisfies Setting<Duration.Duration>,
  redisCommandTimeout: {
    names: ["RELAY_REDIS_COMMAND_TIMEOUT"],
    default: "5 seconds",
    accepts: `${durationAccepts}, at least 10 ms`,
    description: "A Redis reply slower than this fails the batch (retried; rows go back to the table).",
    config: duration(Duration.millis(10))
  } satisfies Setting<Duration.Duration>,
  databaseTimeout: {
    names: ["RELAY_DATABASE_TIMEOUT"],
    default: "30 seconds",
    accepts: `${durationAccepts}, at least 100 ms`,
    description: "Upper bound for one relay statement; also the server-side `idle_in_transaction_session_timeout`.",
    config: duration(Duration.millis(100))
  } satisfies Setting<Duration.Duration>,
  leaseTimeout: {
    names: ["RELAY_LEASE_TIMEOUT"],
    default: "10 seconds",
    accepts: `${durationAccepts}, from 3 seconds`,
    description: "With several relays: how fast the others take over the slots of one that died (or lost its " +
      "connection).",
    config: duration(Duration.seconds(3))
  } satisfies Setting<Duration.Duration>,
  shutdownTimeout: {
    names: ["RELAY_SHUTDOWN_TIMEOUT"],
    default: "10 seconds",
    accepts: `${durationAccepts}, at least 100 ms`,
    description: "On SIGTERM/SIGINT: stop claiming, finish the batch in flight, exit within this time.",
    config: duration(Duration.millis(100))
  } satisfies Setting<Duration.Duration>,
  httpHost: {
    names: ["RELAY_HTTP_HOST"],
    default: "127.0.0.1",
    accepts: "a host name or IP address to bind",
    description: "Address of the admin HTTP server (`0.0.0.0` in a container).",
    config: text(/^[A-Za-z0-9.:_-]{1,255}$/)
  } satisfies Setting<string>,
  httpPort: {
    names: ["RELAY_HTTP_PORT"],
    default: "9464",
    accepts: "an integer from 0 (pick a free port) to 65535",
    description: "Port of `/healthz`, `/readyz` and `/metrics`. The chosen port is logged at start.",
    config: integer(0, 65_535)
  } satisfies Setting<number>,
  adminToken: {
    names: ["RELAY_ADMIN_TOKEN"],
    default: "",
    accepts: "at least 16 characters, no spaces",
    description: "Bearer token of the admin API's mutating endpoints and the dashboard's replay button; unset, " +
      "they answer 403 ([operations: API](docs/operations.md#http-api)).",
    config: optionalToken(16),
    secret: true
  } satisfies Setting<Redacted.Redacted<string> | undefined>,
  metricsInterval: {
    names: ["RELAY_METRICS_INTERVAL"],
    default: "5 seconds",
    accepts: `${durationAccepts}, at least 100 ms`,
    description: "How often the backlog gauges are read from Postgres (less often while counting a big backlog " +
      "takes long), and Redis memory from `INFO memory`.",
    config: duration(Duration.millis(100))
  } satisfies Setting<Duration.Duration>,
  logLevel: {
    names: ["RELAY_LOG_LEVEL"],
    default: "info",
    accepts: "one of trace, debug, info, warn, error, fatal, none",
    description: "Minimum level of the JSON log lines written to stdout.",
    config: oneOf(["trace", "debug", "info", "warn", "error", "fatal", "none"] as const)
  } satisfies Setting<"trace" | "debug" | "info" | "warn" | "error" | "fatal" | "none">,
  logFormat: {
    names: ["RELAY_LOG_FORMAT"],
    default: "json",
    accepts: "json or pretty",
    description: "`json`: one JSON object per line; `pretty`: for a terminal.",
    config: oneOf(["json", "pretty"] as const)
  } satisfies Setting<"json" | "pretty">,
  migrate: {
    names: ["RELAY_MIGRATE"],
    default: "true",
    accepts: "true or false",
    description: "Whether `run` applies pending migrations before relaying.",
    config: boolean
  } satisfies Setting<boolean>,
  heapTuning: {
    names: ["RELAY_HEAP_TUNING"],
    default: "true",
    accepts: "true or false",
    description: "Whether `run` restarts itself once at start with a bounded heap (`--max-old-space-size=1024 " +
      "--max-semi-space-size=16`) unless you pass heap flags ([design](docs/design.md#memory-and-heap-tuning)).",
    config: boolean
  } satisfies Setting<boolean>,
  otlpEndpoint: {
    names: ["RELAY_OTLP_ENDPOINT"],
    default: "",
    accepts: "an http(s) URL of an OTLP/HTTP collector",
    description: "Send a span per batch, linked to the producers' spans, to `<url>/v1/traces` (OTLP/JSON). " +
      "Unset: no tracing ([tracing](docs/tracing.md)).",
    config: optionalUrl(["http:", "https:"])
  } satisfies Setting<string | undefined>
} as const

type Settings = typeof settings
export type RelaySettings =
  & {
    readonly [K in keyof Settings]: Settings[K] extends Setting<infer A> ? A : never
  }
  & TlsMaterial

/** The TLS files' contents, read once at start. */
export interface TlsMaterial {
  /** For `makeRedisClient`; undefined when no Redis TLS file is set. */
  readonly redisTls: RedisTls | undefined
  /** From RELAY_DATABASE_TLS_CA_FILE, else the URL's `sslrootcert`. */
  readonly databaseCa: Buffer | undefined
}

// -----------------------------------------------------------------------------
// Loading
// -----------------------------------------------------------------------------

const isUnset = (setting: Setting<unknown>, raw: string) =>
  raw.trim() === "" && !(raw === "" && setting.emptyIsValue === true)

/** One variable of a setting: its value, none when unset, or a ConfigInvalid quoting it (unless secret). */
const readVariable = <A>(setting: Setting<A>, name: string): Effect.Effect<Option.Option<A>, ConfigInvalid> =>
  Effect.gen(function*() {
    const raw = yield* Effect.orDie(Config.option(Config.String(name)))
    if (Option.isNone(raw) || isUnset(setting, raw.value)) return Option.none()
    return yield* setting.config(name).pipe(
      Effect.map(Option.some),
      Effect.catchTag("ConfigError", (error) =>
        error.cause._tag === "SourceError"
          ? Effect.die(error)
          : Effect.fail(
            new ConfigInvalid({
              variable: name,
              message: `Invalid ${name}=${setting.secret ? "<redacted>" : JSON.stringify(raw.value)}: ` +
                `expected ${setting.accepts}`
            })
          ))
    )
  })

/** The first of the setting's variables that is set, else none. */
const readSetting = <A>(setting: Setting<A>): Effect.Effect<Option.Option<A>, ConfigInvalid> =>
  Effect.gen(function*() {
    for (const name of setting.names) {
      const value = yield* readVariable(setting, name)
      if (Option.isSome(value)) return value
    }
    return Option.none()
  })

/** The README's default, read by the setting's own config (so the table cannot promise another value). */
const defaultOf = <A>(setting: Setting<A>, text: string): Effect.Effect<A> =>
  Effect.orDie(setting.config("default").parse(ConfigProvider.fromUnknown({ default: text })))

const environment = () => ConfigProvider.fromEnv({ preserveEmptyStrings: true })

/**
 * Effect's default provider reads process.env but drops empty values; when the application installed
 * no provider, read process.env keeping them, so that `RELAY_STREAM_PREFIX=` means an empty prefix.
 */
const keepingEmptyValues = <A, E>(self: Effect.Effect<A, E>): Effect.Effect<A, E> =>
  Effect.flatMap(
    Effect.context<never>(),
    (context) =>
      Context.getOrUndefined(context, ConfigProvider.ConfigProvider) === undefined
        ? Effect.provideService(self, ConfigProvider.ConfigProvider, environment())
        : self
  )

/**
 * Loads and validates every setting from the current ConfigProvider (without one installed: process.env,
 * empty values kept).
 */
export const loadSettings: Effect.Effect<RelaySettings, ConfigInvalid> = keepingEmptyValues(Effect.gen(function*() {
  const out: Record<string, unknown> = {}
  for (const [key, setting] of Object.entries(settings) as Array<[keyof Settings, Setting<unknown>]>) {
    const value = yield* readSetting(setting)
    if (Option.isSome(value)) {
      out[key] = value.value
    } else if (setting.default === undefined) {
      return yield* new ConfigInvalid({
        variable: setting.names[0]!,
        message: `Missing ${setting.names.join(" or ")}: expected ${setting.accepts}`
      })
    } else if (key === "listenDatabaseUrl") {
      out[key] = out.databaseUrl
    } else if (setting.default === "") {
      // An optional setting left unset: no value.
      out[key] = undefined
    } else {
      out[key] = yield* defaultOf(setting, setting.default)
    }
  }
  const result = { ...(out as Omit<RelaySettings, keyof TlsMaterial>), ...yield* readTlsFiles(out) } as RelaySettings
  const mismatch = clusterMismatch(
    parseRedisUrl(Redacted.value(result.redisUrl)) as RedisTarget,
    result.redisCluster,
    "RELAY_REDIS_CLUSTER=true"
  )
  if (mismatch !== undefined) {
    return yield* new ConfigInvalid({
      variable: "RELAY_REDIS_URL",
      message: `Invalid RELAY_REDIS_URL=<redacted>: ${mismatch}`
    })
  }
  if (Duration.isGreaterThan(result.retryBaseDelay, result.retryMaxDelay)) {
    return yield* new ConfigInvalid({
      variable: "RELAY_RETRY_BASE_DELAY",
      message: "Invalid RELAY_RETRY_BASE_DELAY: expected a duration no longer than RELAY_RETRY_MAX_DELAY"
    })
  }
  return result
}))

/** Reads the TLS files the settings name; an unreadable one, or one that cannot apply, is a ConfigInvalid. */
const readTlsFiles = (out: Record<string, unknown>): Effect.Effect<TlsMaterial, ConfigInvalid> =>
  Effect.gen(function*() {
    const read = (variable: string, path: string | undefined, what = `${variable}=${JSON.stringify(path)}`) =>
      Effect.gen(function*() {
        if (path === undefined) return undefined
        const result = readPem(path)
        if ("pem" in result) return result.pem
        return yield* new ConfigInvalid({ variable, message: `Invalid ${what}: ${result.error}` })
      })
    const redisFiles = {
      ca: out.redisTlsCaFile as string | undefined,
      cert: out.redisTlsCertFile as string | undefined,
      key: out.redisTlsKeyFile as string | undefined
    }
    const redisVariable = (which: keyof typeof redisFiles) => `RELAY_REDIS_TLS_${which.toUpperCase()}_FILE`
    let redisTls: RedisTls | undefined
    for (const which of ["ca", "cert", "key"] as const) {
      if (redisFiles[which] === undefined) continue
      const variable = redisVariable(which)
      if (!Redacted.value(out.redisUrl as Redacted.Redacted<string>).startsWith("rediss://")) {
        return yield* new ConfigInvalid({
          variable,
          message: `Invalid ${variable}: it needs a rediss:// RELAY_REDIS_URL (TLS)`
        })
      }
      redisTls = { ...redisTls, [which]: yield* read(variable, redisFiles[which]) }
    }
    if ((redisFiles.cert === undefined) !== (redisFiles.key === undefined)) {
      const missing = redisFiles.cert === undefined ? "RELAY_REDIS_TLS_CERT_FILE" : "RELAY_REDIS_TLS_KEY_FILE"
      return yield* new ConfigInvalid({
        variable: missing,
        message: `Missing ${missing}: a client certificate needs both RELAY_REDIS_TLS_CERT_FILE and ` +
          "RELAY_REDIS_TLS_KEY_FILE"
      })
    }
    const urls = [out.databaseUrl, out.listenDatabaseUrl].map((url) => Redacted.value(url as Redacted.Redacted<string>))
    const caFile = out.databaseTlsCaFile as string | undefined
    const databaseCa = caFile !== undefined
      ? yield* read("RELAY_DATABASE_TLS_CA_FILE", caFile)
      : yield* Effect.suspend(() => {
        const path = urls.map(sslRootCert).find((path) => path !== undefined)
        return read("RELAY_DATABASE_URL", path, `RELAY_DATABASE_URL: sslrootcert=${JSON.stringify(path)}`)
      })
    if (databaseCa !== undefined) {
      for (const url of urls) {
        const conflict = sslModeConflict(url)
        if (conflict) {
          return yield* new ConfigInvalid({
            variable: "RELAY_DATABASE_URL",
            message: `Invalid RELAY_DATABASE_URL=<redacted>: ${conflict}`
          })
        }
      }
    }
    return { redisTls, databaseCa }
  })

/** The validated settings of this relay. */
export class RelayConfig extends Context.Service<RelayConfig, RelaySettings>()("outbox-relay/RelayConfig") {
  /** Reads the settings from the current ConfigProvider (process.env when none is installed). */
  static readonly layer: Layer.Layer<RelayConfig, ConfigInvalid> = Layer.effect(RelayConfig, loadSettings)

  /** Settings from a plain map, as a test or an embedding application would give them (empty values kept). */
  static readonly layerFrom = (env: Record<string, string | undefined>): Layer.Layer<RelayConfig, ConfigInvalid> =>
    RelayConfig.layer.pipe(
      Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({
        env: Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined)),
        preserveEmptyStrings: true
      })))
    )
}

// -----------------------------------------------------------------------------
// README
// -----------------------------------------------------------------------------

/** The README's settings table (Markdown), generated from `settings`; a test keeps the README in step. */
export const settingsTable = (): string => {
  const rows = Object.values(settings).map((s: Setting<unknown>) => {
    const names = s.names.map((n) => `\`${n}\``).join(" / ")
    const fallback = s.default === undefined
      ? "(required)"
      : s.default === ""
      ? "(none)"
      : s.names[0] === "RELAY_LISTEN_DATABASE_URL"
      ? s.default
      : `\`${s.default}\``
    // The durations' forms are said once under the table; error lines still spell them out.
    const accepts = s.accepts.replace(durationAccepts, "a duration").replaceAll("|", "\\|")
    return `| ${names} | ${fallback} | ${accepts} | ${s.description} |`
  })
  return ["| Variable | Default | Accepts | What it does |", "|---|---|---|---|", ...rows].join("\n")
}
