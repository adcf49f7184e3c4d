#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): what the wake-up trigger's skip path (sql/0003_relay_wake.sql)
 * costs producers, piece by piece, with NO relay running and one relay registered as awake (so no
 * NOTIFY is sent): trigger disabled; a trigger that only returns; + the shared hand-over lock; + the
 * isolation-level check; the function of sql/0003 (+ the read of outbox_relay_wake); the function of
 * sql/0006 (try-lock and a sequence read, simple expressions only, no query, no SET search_path). pgbench single-row
 * INSERTs at 1, 8 and 32 clients, 3 s each, twice, on a throwaway Postgres. The function is replaced in
 * place for each variant (throwaway database only).
 *
 *   npm run build && node bench/diagnostics/trigger-parts.mjs
 */
import postgres from "postgres"
import { competitors } from "../lib/competitors.mjs"
import { pgbenchTps, startPostgres } from "../lib/servers.mjs"
const pg = await startPostgres()
const admin = postgres(pg.url, { max: 1, onnotice: () => {} })
const variants = {
  // The body of sql/0003_relay_wake.sql's outbox_events_notify(); "sql0006" below is the function the
  // migrations installed (sql/0006_wake_summary.sql), restored as it was.
  empty: `RETURN NULL;`,
  lock: `PERFORM pg_advisory_xact_lock_shared(122519062982776); RETURN NULL;`,
  lockSetting: `PERFORM pg_advisory_xact_lock_shared(122519062982776);
  IF current_setting('transaction_isolation') = 'read committed' THEN RETURN NULL; END IF; RETURN NULL;`,
  sql0003: `PERFORM pg_advisory_xact_lock_shared(122519062982776);
  IF current_setting('transaction_isolation') = 'read committed'
     AND (SELECT bool_and(awake_until > clock_timestamp()) FROM outbox_relay_wake) THEN
    RETURN NULL;
  END IF;
  PERFORM pg_notify('outbox_events', '');
  RETURN NULL;`
}
try {
  await admin.unsafe("CREATE DATABASE t")
  await competitors.relay.setup(pg.urlFor("t"), "redis://127.0.0.1:1")
  const sql = postgres(pg.urlFor("t"), { max: 1, onnotice: () => {} })
  await sql.unsafe("SELECT outbox_relay_wake_set('fake', 'infinity')")
  const [{ installed }] = await sql.unsafe("SELECT pg_get_functiondef('outbox_events_notify'::regproc) AS installed")
  const run = (c) => pgbenchTps(pg, "t", competitors.relay.pgbenchScript, c, 3).tps.toFixed(0)
  for (const rep of [1, 2]) {
    for (const c of [1, 8, 32]) {
      const out = []
      await sql.unsafe("ALTER TABLE outbox_events DISABLE TRIGGER outbox_events_notify")
      out.push(`off ${run(c)}`)
      await sql.unsafe("ALTER TABLE outbox_events ENABLE TRIGGER outbox_events_notify")
      for (const [name, body] of Object.entries(variants)) {
        // As in sql/0003: the function sets its search_path.
        await sql.unsafe(
          `CREATE OR REPLACE FUNCTION outbox_events_notify() RETURNS trigger LANGUAGE plpgsql
           SET search_path FROM CURRENT AS $$ BEGIN ${body} END $$`
        )
        out.push(`${name} ${run(c)}`)
      }
      await sql.unsafe(installed)
      out.push(`sql0006 ${run(c)}`)
      await sql.unsafe("TRUNCATE outbox_events")
      console.log(`rep ${rep} writers ${c}: ${out.join(", ")}`)
    }
  }
  await sql.end()
} finally {
  await admin.end()
  await pg.stop()
}
