/**
 * Applies `sql/NNNN_name.sql` in order, each once, each in its own transaction, recorded in
 * `<schema>.outbox_relay_migrations`.
 *
 * Safe to run twice and from several processes at once: everything happens under a session advisory
 * lock keyed by the schema, so a second migrator waits, then finds nothing left to do. A file changed
 * after it was applied stops the run (migrations are forward-only: add a new file instead).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { createHash } from "node:crypto"
import { readdirSync, readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { describe, MigrationFailed } from "../shared/Errors.js"
import { readPem, sslRootCert } from "../shared/Tls.js"
import { makePostgresClient } from "./Database.js"
import { quoteIdent } from "./Statements.js"

/** The folder holding the migrations shipped with the package (`<package>/sql`). */
export const defaultMigrationsDir = fileURLToPath(new URL("../../sql/", import.meta.url))

export interface Migration {
  readonly version: number
  readonly name: string
  readonly sql: string
  readonly checksum: string
}

/** Reads the migration files of a folder, in version order. */
export const readMigrations = (dir: string = defaultMigrationsDir): ReadonlyArray<Migration> =>
  readdirSync(dir)
    .filter((file) => /^\d{4}_[a-z0-9_]+\.sql$/.test(file))
    .sort()
    .map((file) => {
      const sql = readFileSync(`${dir}/${file}`, "utf8")
      return {
        version: Number(file.slice(0, 4)),
        name: file.replace(/\.sql$/, ""),
        sql,
        checksum: createHash("sha256").update(sql).digest("hex")
      }
    })

export interface MigrateOptions {
  readonly databaseUrl: Redacted.Redacted<string>
  readonly schema: string
  readonly dir?: string
  readonly timeout?: Duration.Duration
  /** CA to verify Postgres with; default: the file the URL's `sslrootcert` names, if any. */
  readonly databaseCa?: Buffer | undefined
}

/** Applies pending migrations; returns the names of those it applied. */
export const migrate = Effect.fn("Migrator.migrate")(function*(options: MigrateOptions) {
  const migrations = readMigrations(options.dir)
  const rootCert = options.databaseCa === undefined ? sslRootCert(Redacted.value(options.databaseUrl)) : undefined
  const read = rootCert === undefined ? undefined : readPem(rootCert)
  if (read !== undefined && "error" in read) {
    return yield* new MigrationFailed({ migration: "setup", message: `sslrootcert ${rootCert}: ${read.error}` })
  }
  const schema = quoteIdent(options.schema)
  const client = makePostgresClient(options.databaseUrl, {
    max: 1,
    applicationName: "outbox-relay-migrate",
    timeout: options.timeout ?? Duration.minutes(5),
    ca: options.databaseCa ?? (read !== undefined && "pem" in read ? read.pem : undefined)
  })
  const step = <A>(migration: string, run: () => Promise<A>) =>
    Effect.tryPromise({ try: run, catch: (cause) => new MigrationFailed({ migration, message: describe(cause) }) })

  return yield* Effect.gen(function*() {
    yield* step(
      "lock",
      () => client`SELECT pg_advisory_lock(hashtextextended(${`outbox-relay:migrate:${options.schema}`}, 0))`
    )
    yield* step("setup", () =>
      client.unsafe(`
        CREATE SCHEMA IF NOT EXISTS ${schema};
        CREATE TABLE IF NOT EXISTS ${schema}.outbox_relay_migrations (
          version    integer PRIMARY KEY,
          name       text NOT NULL,
          checksum   text NOT NULL,
          applied_at timestamptz NOT NULL DEFAULT now()
        );`).simple())
    const applied = yield* step("read", () =>
      client.unsafe<Array<{ version: number; name: string; checksum: string }>>(
        `SELECT version, name, checksum FROM ${schema}.outbox_relay_migrations ORDER BY version`
      ))
    const appliedByVersion = new Map(applied.map((row) => [row.version, row]))
    const done: Array<string> = []
    for (const migration of migrations) {
      const previous = appliedByVersion.get(migration.version)
      if (previous) {
        if (previous.checksum !== migration.checksum) {
          return yield* new MigrationFailed({
            migration: migration.name,
            message: `${migration.name} changed after it was applied (checksum differs); ` +
              "migrations are forward-only: put the change in a new file"
          })
        }
        continue
      }
      yield* step(migration.name, () =>
        client.begin(async (tx) => {
          await tx.unsafe(`SET LOCAL search_path TO ${schema}`)
          await tx.unsafe(migration.sql).simple()
          await tx.unsafe(
            `INSERT INTO ${schema}.outbox_relay_migrations (version, name, checksum) VALUES ($1, $2, $3)`,
            [migration.version, migration.name, migration.checksum]
          )
        }))
      yield* Effect.logInfo("migration applied").pipe(Effect.annotateLogs({ migration: migration.name }))
      done.push(migration.name)
    }
    return done as ReadonlyArray<string>
  }).pipe(
    Effect.ensuring(Effect.promise(() => client.end({ timeout: 1 })).pipe(Effect.ignore))
  )
})
