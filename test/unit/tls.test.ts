/**
 * TLS settings without servers: which files are read, which combinations are refused with one line, and
 * how `sslmode`/`sslrootcert` become the one `ssl` option both Postgres drivers get.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { resolveOptions } from "../../src/consumer/Options.js"
import { RelayConfig } from "../../src/relay/RelayConfig.js"
import { postgresTarget } from "../../src/shared/Tls.js"

const dir = mkdtempSync(join(tmpdir(), "tls-unit-"))
const pemPath = join(dir, "ca.pem")
const pem = "-----BEGIN CERTIFICATE-----\nnot checked here\n-----END CERTIFICATE-----\n"
writeFileSync(pemPath, pem)

const load = (env: Record<string, string>) =>
  Effect.service(RelayConfig).pipe(
    Effect.provide(RelayConfig.layerFrom({ RELAY_DATABASE_URL: "postgres://app@db/app", ...env }))
  )

describe("TLS settings", () => {
  it.effect("reads the files once into the settings; sslrootcert in the URL is a CA file too", () =>
    Effect.gen(function*() {
      const redis = yield* load({
        RELAY_REDIS_URL: "rediss://cache:6380",
        RELAY_REDIS_TLS_CA_FILE: pemPath,
        RELAY_REDIS_TLS_CERT_FILE: pemPath,
        RELAY_REDIS_TLS_KEY_FILE: pemPath
      })
      assert.strictEqual(redis.redisTls?.ca?.toString(), pem)
      assert.strictEqual(redis.redisTls?.key?.toString(), pem)
      assert.strictEqual(redis.databaseCa, undefined)
      const fromUrl = yield* load({
        RELAY_DATABASE_URL: `postgres://app@db/app?sslmode=verify-full&sslrootcert=${pemPath}`
      })
      assert.strictEqual(fromUrl.databaseCa?.toString(), pem)
      assert.strictEqual(fromUrl.redisTls, undefined)
    }))

  it.effect("refuses a CA with an sslmode that does not verify, and a certificate without its key", () =>
    Effect.gen(function*() {
      const mode = yield* Effect.flip(
        load({ RELAY_DATABASE_URL: "postgres://app@db/app?sslmode=prefer", RELAY_DATABASE_TLS_CA_FILE: pemPath })
      )
      assert.strictEqual(
        mode.message,
        "Invalid RELAY_DATABASE_URL=<redacted>: sslmode=prefer does not verify the server; with a CA use " +
          "verify-full, verify-ca or require"
      )
      const half = yield* Effect.flip(load({ RELAY_REDIS_URL: "rediss://c:1", RELAY_REDIS_TLS_CERT_FILE: pemPath }))
      assert.strictEqual(
        half.message,
        "Missing RELAY_REDIS_TLS_KEY_FILE: a client certificate needs both RELAY_REDIS_TLS_CERT_FILE and " +
          "RELAY_REDIS_TLS_KEY_FILE"
      )
    }))

  it("gives both drivers one verifying ssl option and a URL without sslmode/sslrootcert", () => {
    const ca = Buffer.from(pem)
    assert.deepStrictEqual(postgresTarget("postgres://a@h/d", undefined), { url: "postgres://a@h/d", ssl: undefined })
    const full = postgresTarget(`postgres://a@h/d?sslmode=verify-full&sslrootcert=${pemPath}&x=1`, ca)
    assert.strictEqual(full.url, "postgres://a@h/d?x=1")
    assert.strictEqual(full.ssl?.ca, ca)
    assert.strictEqual(full.ssl?.rejectUnauthorized, true)
    assert.strictEqual(full.ssl?.checkServerIdentity, undefined, "verify-full checks the host name")
    const chainOnly = postgresTarget("postgres://a@h/d?sslmode=verify-ca", ca)
    assert.isFunction(chainOnly.ssl?.checkServerIdentity)
    const caOnly = postgresTarget("postgres://a@h/d", ca)
    assert.strictEqual(caOnly.ssl?.rejectUnauthorized, true, "a CA alone means verify-full")
  })

  it.effect("consumer: tls reads files, takes PEM as is, and refuses TLS on redis:// or an unreadable file", () =>
    Effect.gen(function*() {
      const base = { stream: "s", group: "g" }
      const resolved = yield* resolveOptions({
        ...base,
        redisUrl: "rediss://c:1",
        tls: { ca: pemPath, cert: pem, key: Buffer.from(pem) }
      })
      assert.strictEqual(resolved.tls?.ca?.toString(), pem)
      assert.strictEqual(resolved.tls?.cert, pem)
      const plain = yield* Effect.flip(resolveOptions({ ...base, redisUrl: "redis://c:1", tls: { ca: pemPath } }))
      assert.strictEqual(plain.message, "tls needs a rediss:// redisUrl")
      const missing = yield* Effect.flip(resolveOptions({ ...base, redisUrl: "rediss://c:1", tls: { ca: "/no/ca" } }))
      assert.strictEqual(missing.message, "tls.ca \"/no/ca\": cannot read it (ENOENT)")
    }))
})
