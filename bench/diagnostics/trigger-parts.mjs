#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): what the wake-up trigger's skip path (sql/0003_relay_wake.sql)
 * costs producers, piece by piece, with NO relay running and one relay registered as awake (so no
 * NOTIFY is sent): trigger disabled; a trigger that only returns; + the shared hand-over lock; + the
 * isolation-level check; the function of sql/0003 (+ the read of outbox_relay_wake); the function of
 * sql/0006 (try-lock and a sequence read, simple expressions only, no query, no SET search_path); and
 * "when": the test of sql/0006 as the trigger's WHEN condition in front of a function that only notifies
 * (no PL/pgSQL call while the relay is awake); "before": the function of sql/0006 as a BEFORE INSERT statement
 * trigger (called at once instead of queued to the statement's end), "beforeEmpty": a BEFORE trigger that only
 * returns. pgbench single-row INSERTs on a throwaway Postgres, every
 * variant in turn (reversed in odd rounds); the function is replaced in place for each variant. Prints
 * commits/s per round, then each variant's per-round ratio to "off" and their median.
 *
 *   npm run build && node bench/diagnostics/trigger-parts.mjs
 *   TRIGGER_WRITERS=8 TRIGGER_ROUNDS=7 TRIGGER_SECONDS=4 TRIGGER_VARIANTS=sql0006,when \
 *     node bench/diagnostics/trigger-parts.mjs
 *
 * Environment: TRIGGER_WRITERS (1,8,32), TRIGGER_ROUNDS (2), TRIGGER_SECONDS (3), TRIGGER_VARIANTS (all;
 * "off" always runs).
 */
import postgres from "postgres"
import { competitors } from "../lib/competitors.mjs"
import { pgbenchTps, startPostgres } from "../lib/servers.mjs"
import { median } from "../lib/stats.mjs"

const writerCounts = (process.env.TRIGGER_WRITERS ?? "1,8,32").split(",").map(Number)
const rounds = Number(process.env.TRIGGER_ROUNDS ?? 2)
const seconds = Number(process.env.TRIGGER_SECONDS ?? 3)
const pg = await startPostgres()
const admin = postgres(pg.url, { max: 1, onnotice: () => {} })
// Function bodies, as in sql/0003 (the function sets its search_path); "sql0006" is the function the
// migrations installed (sql/0006_wake_summary.sql), restored as it was; "when" swaps the trigger.
const bodies = {
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
const skipTest = `pg_try_advisory_xact_lock_shared(122519062982776)
  AND pg_sequence_last_value('public.outbox_relay_awake_until'::regclass)
      > (extract(epoch FROM clock_timestamp()) * 1000000)::bigint`
const all = [...Object.keys(bodies), "sql0006", "when", "before", "beforeEmpty"]
const chosen = process.env.TRIGGER_VARIANTS ? process.env.TRIGGER_VARIANTS.split(",") : all
for (const name of chosen) if (!all.includes(name)) throw new Error(`unknown variant ${name}; one of ${all}`)
try {
  await admin.unsafe("CREATE DATABASE t")
  await competitors.relay.setup(pg.urlFor("t"), "redis://127.0.0.1:1")
  const sql = postgres(pg.urlFor("t"), { max: 1, onnotice: () => {} })
  await sql.unsafe("SELECT outbox_relay_wake_set('fake', 'infinity')")
  const [{ installed }] = await sql.unsafe("SELECT pg_get_functiondef('outbox_events_notify'::regproc) AS installed")
  await sql.unsafe(`CREATE FUNCTION notify_only() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN PERFORM pg_notify('outbox_events', ''); RETURN NULL; END $$`)
  await sql.unsafe(`CREATE FUNCTION empty_trigger() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN RETURN NULL; END $$`)
  const setTrigger = (on) =>
    sql.unsafe(`ALTER TABLE outbox_events ${on ? "ENABLE" : "DISABLE"} TRIGGER outbox_events_notify`)
  /** Installs `variant`, runs pgbench, restores the migrated trigger. */
  const measure = async (variant, writers) => {
    if (variant === "off") await setTrigger(false)
    if (variant === "when") {
      await setTrigger(false)
      await sql.unsafe(`CREATE TRIGGER w AFTER INSERT ON outbox_events FOR EACH STATEMENT
        WHEN (NOT (${skipTest})) EXECUTE FUNCTION notify_only()`)
    }
    if (variant === "before" || variant === "beforeEmpty") {
      await setTrigger(false)
      await sql.unsafe(`CREATE TRIGGER b BEFORE INSERT ON outbox_events FOR EACH STATEMENT
        EXECUTE FUNCTION ${variant === "before" ? "outbox_events_notify" : "empty_trigger"}()`)
    }
    if (variant in bodies) {
      await sql.unsafe(`CREATE OR REPLACE FUNCTION outbox_events_notify() RETURNS trigger LANGUAGE plpgsql
        SET search_path FROM CURRENT AS $$ BEGIN ${bodies[variant]} END $$`)
    }
    const tps = pgbenchTps(pg, "t", competitors.relay.pgbenchScript, writers, seconds).tps
    if (variant === "when") await sql.unsafe("DROP TRIGGER w ON outbox_events")
    if (variant === "before" || variant === "beforeEmpty") await sql.unsafe("DROP TRIGGER b ON outbox_events")
    if (variant in bodies) await sql.unsafe(installed)
    await setTrigger(true)
    await sql.unsafe("TRUNCATE outbox_events")
    return tps
  }
  const results = new Map()
  for (let round = 0; round < rounds; round++) {
    for (const writers of writerCounts) {
      const order = ["off", ...chosen.filter((v) => v !== "off")]
      const out = {}
      for (const variant of round % 2 ? order.reverse() : order) out[variant] = await measure(variant, writers)
      for (const [variant, tps] of Object.entries(out)) {
        const key = `${writers} writers, ${variant}`
        if (!results.has(key)) results.set(key, [])
        results.get(key).push({ tps, ratio: tps / out.off })
      }
      console.log(
        `round ${round + 1} writers ${writers}: ` +
          Object.entries(out).map(([v, tps]) => `${v} ${tps.toFixed(0)}`).join(", ")
      )
    }
  }
  console.log("\nper-round ratio to off, median:")
  for (const [key, rows] of results) {
    console.log(
      `  ${key}: ${rows.map((r) => r.ratio.toFixed(3)).join(", ")}; median ${
        median(rows.map((r) => r.ratio)).toFixed(3)
      }`
    )
  }
  await sql.end()
} finally {
  await admin.end()
  await pg.stop()
}
