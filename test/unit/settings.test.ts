/**
 * Settings as an operator writes them: every bad value stops the relay with one line naming the variable
 * and what it accepts (secrets never shown), defaults and fallbacks hold, and an empty
 * `RELAY_STREAM_PREFIX=` means no prefix while an unset one means `outbox:`. Through the config layers,
 * no servers, no processes.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Layer, Redacted } from "effect"
import { loadSettings, RelayConfig, settings } from "../../src/relay/RelayConfig.js"
import { parseRedisUrl } from "../../src/shared/RedisClient.js"

const databaseUrl = "postgres://app:hunter2secret@127.0.0.1:5432/app"
const redisAccepts = "a redis:// or rediss:// URL (a cluster's seeds: `redis://h1:p1,h2:p2`)"

/** The settings `env` gives, over a valid database URL unless `env` sets its own. */
const load = (env: Record<string, string | undefined>) =>
  Effect.service(RelayConfig).pipe(Effect.provide(RelayConfig.layerFrom({ RELAY_DATABASE_URL: databaseUrl, ...env })))

/** The one-line message `env` fails with. */
const failure = (env: Record<string, string | undefined>) =>
  load(env).pipe(Effect.flip, Effect.map((error) => error.message))

const duration = "a duration: milliseconds (\"500\") or \"500 millis\", \"2 seconds\", \"1 minute\""

