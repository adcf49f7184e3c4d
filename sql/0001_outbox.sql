-- 0001_outbox: the outbox table, its wake-up trigger and the enqueue function.
--
-- Why it looks like this:
-- * A producer needs only (topic, event_type, aggregate_id, payload); everything else has a default, so
--   the insert fits inside any existing transaction in any language.
-- * `event_id` is the idempotency key and the primary key: a producer may set it and use
--   ON CONFLICT (event_id) DO NOTHING; consumers dedupe by it.
-- * `id` gives the publish order. It is taken before commit, so the relay never reads with an
--   `id > last_seen` cursor: it claims with FOR UPDATE SKIP LOCKED over the pending-rows index.
-- * Published rows are deleted (the hot table stays small); a poison row stays, marked dead
--   (`dead_at`, `last_error`, `attempts`), out of the pending index, replayable.
-- * The trigger is per statement with a constant payload: Postgres folds identical notifications of
--   one transaction into one, and the notification carries no data (the relay reads the table).
--
-- The migrator runs this file with search_path set to RELAY_SCHEMA (default public), inside a
-- transaction, under an advisory lock, once.

CREATE TABLE IF NOT EXISTS outbox_events (
  id              bigint      GENERATED ALWAYS AS IDENTITY,
  event_id        uuid        NOT NULL DEFAULT gen_random_uuid(),
  topic           text        NOT NULL,
  event_type      text        NOT NULL,
  aggregate_type  text        NOT NULL DEFAULT '',
  aggregate_id    text        NOT NULL DEFAULT '',
  tenant_id       text        NOT NULL DEFAULT '',
  payload         jsonb       NOT NULL DEFAULT '{}'::jsonb,
  headers         jsonb       NOT NULL DEFAULT '{}'::jsonb,
  schema_version  integer     NOT NULL DEFAULT 1,
  occurred_at     timestamptz NOT NULL DEFAULT now(),
  created_at      timestamptz NOT NULL DEFAULT now(),
  attempts        integer     NOT NULL DEFAULT 0,
  last_error      text,
  dead_at         timestamptz,
  CONSTRAINT outbox_events_pkey PRIMARY KEY (event_id),
  -- Topics become Redis key names: no spaces, braces (hash tags), '*', ':' or control characters.
  CONSTRAINT outbox_events_topic_format
    CHECK (topic ~ '^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$'),
  CONSTRAINT outbox_events_event_type_format
    CHECK (length(event_type) BETWEEN 1 AND 200 AND event_type !~ '[[:cntrl:]]'),
  CONSTRAINT outbox_events_aggregate_id_length CHECK (length(aggregate_id) <= 500),
  CONSTRAINT outbox_events_aggregate_type_length CHECK (length(aggregate_type) <= 200),
  CONSTRAINT outbox_events_tenant_id_length CHECK (length(tenant_id) <= 200),
  CONSTRAINT outbox_events_payload_object CHECK (jsonb_typeof(payload) = 'object'),
  CONSTRAINT outbox_events_headers_object CHECK (jsonb_typeof(headers) = 'object'),
  CONSTRAINT outbox_events_schema_version_positive CHECK (schema_version >= 1)
);

-- The claim reads pending rows in id order; dead rows drop out of this index.
CREATE INDEX IF NOT EXISTS outbox_events_pending ON outbox_events (id) WHERE dead_at IS NULL;

-- Dead rows listed newest first for operators.
CREATE INDEX IF NOT EXISTS outbox_events_dead ON outbox_events (dead_at) WHERE dead_at IS NOT NULL;

CREATE OR REPLACE FUNCTION outbox_events_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- Wake-up only: the payload is constant so one transaction sends at most one notification.
  PERFORM pg_notify('outbox_events', '');
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS outbox_events_notify ON outbox_events;
CREATE TRIGGER outbox_events_notify
  AFTER INSERT ON outbox_events
  FOR EACH STATEMENT EXECUTE FUNCTION outbox_events_notify();

-- outbox_enqueue: the same insert with validation and clear messages, for producers in any language.
-- Returns the event_id. Re-sending the same event_id with the same content is a no-op; with different
-- content it is refused (an idempotency key must not change meaning).
CREATE OR REPLACE FUNCTION outbox_enqueue(
  p_topic          text,
  p_event_type     text,
  p_aggregate_id   text,
  p_payload        jsonb,
  p_headers        jsonb       DEFAULT '{}'::jsonb,
  p_event_id       uuid        DEFAULT NULL,
  p_aggregate_type text        DEFAULT '',
  p_tenant_id      text        DEFAULT '',
  p_schema_version integer     DEFAULT 1,
  p_occurred_at    timestamptz DEFAULT now()
) RETURNS uuid
LANGUAGE plpgsql
-- Resolve outbox_events in the schema this migration ran in, whatever the caller's search_path.
SET search_path FROM CURRENT
AS $$
DECLARE
  v_event_id uuid := coalesce(p_event_id, gen_random_uuid());
  v_existing jsonb;
BEGIN
  IF p_topic IS NULL OR p_topic !~ '^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$' THEN
    RAISE EXCEPTION 'outbox_enqueue: invalid topic %: expected 1-200 characters of letters, digits, ".", "_", "/" or "-", starting with a letter or digit', quote_nullable(left(p_topic, 80))
      USING ERRCODE = 'check_violation';
  END IF;
  IF p_event_type IS NULL OR length(p_event_type) NOT BETWEEN 1 AND 200 OR p_event_type ~ '[[:cntrl:]]' THEN
    RAISE EXCEPTION 'outbox_enqueue: invalid event_type %: expected 1-200 printable characters', quote_nullable(left(p_event_type, 80))
      USING ERRCODE = 'check_violation';
  END IF;
  IF p_payload IS NULL OR jsonb_typeof(p_payload) <> 'object' THEN
    RAISE EXCEPTION 'outbox_enqueue: payload must be a JSON object, got %', coalesce(jsonb_typeof(p_payload), 'NULL')
      USING ERRCODE = 'check_violation';
  END IF;
  IF p_headers IS NULL OR jsonb_typeof(p_headers) <> 'object' THEN
    RAISE EXCEPTION 'outbox_enqueue: headers must be a JSON object, got %', coalesce(jsonb_typeof(p_headers), 'NULL')
      USING ERRCODE = 'check_violation';
  END IF;

  INSERT INTO outbox_events (event_id, topic, event_type, aggregate_id, aggregate_type, tenant_id,
                             payload, headers, schema_version, occurred_at)
  VALUES (v_event_id, p_topic, p_event_type, coalesce(p_aggregate_id, ''), coalesce(p_aggregate_type, ''),
          coalesce(p_tenant_id, ''), p_payload, p_headers, coalesce(p_schema_version, 1),
          coalesce(p_occurred_at, now()))
  ON CONFLICT (event_id) DO NOTHING;

  IF NOT FOUND THEN
    SELECT payload INTO v_existing FROM outbox_events WHERE event_id = v_event_id;
    IF v_existing IS DISTINCT FROM p_payload THEN
      RAISE EXCEPTION 'outbox_enqueue: event_id % was already enqueued with a different payload', v_event_id
        USING ERRCODE = 'unique_violation';
    END IF;
  END IF;
  RETURN v_event_id;
END
$$;
