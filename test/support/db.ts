/**
 * One fresh, migrated database per test (file): copied from the template database that globalSetup
 * migrated once, so tests never share outbox rows and never pay for migrations. Plus unique Redis key
 * prefixes, so tests sharing one Redis never see each other's streams.
 */
import { randomBytes } from "node:crypto"
import postgres from "postgres"
import { inject } from "vitest"
import { databaseUrl } from "./pgServer.ts"
import { sleep } from "./wait.ts"

export { databaseUrl }

export interface TestDatabase {
  /** URL of the new database (same server, user and options as the admin URL). */
  readonly url: string
  readonly name: string
  /** Terminates the database's connections and drops it. Idempotent. */
  readonly drop: () => Promise<void>
}

const suffix = () => randomBytes(4).toString("hex")

const sanitize = (label: string, max: number) =>
  label.toLowerCase().replace(/[^a-z0-9_]+/g, "_").replace(/^_+|_+$/g, "").slice(0, max) || "db"

const quoteIdent = (name: string) => `"${name.replace(/"/g, "\"\"")}"`

const busy = (error: unknown) => error instanceof Error && /is being accessed by other users/.test(error.message)

/** Runs `statement` on a short-lived admin connection, retrying while the database is busy. */
const withAdmin = async (adminUrl: string, run: (sql: postgres.Sql) => Promise<unknown>): Promise<void> => {
  const sql = postgres(adminUrl, { max: 1, connect_timeout: 10, onnotice: () => {} })
  try {
    for (let attempt = 1;; attempt++) {
      try {
        await run(sql)
        return
      } catch (error) {
        if (!busy(error) || attempt >= 10) throw error
        await sleep(100 * attempt + Math.random() * 100)
      }
    }
  } finally {
    await sql.end({ timeout: 5 })
  }
}

/**
 * Creates `t_<label>_<random>` from the migrated template (`CREATE DATABASE ... TEMPLATE`), on the
 * server globalSetup provided. Drop it in afterAll/afterEach with `drop()`.
 */
export const createTestDatabase = async (label: string): Promise<TestDatabase> => {
  const adminUrl = inject("adminDatabaseUrl")
  const template = inject("templateDatabase")
  const name = `t_${sanitize(label, 40)}_${process.pid}_${suffix()}`
  await withAdmin(adminUrl, (sql) => sql.unsafe(`CREATE DATABASE ${quoteIdent(name)} TEMPLATE ${quoteIdent(template)}`))
  let dropped = false
  return {
    url: databaseUrl(adminUrl, name),
    name,
    drop: async () => {
      if (dropped) return
      dropped = true
      await withAdmin(adminUrl, async (sql) => {
        await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                  WHERE datname = ${name} AND pid <> pg_backend_pid()`
        await sql.unsafe(`DROP DATABASE IF EXISTS ${quoteIdent(name)}`)
      })
    }
  }
}

/** A Redis key prefix no other test uses: `t:<label>:<random>:`. */
export const uniquePrefix = (label: string): string =>
  `t:${label.replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 40)}:${suffix()}:`
