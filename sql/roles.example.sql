-- roles.example.sql: the relay's least-privileged Postgres role. Not a migration: run it once, as the
-- owner of the outbox tables, after `outbox-relay migrate` (migrations stay with the owner), in the
-- relay's schema (here `public`; change the schema name and the password). The relay then runs with
-- RELAY_MIGRATE=false. docs/production.md#least-privilege explains each grant; test/tls.test.ts runs
-- a relay under exactly this role.

CREATE ROLE outbox_relay LOGIN PASSWORD 'change-me' NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;

GRANT USAGE ON SCHEMA public TO outbox_relay;

-- Claim (SELECT ... FOR UPDATE SKIP LOCKED, then DELETE, or UPDATE with RELAY_RETENTION), dead-lettering
-- (UPDATE), purge of published rows (DELETE), the admin API's reads and dead-row replay (UPDATE).
GRANT SELECT, UPDATE, DELETE ON public.outbox_events TO outbox_relay;

-- The lanes' wake registry and the number producers read to skip their NOTIFY (the functions below
-- run as the caller and set it with setval, which needs UPDATE).
GRANT SELECT, INSERT, UPDATE, DELETE ON public.outbox_relay_wake TO outbox_relay;
GRANT SELECT, UPDATE ON SEQUENCE public.outbox_relay_awake_until TO outbox_relay;
GRANT EXECUTE ON FUNCTION
  public.outbox_relay_wake_set(text, timestamptz),
  public.outbox_relay_wake_forget(text),
  public.outbox_relay_wake_publish()
  TO outbox_relay;

-- Slot lease epochs (fencing tokens): each lease bumps its slot's epoch (sql/0007_slot_epochs.sql).
GRANT SELECT, UPDATE ON public.outbox_slot_epochs TO outbox_relay;

-- Nothing else: advisory locks (slot leases), LISTEN/NOTIFY and pg_stat_activity rows of its own
-- sessions are open to every role. Without ownership the relay cannot VACUUM outbox_events: it logs
-- that once and leaves it to autovacuum.
