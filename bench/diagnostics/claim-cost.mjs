#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): what the claim's slot filter costs. On a throwaway Postgres, a
 * 20,000-row backlog (fresh, VACUUM ANALYZE), 20 claims of 1,000 rows each in their own transaction (DELETE
 * claim + COMMIT, the claim session's settings), for three forms of the statement: the slot filter as a
 * 64-bit mask (what src/relay/Statements.ts uses), as the slot list `slot = ANY($2::int2[])` (the earlier
 * form), and no filter at all. Six rounds, interleaved; prints every round's ms per claim and the median.
 *
 *   npm run build && node bench/diagnostics/claim-cost.mjs
 */
import postgres from "postgres"
import { arrayParam, slotMask, statements } from "../../dist/relay/Statements.js"
import { competitors } from "../lib/competitors.mjs"
import { startPostgres } from "../lib/servers.mjs"

const c = competitors.relay
const pg = await startPostgres()
const admin = postgres(pg.url, { max: 1, onnotice: () => {} })
try {
  await admin.unsafe("CREATE DATABASE claimcost")
  const url = pg.urlFor("claimcost")
  await c.setup(url, "redis://127.0.0.1:1")
  const sql = postgres(url, {
    max: 1,
    onnotice: () => {},
    fetch_types: false,
    connection: { enable_bitmapscan: "off", enable_sort: "off" }
  })
  const mask = statements("public").claimBatch
  const [{ pid }] = await sql.unsafe("SELECT pg_backend_pid() AS pid")
  const filter = "AND ((1::int8 << slot) & $2::text::int8) <> 0"
  if (!mask.includes(filter)) {
    throw new Error("the claim statement no longer has the mask filter this diagnostic compares")
  }
  const all = Array.from({ length: 64 }, (_, i) => i)
  const variants = {
    "mask (current)": [mask, slotMask(all)],
    "slot list = ANY(int2[])": [mask.replace(filter, "AND slot = ANY($2::text::int2[])"), arrayParam(all)],
    "no filter": [mask.replace(filter, "AND $2::text IS NOT NULL"), ""]
  }
  const times = {}
  for (let round = 0; round < 6; round++) {
    for (const [name, [text, param]] of Object.entries(variants)) {
      await sql.unsafe("TRUNCATE outbox_events")
      await sql.unsafe(c.backlogSql(1, 20000))
      await sql.unsafe("VACUUM ANALYZE outbox_events")
      const t0 = performance.now()
      for (let i = 0; i < 20; i++) {
        await sql.begin((tx) => tx.unsafe(text, [1000, param, String(pid)], { prepare: true }))
      }
      ;(times[name] ??= []).push((performance.now() - t0) / 20)
    }
  }
  for (const [name, t] of Object.entries(times)) {
    const sorted = [...t].sort((a, b) => a - b)
    console.log(
      `${name.padEnd(26)} median ${
        ((sorted[2] + sorted[3]) / 2).toFixed(2)
      } ms per 1,000-row claim + COMMIT  (rounds: ${t.map((x) => x.toFixed(1)).join(" / ")})`
    )
  }
  await sql.end()
} finally {
  await admin.end()
  await pg.stop()
}
