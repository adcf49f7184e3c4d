#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): does the trigger's skip path get cheaper as a WHEN condition
 * (no PL/pgSQL call when the relay is awake)? No relay running, one relay registered as awake; pgbench
 * single-row INSERTs (W writers, 8 by default), 4 s per mode, 7 rounds, modes alternating: trigger off,
 * the function of sql/0006, and a statement trigger whose WHEN holds the same test (hand-over lock, then
 * the sequence) in front of a function that only notifies. Prints commits/s and per-round ratios to off.
 *
 *   npm run build && W=8 node bench/diagnostics/trigger-when.mjs
 */
import postgres from "postgres"
import { competitors } from "../lib/competitors.mjs"
import { pgbenchTps, startPostgres } from "../lib/servers.mjs"
const pg = await startPostgres()
const admin = postgres(pg.url, { max: 1, onnotice: () => {} })
const W = Number(process.env.W ?? 8)
try {
  await admin.unsafe("CREATE DATABASE t")
  await competitors.relay.setup(pg.urlFor("t"), "redis://127.0.0.1:1")
  const sql = postgres(pg.urlFor("t"), { max: 1, onnotice: () => {} })
  await sql.unsafe("SELECT outbox_relay_wake_set('fake', 'infinity')")
  await sql.unsafe(
    `CREATE FUNCTION notify_only() RETURNS trigger LANGUAGE plpgsql
     AS $$ BEGIN PERFORM pg_notify('outbox_events', ''); RETURN NULL; END $$`
  )
  const run = (c) => pgbenchTps(pg, "t", competitors.relay.pgbenchScript, c, 4).tps
  const seq = "'public.outbox_relay_awake_until'::regclass"
  const whens = {
    when: `NOT (pg_try_advisory_xact_lock_shared(122519062982776)
            AND pg_sequence_last_value(${seq}) > (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)`
  }
  const res = {}
  const add = (k, v) => {
    ;(res[k] ??= []).push(v)
  }
  for (let rep = 0; rep < 7; rep++) {
    const order = ["off", "fn", ...Object.keys(whens)]
    if (rep % 2) order.reverse()
    for (const m of order) {
      if (m === "off") {
        await sql.unsafe("ALTER TABLE outbox_events DISABLE TRIGGER outbox_events_notify")
        add(m, run(W))
        await sql.unsafe("ALTER TABLE outbox_events ENABLE TRIGGER outbox_events_notify")
      } else if (m === "fn") add(m, run(W))
      else {
        await sql.unsafe("ALTER TABLE outbox_events DISABLE TRIGGER outbox_events_notify")
        await sql.unsafe(
          `CREATE TRIGGER w AFTER INSERT ON outbox_events FOR EACH STATEMENT WHEN (${
            whens[m]
          }) EXECUTE FUNCTION notify_only()`
        )
        add(m, run(W))
        await sql.unsafe("DROP TRIGGER w ON outbox_events")
        await sql.unsafe("ALTER TABLE outbox_events ENABLE TRIGGER outbox_events_notify")
      }
      await sql.unsafe("TRUNCATE outbox_events")
    }
  }
  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  for (const [k, v] of Object.entries(res)) {
    console.log(
      W,
      k,
      med(v).toFixed(0),
      "ratio per round",
      v.map((x, i) => (x / res.off[i]).toFixed(3)).join(" "),
      "median",
      med(v.map((x, i) => x / res.off[i])).toFixed(3)
    )
  }
  await sql.end()
} finally {
  await admin.end()
  await pg.stop()
}
