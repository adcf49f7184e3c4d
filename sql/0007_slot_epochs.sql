-- 0007_slot_epochs: a fencing token per slot.
--
-- Why: a slot lease is a session advisory lock. A relay frozen mid-batch (SIGSTOP, a long GC pause)
-- whose session Postgres ended has lost its leases, but still holds the claimed rows in memory and
-- may XADD them when it resumes, after another relay took the slot over and published newer events.
-- Postgres cannot stop a write to Redis; a number Redis can compare can.
--
-- How: each time a relay leases a slot it bumps the slot's epoch here (UPDATE ... RETURNING, under
-- the lock it just took, so epochs of successive owners only grow). The publish script
-- (lua/publish.lua) keeps the highest epoch it has seen per slot next to each stream,
-- `{<stream>}:fence`, and refuses, atomically with the XADDs, a call carrying an older one.

CREATE TABLE IF NOT EXISTS outbox_slot_epochs (
  slot smallint PRIMARY KEY CHECK (slot BETWEEN 0 AND 63),
  epoch bigint NOT NULL DEFAULT 0
);

INSERT INTO outbox_slot_epochs (slot) SELECT generate_series(0, 63) ON CONFLICT (slot) DO NOTHING;