/** One bad value per setting (at least), with the exact line it must produce. */
const badValues: Array<[Record<string, string | undefined>, string]> = [
  [
    { RELAY_DATABASE_URL: "mysql://app:hunter2secret@db/app" },
    "Invalid RELAY_DATABASE_URL=<redacted>: expected a postgres:// or postgresql:// URL"
  ],
  [
    { RELAY_DATABASE_URL: "not a url" },
    "Invalid RELAY_DATABASE_URL=<redacted>: expected a postgres:// or postgresql:// URL"
  ],
  [
    { RELAY_DATABASE_URL: undefined, DATABASE_URL: "redis://hunter2secret@h" },
    "Invalid DATABASE_URL=<redacted>: expected a postgres:// or postgresql:// URL"
  ],
  [
    { RELAY_LISTEN_DATABASE_URL: "redis://:hunter2secret@h" },
    "Invalid RELAY_LISTEN_DATABASE_URL=<redacted>: expected a postgres:// or postgresql:// URL"
  ],
  [
    { RELAY_REDIS_URL: "http://cache:6379" },
    `Invalid RELAY_REDIS_URL=<redacted>: expected ${redisAccepts}`
  ],
  [
    { REDIS_URL: "ftp://nope" },
    `Invalid REDIS_URL=<redacted>: expected ${redisAccepts}`
  ],
  [
    { RELAY_REDIS_URL: "redis://a:7000,:7001" },
    `Invalid RELAY_REDIS_URL=<redacted>: expected ${redisAccepts}`
  ],
  [
    { RELAY_REDIS_URL: "redis://a:70000" },
    `Invalid RELAY_REDIS_URL=<redacted>: expected ${redisAccepts}`
  ],
  [
    { RELAY_REDIS_URL: "redis://a:7000,b:7001" },
    "Invalid RELAY_REDIS_URL=<redacted>: several hosts are a cluster's seeds; set RELAY_REDIS_CLUSTER=true"
  ],
  [
    { RELAY_REDIS_URL: "redis://a:7000/2", RELAY_REDIS_CLUSTER: "true" },
    "Invalid RELAY_REDIS_URL=<redacted>: a Redis Cluster has only database 0"
  ],
  [{ RELAY_REDIS_CLUSTER: "maybe" }, "Invalid RELAY_REDIS_CLUSTER=\"maybe\": expected true or false"],
  [
    { RELAY_SCHEMA: "1bad" },
    "Invalid RELAY_SCHEMA=\"1bad\": expected a Postgres schema name (letters, digits, _; starting with a letter or _)"
  ],
  [
    { RELAY_SCHEMA: "x".repeat(64) },
    `Invalid RELAY_SCHEMA="${"x".repeat(64)}": expected a Postgres schema name (letters, digits, _; starting with a ` +
    "letter or _)"
  ],
  [
    { RELAY_STREAM_PREFIX: "my prefix:" },
    "Invalid RELAY_STREAM_PREFIX=\"my prefix:\": expected up to 100 characters without spaces or braces"
  ],
  [
    { RELAY_STREAM_PREFIX: "{outbox}:" },
    "Invalid RELAY_STREAM_PREFIX=\"{outbox}:\": expected up to 100 characters without spaces or braces"
  ],
  [
    { RELAY_DATABASE_TLS_CA_FILE: "/nonexistent/ca.pem" },
    "Invalid RELAY_DATABASE_TLS_CA_FILE=\"/nonexistent/ca.pem\": cannot read it (ENOENT)"
  ],
  [
    { RELAY_DATABASE_URL: "postgres://app@db/app?sslmode=disable", RELAY_DATABASE_TLS_CA_FILE: "package.json" },
    "Invalid RELAY_DATABASE_TLS_CA_FILE=\"package.json\": not a PEM file (no -----BEGIN line)"
  ],
  [
    { RELAY_DATABASE_URL: "postgres://app@db/app?sslrootcert=/nonexistent/root.crt" },
    "Invalid RELAY_DATABASE_URL: sslrootcert=\"/nonexistent/root.crt\": cannot read it (ENOENT)"
  ],
  [
    { RELAY_REDIS_URL: "rediss://cache:6380", RELAY_REDIS_TLS_CA_FILE: "/nonexistent/ca.pem" },
    "Invalid RELAY_REDIS_TLS_CA_FILE=\"/nonexistent/ca.pem\": cannot read it (ENOENT)"
  ],
  [
    { RELAY_REDIS_URL: "redis://cache:6379", RELAY_REDIS_TLS_CERT_FILE: "/etc/ssl/client.pem" },
    "Invalid RELAY_REDIS_TLS_CERT_FILE: it needs a rediss:// RELAY_REDIS_URL (TLS)"
  ],
  [
    { RELAY_REDIS_URL: "rediss://cache:6380", RELAY_REDIS_TLS_KEY_FILE: "/nonexistent/client.key" },
    "Invalid RELAY_REDIS_TLS_KEY_FILE=\"/nonexistent/client.key\": cannot read it (ENOENT)"
  ],
  [{ RELAY_BATCH_SIZE: "lots" }, "Invalid RELAY_BATCH_SIZE=\"lots\": expected an integer from 1 to 10000"],
  [{ RELAY_BATCH_SIZE: "0" }, "Invalid RELAY_BATCH_SIZE=\"0\": expected an integer from 1 to 10000"],
  [{ RELAY_BATCH_SIZE: "1e3" }, "Invalid RELAY_BATCH_SIZE=\"1e3\": expected an integer from 1 to 10000"],
  [{ RELAY_BATCH_SIZE: "5.0" }, "Invalid RELAY_BATCH_SIZE=\"5.0\": expected an integer from 1 to 10000"],
  [{ RELAY_CONCURRENCY: "17" }, "Invalid RELAY_CONCURRENCY=\"17\": expected an integer from 1 to 16"],
  [{ RELAY_POLL_INTERVAL: "soon" }, `Invalid RELAY_POLL_INTERVAL="soon": expected ${duration}, at least 10 ms`],
  [{ RELAY_POLL_INTERVAL: "9" }, `Invalid RELAY_POLL_INTERVAL="9": expected ${duration}, at least 10 ms`],
  [{ RELAY_BUSY_PAUSE: "2 seconds" }, `Invalid RELAY_BUSY_PAUSE="2 seconds": expected ${duration}, at most 1 second`],
  [
    { RELAY_LISTEN_CHECK_INTERVAL: "50" },
    `Invalid RELAY_LISTEN_CHECK_INTERVAL="50": expected ${duration}, at least 100 ms`
  ],
  [
    { RELAY_LISTEN_CHECK_TIMEOUT: "5 millis" },
    `Invalid RELAY_LISTEN_CHECK_TIMEOUT="5 millis": expected ${duration}, at least 10 ms`
  ],
  [
    { RELAY_MAX_PAYLOAD_BYTES: "1MB" },
    "Invalid RELAY_MAX_PAYLOAD_BYTES=\"1MB\": expected an integer from 1 to 536870912"
  ],
  [
    { RELAY_TOPIC_PATTERN: "([a-z]" },
    "Invalid RELAY_TOPIC_PATTERN=\"([a-z]\": expected a JavaScript regular expression"
  ],
  [
    { RELAY_RETENTION: "-1" },
    `Invalid RELAY_RETENTION="-1": expected ${duration}; 0 deletes rows as they are published`
  ],
  [{ RELAY_VACUUM_THRESHOLD: "-5" }, "Invalid RELAY_VACUUM_THRESHOLD=\"-5\": expected an integer from 0 to 1000000000"],
  [{ RELAY_STREAM_TRIM: "consumers" }, "Invalid RELAY_STREAM_TRIM=\"consumers\": expected none or acked"],
  [
    { RELAY_REDIS_MAX_MEMORY_RATIO: "90%" },
    "Invalid RELAY_REDIS_MAX_MEMORY_RATIO=\"90%\": expected a number from 0 to 1 (0 or 1: off)"
  ],
  [
    { RELAY_REDIS_MAX_MEMORY_RATIO: "1.5" },
    "Invalid RELAY_REDIS_MAX_MEMORY_RATIO=\"1.5\": expected a number from 0 to 1 (0 or 1: off)"
  ],
  [
    { RELAY_REDIS_MIN_REPLICAS: "-1" },
    "Invalid RELAY_REDIS_MIN_REPLICAS=\"-1\": expected an integer from 0 to 16"
  ],
  [
    { RELAY_STREAM_MAXLEN: "2147483648" },
    "Invalid RELAY_STREAM_MAXLEN=\"2147483648\": expected an integer from 0 (no trimming) to 2147483647"
  ],
  [{ RELAY_RETRY_BASE_DELAY: "0" }, `Invalid RELAY_RETRY_BASE_DELAY="0": expected ${duration}, at least 1 ms`],
  [{ RELAY_RETRY_MAX_DELAY: "fast" }, `Invalid RELAY_RETRY_MAX_DELAY="fast": expected ${duration}, at least 1 ms`],
  [
    { RELAY_REDIS_COMMAND_TIMEOUT: "1" },
    `Invalid RELAY_REDIS_COMMAND_TIMEOUT="1": expected ${duration}, at least 10 ms`
  ],
  [
    { RELAY_DATABASE_TIMEOUT: "99 millis" },
    `Invalid RELAY_DATABASE_TIMEOUT="99 millis": expected ${duration}, at least 100 ms`
  ],
  [
    { RELAY_LEASE_TIMEOUT: "2 seconds" },
    `Invalid RELAY_LEASE_TIMEOUT="2 seconds": expected ${duration}, from 3 seconds`
  ],
  [{ RELAY_SHUTDOWN_TIMEOUT: "0" }, `Invalid RELAY_SHUTDOWN_TIMEOUT="0": expected ${duration}, at least 100 ms`],
  [{ RELAY_HTTP_HOST: "my host" }, "Invalid RELAY_HTTP_HOST=\"my host\": expected a host name or IP address to bind"],
  [
    { RELAY_HTTP_PORT: "99999" },
    "Invalid RELAY_HTTP_PORT=\"99999\": expected an integer from 0 (pick a free port) to 65535"
  ],
  [
    { RELAY_ADMIN_TOKEN: "hunter2secret" },
    "Invalid RELAY_ADMIN_TOKEN=<redacted>: expected at least 16 characters, no spaces"
  ],
  [{ RELAY_METRICS_INTERVAL: "10" }, `Invalid RELAY_METRICS_INTERVAL="10": expected ${duration}, at least 100 ms`],
  [
    { RELAY_LOG_LEVEL: "loud" },
    "Invalid RELAY_LOG_LEVEL=\"loud\": expected one of trace, debug, info, warn, error, fatal, none"
  ],
  [{ RELAY_LOG_FORMAT: "xml" }, "Invalid RELAY_LOG_FORMAT=\"xml\": expected json or pretty"],
  [{ RELAY_MIGRATE: "maybe" }, "Invalid RELAY_MIGRATE=\"maybe\": expected true or false"],
  // Config.Boolean would take "y"; the relay takes only its own words (BooleanWords.ts).
  [{ RELAY_HEAP_TUNING: "y" }, "Invalid RELAY_HEAP_TUNING=\"y\": expected true or false"],
  [
    { RELAY_OTLP_ENDPOINT: "127.0.0.1:4318" },
    "Invalid RELAY_OTLP_ENDPOINT=\"127.0.0.1:4318\": expected an http(s) URL of an OTLP/HTTP collector"
  ],
  [
    { RELAY_OTLP_ENDPOINT: "grpc://collector:4317" },
    "Invalid RELAY_OTLP_ENDPOINT=\"grpc://collector:4317\": expected an http(s) URL of an OTLP/HTTP collector"
  ]
]

