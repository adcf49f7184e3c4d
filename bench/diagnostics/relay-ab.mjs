#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): two or more relay builds (or settings) side by side under
 * the producer-overhead load, taking turns on one throwaway Postgres and Redis. Each round starts each
 * variant's `node <main.js>`, runs pgbench (single-row INSERTs, no rate limit, 8 clients) for a few
 * seconds, and reads the producers' commits/s, the relay's CPU time (/proc, user + system) and its
 * claims (pg_stat_statements: statements with SKIP LOCKED). Medians over the rounds at the end.
 *
 *   node bench/diagnostics/relay-ab.mjs <main.js>[|<json env>] <main.js>[|<json env>] ...
 *
 *   # this checkout against an earlier commit, built in a worktree:
 *   git worktree add /tmp/before <commit> && ln -s "$PWD/node_modules" /tmp/before/node_modules \
 *     && (cd /tmp/before && npx tsc -p tsconfig.build.json)
 *   npm run build && node bench/diagnostics/relay-ab.mjs /tmp/before/dist/main.js dist/main.js
 *   # one build, two settings:
 *   node bench/diagnostics/relay-ab.mjs dist/main.js 'dist/main.js|{"RELAY_BUSY_PAUSE":"5"}'
 *
 * Two keys of the JSON env are the diagnostic's own: "AB_TRIGGER": "off" disables the wake-up trigger while
 * that variant's pgbench runs (pair it with RELAY_POLL_INTERVAL for the polling relay of the bench's
 * producer scenario), "AB_PG": "<param>=<value>&..." adds startup parameters to the relay's database URL.
 *
 *   node bench/diagnostics/relay-ab.mjs dist/main.js \
 *     'dist/main.js|{"AB_TRIGGER":"off","RELAY_POLL_INTERVAL":"10"}'
 *
 * Environment: AB_CLIENTS (8), AB_SECONDS (8), AB_ROUNDS (3), AB_RATE (unset: no limit).
 */
import { execFileSync, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import postgres from "postgres"
import { competitors } from "../lib/competitors.mjs"
import { findBinary, pgbenchArgs, sleep, startPostgres, startRedis } from "../lib/servers.mjs"

const variants = process.argv.slice(2).map((arg) => {
  const [main, env] = arg.split("|")
  return { label: arg, main, env: env ? JSON.parse(env) : {} }
})
if (variants.length < 2) {
  console.error("usage: node bench/diagnostics/relay-ab.mjs <main.js>[|<json env>] <main.js>[|<json env>] ...")
  process.exit(2)
}
const clients = process.env.AB_CLIENTS ?? "8"
const seconds = process.env.AB_SECONDS ?? "8"
const rounds = Number(process.env.AB_ROUNDS ?? 3)
const c = competitors.relay
/** CPU seconds (user + system) of a process so far. */
const cpuSeconds = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")
  return (Number(fields[11]) + Number(fields[12])) / 100
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

const pg = await startPostgres()
const rs = await startRedis()
const admin = postgres(pg.url, { max: 1, onnotice: () => {} })
try {
  await admin.unsafe("CREATE DATABASE ab")
  const url = pg.urlFor("ab")
  await c.setup(url, rs.url)
  const db = postgres(url, { max: 1, onnotice: () => {} })
  await db.unsafe("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
  await db.unsafe("ALTER SYSTEM SET pg_stat_statements.track = 'top'")
  await db.unsafe("SELECT pg_reload_conf()")
  const script = join(mkdtempSync(join(tmpdir(), "relay-ab-")), "insert.sql")
  writeFileSync(script, c.pgbenchScript)
  const results = variants.map(() => [])
  for (let round = 0; round < rounds; round++) {
    for (const [i, v] of variants.entries()) {
      const { AB_TRIGGER, AB_PG, ...env } = v.env
      const child = spawn(process.execPath, [v.main], {
        env: {
          ...process.env,
          RELAY_DATABASE_URL: AB_PG ? `${url}?${AB_PG}` : url,
          RELAY_REDIS_URL: rs.url,
          RELAY_HTTP_PORT: "0",
          RELAY_LOG_LEVEL: "warn",
          RELAY_STREAM_PREFIX: "bench:relay:",
          ...env
        },
        stdio: "ignore"
      })
      try {
        await sleep(1500)
        if (AB_TRIGGER === "off") await db.unsafe("ALTER TABLE outbox_events DISABLE TRIGGER outbox_events_notify")
        await db.unsafe("SELECT pg_stat_statements_reset()")
        let notified = 0
        const listener = postgres(url, { max: 1, onnotice: () => {} })
        await listener.listen("outbox_events", () => notified++)
        const before = cpuSeconds(child.pid)
        const extra = process.env.AB_RATE ? ["-R", process.env.AB_RATE] : []
        const args = pgbenchArgs(pg, { clients: Number(clients), db: "ab", extra, file: script, seconds })
        const out = execFileSync(findBinary("pgbench"), args, { encoding: "utf8" })
        const cpu = cpuSeconds(child.pid) - before
        if (AB_TRIGGER === "off") await db.unsafe("ALTER TABLE outbox_events ENABLE TRIGGER outbox_events_notify")
        const tps = Number(/tps = ([\d.]+)/.exec(out)?.[1])
        await listener.end()
        const [{ claims, flips }] = await db.unsafe(
          `SELECT coalesce(sum(calls) FILTER (WHERE query ~ 'SKIP LOCKED'), 0)::int AS claims,
                  coalesce(sum(calls) FILTER (WHERE query ~ 'outbox_relay_wake_set'), 0)::int AS flips
             FROM pg_stat_statements`
        )
        results[i].push({ tps, cpu, claims, notified, flips })
        console.log(
          `round ${round} ${v.label}: ${tps.toFixed(0)} commits/s, relay CPU ${cpu.toFixed(2)} s, ` +
            `${claims} claims (${(tps * Number(seconds) / claims).toFixed(1)} events each), ` +
            `${notified} notifications, ${flips} flag writes`
        )
      } finally {
        child.kill("SIGTERM")
        await new Promise((resolve) => child.once("exit", resolve))
      }
      await sleep(500)
      await db.unsafe("DELETE FROM outbox_events")
    }
  }
  console.log(`\nmedians over ${rounds} rounds (${clients} clients, ${seconds} s each):`)
  for (const [i, v] of variants.entries()) {
    const r = results[i]
    console.log(
      `  ${v.label}: ${median(r.map((x) => x.tps)).toFixed(0)} commits/s, relay CPU ${
        median(r.map((x) => x.cpu)).toFixed(2)
      } s, ` +
        `${median(r.map((x) => x.claims))} claims, ${median(r.map((x) => x.notified))} notifications, ` +
        `${median(r.map((x) => x.flips))} flag writes`
    )
  }
  await db.end()
} finally {
  await admin.end()
  await pg.stop()
  await rs.stop()
}
