/**
 * sql/schema.sql is the migrations' result, for reading: applied to an empty database it must give the
 * same schema as the migrations do. Every dump comes from the same pg_dump, so the comparison holds
 * whatever the server's version.
 *
 * Reloading a dump can change how an expression prints (a BETWEEN inside an AND comes back flattened),
 * so the migrated schema is dumped and reloaded once too, like schema.sql was, before the comparison.
 */
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { promisify } from "node:util"
import postgres from "postgres"
import { afterAll, expect, inject, it } from "vitest"
import { readMigrations } from "../src/relay/Migrator.js"
import { createTestDatabase, databaseUrl, type TestDatabase } from "./support/db.js"
import { findBinary } from "./support/processes.js"

const schemaFile = new URL("../sql/schema.sql", import.meta.url)
const dropLater: Array<() => Promise<void>> = []

afterAll(async () => {
  for (const drop of dropLater.splice(0)) await drop()
})

/**
 * PG_DUMP, else the newest /usr/lib/postgresql/<version>/bin/pg_dump (where the suite's own server comes from,
 * and pg_dump must be at least the server's version), else the one on PATH.
 */
const findPgDump = (): string => {
  const debian = existsSync("/usr/lib/postgresql")
    ? readdirSync("/usr/lib/postgresql")
      .filter((version) => /^\d+$/.test(version))
      .sort((a, b) => Number(b) - Number(a))
      .map((version) => join("/usr/lib/postgresql", version, "bin", "pg_dump"))
      .find((candidate) => existsSync(candidate))
    : undefined
  const found = process.env.PG_DUMP ?? debian ?? findBinary("pg_dump")
  if (!found) throw new Error("pg_dump not found: install the PostgreSQL client or set PG_DUMP")
  return found
}

/** `pg_dump --schema-only`, without the migrator's bookkeeping table and the per-run `\restrict` key. */
const dumpSchema = async (url: string): Promise<string> => {
  const pgDump = findPgDump()
  const args = ["--schema-only", "--no-owner", "--no-privileges", "--exclude-table=outbox_relay_migrations"]
  const { stdout } = await promisify(execFile)(pgDump, [...args, `--dbname=${url}`], { maxBuffer: 64 << 20 })
  return stdout.split("\n").filter((line) => !/^\\(un)?restrict\b/.test(line)).join("\n")
}

/** An empty database (CREATE DATABASE without a template: what the migrated template started from). */
const createEmptyDatabase = async (label: string): Promise<TestDatabase> => {
  const adminUrl = inject("adminDatabaseUrl")
  const name = `t_${label}_${process.pid}_${randomBytes(4).toString("hex")}`
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} })
  try {
    await admin.unsafe(`CREATE DATABASE "${name}"`)
  } finally {
    await admin.end({ timeout: 5 })
  }
  const drop = async () => {
    const sql = postgres(adminUrl, { max: 1, onnotice: () => {} })
    try {
      await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ${name}`
      await sql.unsafe(`DROP DATABASE IF EXISTS "${name}"`)
    } finally {
      await sql.end({ timeout: 5 })
    }
  }
  return { url: databaseUrl(adminUrl, name), name, drop }
}

/** A new empty database holding `schema` (SQL as pg_dump writes it, without psql's meta-commands). */
const loadSchema = async (label: string, schema: string): Promise<TestDatabase> => {
  const database = await createEmptyDatabase(label)
  dropLater.push(database.drop)
  const sql = postgres(database.url, { max: 1, onnotice: () => {} })
  try {
    // pg_dump puts functions before the tables their bodies use; its own output disables the check too.
    await sql.unsafe(`SET check_function_bodies = false;\n${schema}`).simple()
  } finally {
    await sql.end({ timeout: 5 })
  }
  return database
}

it("sql/schema.sql gives the same schema as the migrations", async () => {
  const migrated = await createTestDatabase("schema_migrated")
  dropLater.push(migrated.drop)
  const [reloaded, fromFile] = await Promise.all([
    dumpSchema(migrated.url).then((dump) => loadSchema("schema_reloaded", dump)),
    loadSchema("schema_sql", readFileSync(schemaFile, "utf8"))
  ])

  const [expected, actual] = await Promise.all([dumpSchema(reloaded.url), dumpSchema(fromFile.url)])
  expect(
    actual,
    "sql/schema.sql differs from what the migrations create: regenerate it with `npm run schema`"
  ).toBe(expected)
})

it("the migrator never applies sql/schema.sql", () => {
  const names = readMigrations().map((migration) => migration.name)
  expect(names.length).toBeGreaterThan(0)
  expect(names).not.toContain("schema")
})