describe("settings", () => {
  it("has a bad-value case for every setting", () => {
    const covered = new Set(badValues.flatMap(([env]) => Object.keys(env)))
    for (const setting of Object.values(settings)) {
      assert.isTrue(setting.names.some((name) => covered.has(name)), `no bad-value case for ${setting.names[0]}`)
    }
  })

  it.effect.each(badValues)("%o fails with one line naming the variable", ([env, expected]) =>
    Effect.gen(function*() {
      const message = yield* failure(env)
      assert.strictEqual(message, expected)
      assert.notInclude(message, "hunter2secret")
      assert.notInclude(message, "\n")
    }))

  it.effect("takes the README's defaults", () =>
    Effect.gen(function*() {
      const config = yield* load({})
      assert.strictEqual(Redacted.value(config.databaseUrl), databaseUrl)
      assert.strictEqual(Redacted.value(config.listenDatabaseUrl), databaseUrl, "LISTEN uses the database URL")
      assert.strictEqual(Redacted.value(config.redisUrl), "redis://127.0.0.1:6379")
      assert.strictEqual(config.schema, "public")
      assert.strictEqual(config.streamPrefix, "outbox:")
      assert.strictEqual(config.batchSize, 2000)
      assert.strictEqual(config.concurrency, 2)
      assert.isTrue(Duration.equals(config.pollInterval, Duration.seconds(5)))
      assert.isTrue(Duration.equals(config.busyPause, Duration.millis(10)))
      assert.strictEqual(config.topicPattern.source, "^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
      assert.isTrue(Duration.equals(config.retryBaseDelay, Duration.millis(100)))
      assert.isTrue(Duration.equals(config.retryMaxDelay, Duration.seconds(10)))
      assert.strictEqual(config.httpPort, 9464)
      assert.strictEqual(config.logLevel, "info")
      assert.strictEqual(config.logFormat, "json")
      assert.isTrue(config.migrate)
      assert.isTrue(config.heapTuning)
      assert.strictEqual(config.otlpEndpoint, undefined, "no tracing")
      assert.strictEqual(config.redisMaxMemoryRatio, 0.9)
      assert.strictEqual(config.redisMinReplicas, 0)
      assert.strictEqual(config.streamTrim, "none")
    }))

  it.effect("accepts values as operators write them", () =>
    Effect.gen(function*() {
      const config = yield* load({
        RELAY_DATABASE_URL: `  ${databaseUrl} `,
        RELAY_LISTEN_DATABASE_URL: "postgresql://listener@db:5433/app",
        RELAY_REDIS_URL: "rediss://cache:6380",
        RELAY_BATCH_SIZE: " 250 ",
        RELAY_REDIS_MAX_MEMORY_RATIO: " .75 ",
        RELAY_STREAM_TRIM: "Acked",
        RELAY_POLL_INTERVAL: "500",
        RELAY_BUSY_PAUSE: "1 second",
        RELAY_LISTEN_CHECK_INTERVAL: " 2 seconds ",
        RELAY_RETENTION: "1 minute",
        RELAY_HTTP_PORT: "0",
        RELAY_LOG_LEVEL: "DEBUG",
        RELAY_LOG_FORMAT: " Pretty ",
        RELAY_MIGRATE: "off",
        RELAY_HEAP_TUNING: "No",
        RELAY_OTLP_ENDPOINT: " http://collector:4318 "
      })
      assert.strictEqual(Redacted.value(config.databaseUrl), databaseUrl, "trimmed, otherwise as written")
      assert.strictEqual(Redacted.value(config.listenDatabaseUrl), "postgresql://listener@db:5433/app")
      assert.strictEqual(Redacted.value(config.redisUrl), "rediss://cache:6380")
      assert.strictEqual(config.batchSize, 250)
      assert.strictEqual(config.redisMaxMemoryRatio, 0.75)
      assert.strictEqual(config.streamTrim, "acked")
      assert.isTrue(Duration.equals(config.pollInterval, Duration.millis(500)), "a bare number is milliseconds")
      assert.isTrue(Duration.equals(config.busyPause, Duration.seconds(1)))
      assert.isTrue(Duration.equals(config.listenCheckInterval, Duration.seconds(2)))
      assert.isTrue(Duration.equals(config.retention, Duration.minutes(1)))
      assert.strictEqual(config.httpPort, 0)
      assert.strictEqual(config.logLevel, "debug")
      assert.strictEqual(config.logFormat, "pretty")
      assert.isFalse(config.migrate)
      assert.isFalse(config.heapTuning)
      assert.strictEqual(config.otlpEndpoint, "http://collector:4318")
    }))

  it.effect("falls back to DATABASE_URL and REDIS_URL; the RELAY_ names win", () =>
    Effect.gen(function*() {
      const fallback = yield* load({
        RELAY_DATABASE_URL: undefined,
        DATABASE_URL: "postgres://x@db/x",
        REDIS_URL: "redis://r:1"
      })
      assert.strictEqual(Redacted.value(fallback.databaseUrl), "postgres://x@db/x")
      assert.strictEqual(Redacted.value(fallback.redisUrl), "redis://r:1")
      const both = yield* load({
        DATABASE_URL: "postgres://x@db/x",
        RELAY_REDIS_URL: "redis://a:1",
        REDIS_URL: "redis://b:1"
      })
      assert.strictEqual(Redacted.value(both.databaseUrl), databaseUrl)
      assert.strictEqual(Redacted.value(both.redisUrl), "redis://a:1")
    }))

  it.effect("takes a cluster's seed nodes, with credentials and IPv6 hosts", () =>
    Effect.gen(function*() {
      const url = "rediss://relay:p%40ss@a.example:7000,[::1]:7001,b.example"
      const config = yield* load({ RELAY_REDIS_URL: url, RELAY_REDIS_CLUSTER: "yes" })
      assert.isTrue(config.redisCluster)
      assert.deepStrictEqual(parseRedisUrl(Redacted.value(config.redisUrl)), {
        tls: true,
        username: "relay",
        password: "p@ss",
        hosts: [{ host: "a.example", port: 7000 }, { host: "::1", port: 7001 }, { host: "b.example", port: 6379 }],
        db: 0
      })
      assert.isFalse((yield* load({})).redisCluster)
      // A query for ioredis, as before.
      assert.strictEqual(
        Redacted.value((yield* load({ RELAY_REDIS_URL: "redis://r:1/2?family=6" })).redisUrl),
        "redis://r:1/2?family=6"
      )
    }))

  it.effect("names both variables when the database URL is missing", () =>
    Effect.gen(function*() {
      const expected = "Missing RELAY_DATABASE_URL or DATABASE_URL: expected a postgres:// or postgresql:// URL"
      assert.strictEqual(yield* failure({ RELAY_DATABASE_URL: undefined }), expected)
      assert.strictEqual(yield* failure({ RELAY_DATABASE_URL: "" }), expected)
      assert.strictEqual(yield* failure({ RELAY_DATABASE_URL: "  ", DATABASE_URL: "" }), expected)
    }))

  it.effect("refuses a retry base delay above the maximum", () =>
    Effect.gen(function*() {
      const expected = "Invalid RELAY_RETRY_BASE_DELAY: expected a duration no longer than RELAY_RETRY_MAX_DELAY"
      assert.strictEqual(yield* failure({ RELAY_RETRY_BASE_DELAY: "20 seconds" }), expected, "above the default max")
      assert.strictEqual(yield* failure({ RELAY_RETRY_MAX_DELAY: "50" }), expected, "below the default base")
      const equal = yield* load({ RELAY_RETRY_BASE_DELAY: "2 seconds", RELAY_RETRY_MAX_DELAY: "2000" })
      assert.isTrue(Duration.equals(equal.retryBaseDelay, equal.retryMaxDelay))
    }))
})

describe("empty values", () => {
  it.effect("RELAY_STREAM_PREFIX set but empty is no prefix; unset is the default", () =>
    Effect.gen(function*() {
      assert.strictEqual((yield* load({ RELAY_STREAM_PREFIX: "" })).streamPrefix, "")
      assert.strictEqual((yield* load({ RELAY_STREAM_PREFIX: undefined })).streamPrefix, "outbox:")
      assert.strictEqual((yield* load({})).streamPrefix, "outbox:")
    }))

  it.effect("a blank value counts as unset for settings that have no use for it", () =>
    Effect.gen(function*() {
      const config = yield* load({
        RELAY_STREAM_PREFIX: "  ",
        RELAY_BATCH_SIZE: "",
        RELAY_POLL_INTERVAL: " ",
        RELAY_TOPIC_PATTERN: "",
        RELAY_LOG_LEVEL: "",
        RELAY_MIGRATE: "\t",
        RELAY_LISTEN_DATABASE_URL: "",
        RELAY_REDIS_URL: "",
        REDIS_URL: "redis://fallback:1"
      })
      assert.strictEqual(config.streamPrefix, "outbox:")
      assert.strictEqual(config.batchSize, 2000)
      assert.isTrue(Duration.equals(config.pollInterval, Duration.seconds(5)))
      assert.strictEqual(config.topicPattern.source, "^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
      assert.strictEqual(config.logLevel, "info")
      assert.isTrue(config.migrate)
      assert.strictEqual(Redacted.value(config.listenDatabaseUrl), databaseUrl)
      assert.strictEqual(Redacted.value(config.redisUrl), "redis://fallback:1", "an empty RELAY_ name falls back")
    }))

  it.effect("the daemon's path (no ConfigProvider installed) reads an empty variable from process.env", () =>
    Effect.gen(function*() {
      const saved = { prefix: process.env.RELAY_STREAM_PREFIX, url: process.env.RELAY_DATABASE_URL }
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          for (const [name, value] of [["RELAY_STREAM_PREFIX", saved.prefix], ["RELAY_DATABASE_URL", saved.url]]) {
            if (value === undefined) delete process.env[name!]
            else process.env[name!] = value
          }
        })
      )
      process.env.RELAY_DATABASE_URL = databaseUrl
      process.env.RELAY_STREAM_PREFIX = ""
      assert.strictEqual((yield* loadSettings).streamPrefix, "")
      delete process.env.RELAY_STREAM_PREFIX
      assert.strictEqual((yield* loadSettings).streamPrefix, "outbox:")
    }))

  it.effect("RelayConfig.layer reads the installed ConfigProvider as it reports empty values", () =>
    Effect.gen(function*() {
      const env = { RELAY_DATABASE_URL: databaseUrl, RELAY_STREAM_PREFIX: "" }
      const through = (provider: ConfigProvider.ConfigProvider) =>
        Effect.service(RelayConfig).pipe(
          Effect.provide(RelayConfig.layer.pipe(Layer.provide(ConfigProvider.layer(provider))))
        )
      const keeping = yield* through(ConfigProvider.fromEnv({ env, preserveEmptyStrings: true }))
      assert.strictEqual(keeping.streamPrefix, "")
      // Effect's plain fromEnv drops empty values: to this provider the variable is unset.
      const dropping = yield* through(ConfigProvider.fromEnv({ env }))
      assert.strictEqual(dropping.streamPrefix, "outbox:")
    }))
})
