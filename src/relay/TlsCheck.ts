/**
 * One connection to each TLS server before the relay starts. A certificate that does not verify (wrong
 * CA, wrong host name, a client certificate the server refuses) will not heal by retrying, and the
 * relay's retries would only look like an outage: it stops here instead, with one line naming the
 * server and the setting to check. A server that is merely down is left to the usual retries.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { describe } from "../shared/Errors.js"
import { firstHostUrl, makeRedisClient } from "../shared/RedisClient.js"
import { postgresTarget } from "../shared/Tls.js"
import { makePostgresClient, withTimeout } from "./Database.js"
import type { RelaySettings } from "./RelayConfig.js"

/** A TLS server whose certificate did not verify, or that refused the handshake; not transient. */
export class TlsRejected extends Schema.TaggedError<TlsRejected>()("TlsRejected", {
  message: Schema.String
}) {}

/** OpenSSL's verification failures as Node names them, and its handshake alerts. */
const certificateCode = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|HOSTNAME|ALTNAME|^ERR_SSL_/

/** The certificate problem in `cause` (one line), or undefined when it is some other failure. */
const certificateProblem = (cause: unknown): string | undefined => {
  const code = (cause as { code?: unknown } | undefined)?.code
  if (typeof code === "string" && certificateCode.test(code)) return describe(cause)
  const message = describe(cause)
  return /does not support SSL|certificate/i.test(message) ? message : undefined
}

/** `host:port` of a URL, without credentials. */
const address = (url: string) => {
  const parsed = new URL(url)
  return `${parsed.hostname}:${parsed.port || (parsed.protocol.startsWith("redis") ? "6379" : "5432")}`
}

/**
 * The first failure of one connection attempt to Redis, or undefined when PING answered; to a cluster's
 * first seed alone (every node has the same certificate setup, and a single connection reports why).
 */
const tryRedis = (settings: RelaySettings) =>
  Effect.promise(async () => {
    const client = makeRedisClient(firstHostUrl(Redacted.value(settings.redisUrl)), {
      name: "outbox-relay-tls-check",
      commandTimeout: settings.redisCommandTimeout,
      reconnect: false,
      tls: settings.redisTls
    })
    // ioredis rejects connect() with "Connection is closed"; the reason came as an error event.
    let reason: unknown
    client.on("error", (error) => reason ??= error)
    try {
      await client.connect()
      await client.ping()
      return undefined
    } catch (error) {
      return reason ?? error
    } finally {
      client.disconnect()
    }
  })

const tryPostgres = (settings: RelaySettings, url: Redacted.Redacted<string>) =>
  Effect.promise(async () => {
    const timeout = Duration.min(settings.databaseTimeout, Duration.seconds(10))
    const client = makePostgresClient(url, {
      max: 1,
      applicationName: "outbox-relay-tls-check",
      timeout,
      ca: settings.databaseCa
    })
    try {
      await withTimeout(client.unsafe("SELECT 1"), Duration.toMillis(timeout))
      return undefined
    } catch (error) {
      return error
    } finally {
      await client.end({ timeout: 1 }).catch(() => undefined)
    }
  })

/**
 * Fails with `TlsRejected` when a TLS server's certificate does not verify; passes otherwise. `migrate`
 * needs no Redis: it checks Postgres only.
 */
export const checkTls = Effect.fn("TlsCheck.checkTls")(function*(
  settings: RelaySettings,
  servers: "redis and postgres" | "postgres"
) {
  const redisUrl = Redacted.value(settings.redisUrl)
  if (servers === "redis and postgres" && redisUrl.startsWith("rediss://")) {
    const problem = certificateProblem(yield* tryRedis(settings))
    if (problem !== undefined) {
      return yield* new TlsRejected({
        message: `Redis at ${address(firstHostUrl(redisUrl))}: TLS certificate did not verify (${problem}); ` +
          "check RELAY_REDIS_TLS_CA_FILE, RELAY_REDIS_TLS_CERT_FILE and RELAY_REDIS_TLS_KEY_FILE"
      })
    }
  }
  const databaseUrls = new Map([
    [Redacted.value(settings.databaseUrl), settings.databaseUrl],
    [Redacted.value(settings.listenDatabaseUrl), settings.listenDatabaseUrl]
  ])
  for (const [text, url] of databaseUrls) {
    if (postgresTarget(text, settings.databaseCa).ssl === undefined) continue
    const problem = certificateProblem(yield* tryPostgres(settings, url))
    if (problem !== undefined) {
      return yield* new TlsRejected({
        message: `Postgres at ${address(text)}: TLS certificate did not verify (${problem}); ` +
          "check RELAY_DATABASE_TLS_CA_FILE (or sslrootcert) and the host name in the URL"
      })
    }
  }
})
