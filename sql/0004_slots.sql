-- 0004_slots: split the outbox into 64 slots so several relays can share the work without breaking
-- the order of any aggregate.
--
-- Why: order is only promised per aggregate, so the aggregate key decides who publishes an event.
-- `slot` is a stable hash of aggregate_id (of event_id when there is no aggregate, so such events
-- spread out) into 0..63. Each relay owns a set of slots, leased with session advisory locks held by
-- the very connection that runs its claim transactions: if that session dies, its open claim dies
-- with it, so no other relay can overtake a batch still in flight. The lease logic is in
-- src/Database.ts (`rebalance`); the relay registry is outbox_relay_wake (0003).
--
-- Generated and stored: producers need not know about it, and it costs one hash per insert.

ALTER TABLE outbox_events
  ADD COLUMN IF NOT EXISTS slot smallint NOT NULL
  GENERATED ALWAYS AS (
    (CASE WHEN aggregate_id = '' THEN hashtext(event_id::text) ELSE hashtext(aggregate_id) END) & 63
  ) STORED;
