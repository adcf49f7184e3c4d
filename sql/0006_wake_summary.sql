-- 0006_wake_summary: the trigger's skip test without a query.
--
-- Why: with the relay awake, what producers still paid for the trigger of 0003 was mostly the query
-- it ran on every INSERT statement (SELECT bool_and(...) FROM outbox_relay_wake, a full executor run)
-- and the PERFORM around the hand-over lock. `node bench/trigger-parts.mjs` (no relay running, one
-- relay registered as awake, pgbench single-row INSERTs): the function below keeps more of the
-- trigger-off rate than the one of 0003 (numbers in the README, "NOTIFY without the commit
-- bottleneck").
--
-- How: the relays keep one number up to date, the time until which EVERY registered lane is awake
-- (microseconds since the epoch; 1 when any registered lane is asleep or none is registered), in the
-- sequence outbox_relay_awake_until. A sequence is not transactional: `setval` is visible to every
-- session at once, with no snapshot in between, so producers in any isolation level read the latest
-- value (0003 skipped only in READ COMMITTED). Every change to outbox_relay_wake goes through
-- outbox_relay_wake_set / outbox_relay_wake_forget, which recompute the number under an advisory lock
-- held until commit, so the last one to write it has seen every committed row and its own.
--
-- The hand-over of 0003 is unchanged: a producer holds the shared hand-over lock (xact) from before it
-- reads the number until it ends; a relay going to sleep lowers the number (setval, at once), then
-- waits until it can take the lock exclusively. A producer that cannot take the shared lock (a relay
-- holds it exclusively for an instant while testing) simply notifies.
--
-- Upgrading from a relay before 0006: until every relay runs this version the number can lag behind
-- an old relay's flag by up to the new relays' refresh (a few seconds; old relays do not write it):
-- an event may then wait that long. With only old relays running, producers always notify.

CREATE SEQUENCE IF NOT EXISTS outbox_relay_awake_until
  MINVALUE 1 MAXVALUE 9223372036854775807 START 1 NO CYCLE;
-- Producers read it in the trigger (any role that may insert into outbox_events); it only says until
-- when the relays are awake.
GRANT SELECT ON SEQUENCE outbox_relay_awake_until TO PUBLIC;

-- Recomputes the number from the table; call after any change to it, in the same transaction.
CREATE OR REPLACE FUNCTION outbox_relay_wake_publish() RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  until timestamptz;
BEGIN
  -- Serialises the recomputations; held until commit, so the next one sees this transaction's rows.
  PERFORM pg_advisory_xact_lock(122519062982777);
  SELECT CASE WHEN count(*) > 0 AND bool_and(awake_until > clock_timestamp()) THEN min(awake_until) END
    INTO until FROM outbox_relay_wake;
  PERFORM setval('outbox_relay_awake_until',
                 CASE WHEN until IS NULL THEN 1
                      WHEN until = 'infinity' THEN 9223372036854775807
                      ELSE (extract(epoch FROM until) * 1000000)::bigint END);
END
$$;

-- Sets one lane's row (creating it) and recomputes the number. awake_until '-infinity' = asleep; NULL
-- keeps the current flag and only refreshes seen_at: the heartbeat, which also forgets lanes not seen
-- for a minute (they died). Marking awake or asleep prunes nothing: it is on the relay's hand-over path.
CREATE OR REPLACE FUNCTION outbox_relay_wake_set(p_relay_id text, p_awake_until timestamptz) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
  INSERT INTO outbox_relay_wake (relay_id, awake_until, seen_at)
  VALUES (p_relay_id, coalesce(p_awake_until, '-infinity'), now())
  ON CONFLICT (relay_id) DO UPDATE
    SET awake_until = coalesce(p_awake_until, outbox_relay_wake.awake_until), seen_at = now();
  IF p_awake_until IS NULL THEN
    DELETE FROM outbox_relay_wake WHERE seen_at < now() - interval '1 minute' AND relay_id <> p_relay_id;
  END IF;
  PERFORM outbox_relay_wake_publish();
END
$$;

-- Deletes one lane's row, then recomputes.
CREATE OR REPLACE FUNCTION outbox_relay_wake_forget(p_relay_id text) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
  DELETE FROM outbox_relay_wake WHERE relay_id = p_relay_id;
  PERFORM outbox_relay_wake_publish();
END
$$;

SELECT outbox_relay_wake_publish();

-- The trigger function names the sequence in full instead of `SET search_path FROM CURRENT` (a
-- function-level setting costs every call a save and restore of the setting: measured with
-- bench/trigger-parts.mjs), so it is created with the schema this migration runs in.
DO $do$
BEGIN
  EXECUTE format($fn$
CREATE OR REPLACE FUNCTION %1$I.outbox_events_notify() RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
  -- Simple expressions only (no query): plpgsql evaluates them without starting the executor.
  -- Key 0x6f7574626f78 ('outbox'): the hand-over lock of 0003 (src/Statements.ts, wakeLockKey).
  IF pg_try_advisory_xact_lock_shared(122519062982776) THEN
    IF pg_sequence_last_value(%2$L::regclass)
         > (extract(epoch FROM clock_timestamp()) * 1000000)::bigint THEN
      RETURN NULL;
    END IF;
  END IF;
  -- Wake-up only: the payload is constant so one transaction sends at most one notification.
  PERFORM pg_notify('outbox_events', '');
  RETURN NULL;
END
$body$
$fn$, current_schema(), format('%I.%I', current_schema(), 'outbox_relay_awake_until'));
END
$do$;
