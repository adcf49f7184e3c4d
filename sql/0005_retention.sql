-- 0005_retention: optionally keep published rows for a while (RELAY_RETENTION).
--
-- Why: `event_id` is unique among the rows in outbox_events. With the default (delete on publish) a
-- producer that re-inserts an event_id after the relay published it gets a second entry. With
-- RELAY_RETENTION > 0 the relay marks rows published instead of deleting them and purges them once
-- they are older than the retention, so `ON CONFLICT (event_id) DO NOTHING` dedupes for that long
-- (and the rows are there to audit). It costs an UPDATE instead of a DELETE per event and a purge;
-- docs/benchmarks.md measures it.
--
-- The pending-rows index now also leaves published rows out, so the claim never walks over them.

ALTER TABLE outbox_events ADD COLUMN IF NOT EXISTS published_at timestamptz;

DROP INDEX IF EXISTS outbox_events_pending;
CREATE INDEX outbox_events_pending ON outbox_events (id) WHERE dead_at IS NULL AND published_at IS NULL;

CREATE INDEX IF NOT EXISTS outbox_events_published ON outbox_events (published_at) WHERE published_at IS NOT NULL;
