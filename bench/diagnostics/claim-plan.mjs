#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): the claim statement's plan on a new table without statistics
 * yet (60,000 rows inserted, 30,000 of them already claimed with RELAY_RETENTION's UPDATE claim), with the
 * planner's defaults and with the claim connection's session settings (src/relay/Database.ts,
 * `claimPlanSettings`).
 * Each variant runs the DELETE claim of 1,000 rows under EXPLAIN ANALYZE five times (rolled back) and
 * prints the plan's scan nodes and the median execution time.
 *
 *   npm run build && node bench/diagnostics/claim-plan.mjs
 */
import postgres from "postgres"
import { slotMask, statements } from "../../dist/relay/Statements.js"
import { competitors } from "../lib/competitors.mjs"
import { startPostgres } from "../lib/servers.mjs"

const c = competitors.relay
const pg = await startPostgres()
const admin = postgres(pg.url, { max: 1, onnotice: () => {} })
try {
  await admin.unsafe("CREATE DATABASE plan")
  const url = pg.urlFor("plan")
  await c.setup(url, "redis://127.0.0.1:1")
  const sql = postgres(url, { max: 1, fetch_types: false, onnotice: () => {} })
  await sql.unsafe(c.backlogSql(1, 60000))
  const claim = statements("public").claimBatch
  const slots = slotMask(Array.from({ length: 64 }, (_, i) => i))
  const [{ pid }] = await sql.unsafe("SELECT pg_backend_pid() AS pid")
  for (let i = 0; i < 30; i++) {
    await sql.begin((tx) => tx.unsafe(statements("public").claimBatchRetaining, [1000, slots, String(pid)]))
  }
  const literal = claim.replace("$1", "1000").replace("$2::text", `'${slots}'`).replace("$3::text", `'${pid}'`)
  for (
    const [name, settings] of [["planner defaults", ""], [
      "claim session settings",
      "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off;"
    ]]
  ) {
    const times = []
    let nodes = ""
    for (let i = 0; i < 5; i++) {
      const plan = await sql.begin(async (tx) => {
        if (settings) await tx.unsafe(settings)
        const rows = await tx.unsafe(`EXPLAIN (ANALYZE) ${literal}`)
        throw Object.assign(new Error("roll back"), { rows })
      }).catch((e) => e.rows)
      const lines = plan.map((r) => r["QUERY PLAN"])
      times.push(Number(/Execution Time: ([\d.]+)/.exec(lines.at(-1))[1]))
      nodes = lines.filter((l) => /Scan on|Scan using|Sort  /.test(l)).map((l) =>
        l.trim().replace(/\s+\(cost.*$/, "").replace(/^-> +/, "")
      ).join(", ")
    }
    times.sort((a, b) => a - b)
    console.log(`${name.padEnd(24)} ${times[2].toFixed(1)} ms (median of 5)  ${nodes}`)
  }
  await sql.end()
} finally {
  await admin.end()
  await pg.stop()
}
