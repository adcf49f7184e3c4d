/**
 * TLS material for Redis (`rediss://`) and Postgres (`sslmode`, a CA file), shared by the relay and the
 * consumer. Files are read once, at start; the clients get the bytes (docs/production.md#tls).
 */
import { readFileSync } from "node:fs"
import type { ConnectionOptions } from "node:tls"

/** CA, client certificate and key (PEM) for a Redis connection; each optional. */
export interface RedisTls {
  readonly ca?: Buffer | string | undefined
  readonly cert?: Buffer | string | undefined
  readonly key?: Buffer | string | undefined
}

/**
 * Reads a PEM file; the failure is one line saying why ("no such file", "permission denied", "not PEM").
 */
export const readPem = (path: string): { readonly pem: Buffer } | { readonly error: string } => {
  let pem: Buffer
  try {
    pem = readFileSync(path)
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code
    return { error: `cannot read it (${code ?? String(cause)})` }
  }
  return pem.includes("-----BEGIN ") ? { pem } : { error: "not a PEM file (no -----BEGIN line)" }
}

/** ioredis's `tls` option for `url`: only for `rediss://` (else undefined, and the connection is plain). */
export const redisTlsOptions = (url: string, tls: RedisTls | undefined): ConnectionOptions | undefined => {
  if (!url.startsWith("rediss://")) return undefined
  const options: ConnectionOptions = {}
  if (tls?.ca !== undefined) options.ca = tls.ca
  if (tls?.cert !== undefined) options.cert = tls.cert
  if (tls?.key !== undefined) options.key = tls.key
  return options
}

/** The `sslmode` values that may go with a CA (libpq's meaning; absent or `require` with a CA: verify-full). */
const verifyingModes = [null, "require", "verify-ca", "verify-full"] as const

/** A Postgres URL as both drivers (postgres.js, pg) are to open it. */
export interface PostgresTarget {
  /** The URL without `sslmode`/`sslrootcert` when those are handled here (postgres.js would send them as settings). */
  readonly url: string
  /** The drivers' `ssl` option; undefined: the URL's own sslmode (if any) decides, as before. */
  readonly ssl: ConnectionOptions | undefined
}

/**
 * Resolves `sslmode` and a CA into one `ssl` option both drivers understand. With a CA (file or
 * `sslrootcert`), or `sslmode=verify-ca|verify-full`, the server's certificate is verified:
 * against that CA (else Node's) and, unless `verify-ca`, for the URL's host name.
 */
export const postgresTarget = (url: string, ca: Buffer | undefined): PostgresTarget => {
  const parsed = new URL(url)
  const mode = parsed.searchParams.get("sslmode")
  const rootCert = parsed.searchParams.get("sslrootcert")
  if (ca === undefined && rootCert === null && mode !== "verify-ca" && mode !== "verify-full") {
    return { url, ssl: undefined }
  }
  parsed.searchParams.delete("sslmode")
  parsed.searchParams.delete("sslrootcert")
  const ssl: ConnectionOptions = {
    rejectUnauthorized: true,
    ...(ca === undefined ? {} : { ca }),
    // verify-ca: the chain must verify, any host name will do.
    ...(mode === "verify-ca" ? { checkServerIdentity: () => undefined } : {})
  }
  return { url: parsed.toString(), ssl }
}

/** Why `sslmode` cannot go with a CA, or undefined when it can. */
export const sslModeConflict = (url: string): string | undefined => {
  const mode = new URL(url).searchParams.get("sslmode")
  return (verifyingModes as ReadonlyArray<string | null>).includes(mode)
    ? undefined
    : `sslmode=${mode} does not verify the server; with a CA use verify-full, verify-ca or require`
}

/** The `sslrootcert` of a Postgres URL, unless absent or `system` (Node's own CAs). */
export const sslRootCert = (url: string): string | undefined => {
  const path = new URL(url).searchParams.get("sslrootcert")
  return path === null || path === "system" ? undefined : path
}
