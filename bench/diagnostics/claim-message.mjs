#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): what one claim round trip costs the relay process, by how
 * it is sent. On a throwaway Postgres, with the relay's own claim statement on an empty outbox (the
 * steady state: a claim finds a few rows at most), 3,000 sequential round trips of:
 *   - four pipelined statements: the pid check, COMMIT, BEGIN, the claim (prepared, with parameters),
 *     the earlier way of sending it (plus a fifth, SELECT pg_backend_pid());
 *   - one multi-statement message (simple protocol): the pid check, COMMIT, BEGIN and EXECUTE of the
 *     claim prepared once with PREPARE, its numbers written in: what the claim session
 *     (src/relay/3-ClaimSession.ts) sends now.
 * Prints the wall time and this process's CPU time (user + system) per round trip, two rounds.
 *
 *   npm run build && node bench/diagnostics/claim-message.mjs
 */
import postgres from "postgres"
import { slotCount, slotMask, statements } from "../../dist/relay/Statements.js"
import { competitors } from "../lib/competitors.mjs"
import { startPostgres } from "../lib/servers.mjs"

const pg = await startPostgres()
const admin = postgres(pg.url, { max: 1, onnotice: () => {} })
try {
  await admin.unsafe("CREATE DATABASE claim")
  await competitors.relay.setup(pg.urlFor("claim"), "redis://127.0.0.1:1")
  const sql = postgres(pg.urlFor("claim"), { max: 1, fetch_types: false, onnotice: () => {} })
  const claim = statements("public").claimBatch
  const mask = slotMask(Array.from({ length: slotCount }, (_, i) => i))
  const [{ pid }] = await sql.unsafe("SELECT pg_backend_pid() AS pid")
  await sql.unsafe(`PREPARE claim(int, text, text) AS ${claim}`)
  await sql.unsafe("BEGIN")
  const check = "SELECT 1 / (pg_backend_pid() = $1::text::int)::int AS same_session"
  const variants = {
    "five pipelined statements (+ SELECT pg_backend_pid())": () =>
      Promise.all([
        sql.unsafe(check, [String(pid)], { prepare: true }),
        sql.unsafe("COMMIT"),
        sql.unsafe("BEGIN"),
        sql.unsafe("SELECT pg_backend_pid() AS pid", [], { prepare: true }),
        sql.unsafe(claim, [1000, mask, String(pid)], { prepare: true })
      ]),
    "four pipelined statements": () =>
      Promise.all([
        sql.unsafe(check, [String(pid)], { prepare: true }),
        sql.unsafe("COMMIT"),
        sql.unsafe("BEGIN"),
        sql.unsafe(claim, [1000, mask, String(pid)], { prepare: true })
      ]),
    "one message, EXECUTE of the prepared claim": () =>
      sql.unsafe(
        `SELECT 1 / (pg_backend_pid() = ${pid})::int AS same_session; COMMIT;
         BEGIN; EXECUTE claim(1000, '${mask}', '${pid}')`
      )
  }
  for (const round of [1, 2]) {
    for (const [name, roundTrip] of Object.entries(variants)) {
      const n = 3000
      for (let i = 0; i < 300; i++) await roundTrip()
      const cpu = process.cpuUsage()
      const started = performance.now()
      for (let i = 0; i < n; i++) await roundTrip()
      const used = process.cpuUsage(cpu)
      const wall = performance.now() - started
      console.log(
        `round ${round} ${name.padEnd(55)} wall ${(1000 * wall / n).toFixed(0).padStart(4)} µs, ` +
          `client CPU ${((used.user + used.system) / n).toFixed(0).padStart(4)} µs per round trip`
      )
    }
  }
  await sql.unsafe("COMMIT")
  await sql.end()
} finally {
  await admin.end()
  await pg.stop()
}
