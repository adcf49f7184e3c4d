-- 0002_consumer_inbox: the consumers' inbox, for exactly-once effects.
--
-- Why: Redis Streams deliver at least once (a consumer that dies after its work but before XACK gets
-- the message again). A consumer run with the inbox option handles each event inside a Postgres
-- transaction that also inserts (consumer_group, event_id) here; an event already recorded is skipped
-- and acknowledged. The handler's writes and the record commit or roll back together, so every effect
-- of an event happens once per consumer group.
--
-- Applied with search_path set to RELAY_SCHEMA, like every migration. Idempotent.
-- Rows are never deleted by the relay; prune old ones (processed_at) once no redelivery can come.

CREATE TABLE IF NOT EXISTS outbox_inbox (
  consumer_group text        NOT NULL,
  event_id       uuid        NOT NULL,
  processed_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer_group, event_id)
);

CREATE INDEX IF NOT EXISTS outbox_inbox_processed_at ON outbox_inbox (processed_at);
