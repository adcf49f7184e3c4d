#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): how many producer commits still send NOTIFY while the relay
 * runs (the trigger skips it while the relay is awake). On throwaway servers, with the relay running
 * (`node dist/main.js`, default settings or the RELAY_* JSON given), pgbench single-row INSERTs at 8 and
 * 32 clients for 4 s each, twice, while a LISTEN connection counts the notifications.
 *
 *   npm run build && node bench/diagnostics/notify-share.mjs ['{"RELAY_CONCURRENCY":"1"}']
 */
import postgres from "postgres"
import { competitors } from "../lib/competitors.mjs"
import { pgbenchTps, sleep, startPostgres, startRedis } from "../lib/servers.mjs"
const pg = await startPostgres()
const rs = await startRedis()
const admin = postgres(pg.url, { max: 1, onnotice: () => {} })
const env = JSON.parse(process.argv[2] ?? "{}")
try {
  let n = 0
  for (const rep of [1, 2]) {
    for (const c of [8, 32]) {
      const db = `ns${n++}`
      await admin.unsafe(`CREATE DATABASE ${db}`)
      const url = pg.urlFor(db)
      await competitors.relay.setup(url, rs.url)
      const p = competitors.relay.start(url, rs.url, env)
      await sleep(1500)
      const listener = postgres(url, { max: 1, onnotice: () => {} })
      let notes = 0
      await listener.listen("outbox_events", () => {
        notes++
      })
      const { tps, transactions: tx } = pgbenchTps(pg, db, competitors.relay.pgbenchScript, c, 4)
      await sleep(200)
      console.log(
        `rep ${rep} writers ${c} env ${JSON.stringify(env)}: ${
          tps.toFixed(0)
        } commits/s, ${notes} notifications for ${tx} commits (${(100 * notes / tx).toFixed(1)}%)`
      )
      await listener.end()
      await p.stop()
      await admin.unsafe(`DROP DATABASE ${db} WITH (FORCE)`)
    }
  }
} finally {
  await admin.end()
  await pg.stop()
  await rs.stop()
}
