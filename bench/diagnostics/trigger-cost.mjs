#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): cost of the relay table's wake-up trigger for producers with NO relay
 * running, on a throwaway Postgres: trigger firing NOTIFY, trigger taking the skip path (a relay registered as
 * awake, so no NOTIFY), and trigger disabled; pgbench single-row INSERTs at 1, 8 and 32 clients, 3 s each, twice.
 *
 *   npm run build && node bench/diagnostics/trigger-cost.mjs
 */
import postgres from "postgres"
import { competitors } from "../lib/competitors.mjs"
import { pgbenchTps, startPostgres } from "../lib/servers.mjs"
const pg = await startPostgres()
const admin = postgres(pg.url, { max: 1, onnotice: () => {} })
try {
  await admin.unsafe("CREATE DATABASE t")
  await competitors.relay.setup(pg.urlFor("t"), "redis://127.0.0.1:1")
  const sql = postgres(pg.urlFor("t"), { max: 1, onnotice: () => {} })
  const run = (c) => pgbenchTps(pg, "t", competitors.relay.pgbenchScript, c, 3).tps.toFixed(0)
  for (const rep of [1, 2]) {
    for (const c of [1, 8, 32]) {
      await sql.unsafe("SELECT outbox_relay_wake_forget('fake')")
      await sql.unsafe("ALTER TABLE outbox_events ENABLE TRIGGER outbox_events_notify")
      const on = run(c)
      await sql.unsafe("SELECT outbox_relay_wake_set('fake', 'infinity')")
      const skip = run(c)
      await sql.unsafe("ALTER TABLE outbox_events DISABLE TRIGGER outbox_events_notify")
      const off = run(c)
      await sql.unsafe("TRUNCATE outbox_events")
      console.log(`rep ${rep} writers ${c}: notify ${on}, trigger skip-path (relay awake) ${skip}, trigger off ${off}`)
    }
  }
  await sql.end()
} finally {
  await admin.end()
  await pg.stop()
}
