/**
 * vitest globalSetup: finds or starts one Postgres and one Redis for the whole run, builds a migrated
 * template database by running the daemon's own `migrate` command, and hands the tests what they need
 * through `inject(...)`. Servers: TEST_DATABASE_URL / TEST_REDIS_URL when set (shared servers: left
 * as they are), else throwaway ones from local binaries, else testcontainers.
 */
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import { promisify } from "node:util"
import postgres from "postgres"
import type { TestProject } from "vitest/node"
import { databaseUrl, startPostgresServer } from "./pgServer.ts"
import { startRedisServer } from "./redisServer.ts"
import { relayEnv, relayMainPath } from "./relayProcess.ts"

/** external: TEST_*_URL (shared, never reconfigure it); spawned: local binaries; container: Docker. */
export type ServerKind = "external" | "spawned" | "container"

declare module "vitest" {
  export interface ProvidedContext {
    /** URL of the `postgres` database of the test server (for CREATE/DROP DATABASE). */
    adminDatabaseUrl: string
    /** The migrated database that `createTestDatabase` copies. */
    templateDatabase: string
    redisUrl: string
    /** "external" when either server is external (then: nothing server-wide may be changed), else
     *  "container" when either is a container, else "spawned". */
    serverKind: ServerKind
    postgresKind: ServerKind
    redisKind: ServerKind
  }
}

type Cleanup = () => Promise<void>

const quoteIdent = (name: string) => `"${name.replace(/"/g, "\"\"")}"`

/** Runs `node dist/main.js migrate` against `url`; throws with its stderr when it fails. */
const migrateTemplate = async (root: string, main: string, url: string): Promise<void> => {
  try {
    await promisify(execFile)(process.execPath, [main, "migrate"], {
      cwd: root,
      env: relayEnv({ RELAY_DATABASE_URL: url }),
      timeout: 120_000
    })
  } catch (error) {
    const { code, signal, stderr, stdout } = error as {
      code?: number
      signal?: string
      stderr?: string
      stdout?: string
    }
    throw new Error(
      `"node dist/main.js migrate" failed (exit ${code ?? signal}):\n${stderr || stdout || (error as Error).message}`
    )
  }
}

const withAdmin = async <A>(url: string, run: (sql: postgres.Sql) => Promise<A>): Promise<A> => {
  const sql = postgres(url, { max: 1, connect_timeout: 30, onnotice: () => {} })
  try {
    return await run(sql)
  } finally {
    await sql.end({ timeout: 5 })
  }
}

const combinedKind = (a: ServerKind, b: ServerKind): ServerKind =>
  a === "external" || b === "external" ? "external" : a === "container" || b === "container" ? "container" : "spawned"

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cleanups: Array<Cleanup> = []
  const teardown = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      try {
        await cleanup()
      } catch (error) {
        console.error("[globalSetup] teardown step failed:", error)
      }
    }
  }
  try {
    const main = relayMainPath(project.config.root) // fail before starting anything
    let adminDatabaseUrl: string
    let postgresKind: ServerKind
    const testDatabaseUrl = process.env.TEST_DATABASE_URL
    if (testDatabaseUrl) {
      adminDatabaseUrl = databaseUrl(testDatabaseUrl, "postgres")
      postgresKind = "external"
    } else {
      const server = await startPostgresServer()
      cleanups.push(server.dispose)
      adminDatabaseUrl = server.url
      postgresKind = server.kind
    }

    let redisUrl: string
    let redisKind: ServerKind
    const testRedisUrl = process.env.TEST_REDIS_URL
    if (testRedisUrl) {
      redisUrl = testRedisUrl
      redisKind = "external"
    } else {
      const server = await startRedisServer()
      cleanups.push(server.dispose)
      redisUrl = server.url
      redisKind = server.kind
    }

    // On a shared server another run may be using "outbox_template": take a name of our own.
    const templateDatabase = postgresKind === "external"
      ? `outbox_template_${process.pid}_${randomBytes(4).toString("hex")}`
      : "outbox_template"
    const template = quoteIdent(templateDatabase)
    await withAdmin(adminDatabaseUrl, async (sql) => {
      if (postgresKind !== "external") await sql.unsafe(`DROP DATABASE IF EXISTS ${template}`)
      await sql.unsafe(`CREATE DATABASE ${template}`)
    })
    if (postgresKind === "external") {
      cleanups.push(() =>
        withAdmin(adminDatabaseUrl, async (sql) => {
          await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                    WHERE datname = ${templateDatabase} AND pid <> pg_backend_pid()`
          await sql.unsafe(`DROP DATABASE IF EXISTS ${template}`)
        })
      )
    }
    await migrateTemplate(project.config.root, main, databaseUrl(adminDatabaseUrl, templateDatabase))

    project.provide("adminDatabaseUrl", adminDatabaseUrl)
    project.provide("templateDatabase", templateDatabase)
    project.provide("redisUrl", redisUrl)
    project.provide("serverKind", combinedKind(postgresKind, redisKind))
    project.provide("postgresKind", postgresKind)
    project.provide("redisKind", redisKind)
    return teardown
  } catch (error) {
    await teardown()
    throw error
  }
}
