/**
 * Every SQL statement the relay runs, in one place, built once per schema.
 *
 * Locking, in short: a batch is claimed and deleted by one statement inside a transaction that stays
 * open while the rows are published. `FOR UPDATE SKIP LOCKED` lets other relays (or a later claim)
 * pass over rows in flight; a crash or a rollback puts the rows back untouched. Rows are never read
 * with an `id > last_seen` cursor, because ids are taken before commit and commit out of order.
 */

/** Quotes an identifier for Postgres. */
export const quoteIdent = (name: string): string => `"${name.replaceAll("\"", "\"\"")}"`

const returningColumns = `
  o.id::text AS id,
  o.event_id::text AS event_id,
  o.topic,
  o.event_type,
  o.aggregate_type,
  o.aggregate_id,
  o.tenant_id,
  o.payload::text AS payload,
  o.headers::text AS headers,
  o.schema_version,
  to_char(o.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS occurred_at,
  o.created_at::text AS created_at,
  o.attempts,
  o.slot::int AS slot`

/**
 * Advisory lock key of the wake-up hand-over ('outbox' in hex); the trigger in
 * sql/0003_relay_wake.sql takes it shared, a relay going to sleep try-locks it exclusively.
 */
export const wakeLockKey = "122519062982776"

/** Number of slots the aggregate keys hash into (sql/0004_slots.sql). */
export const slotCount = 64

/** Advisory lock class of the slot leases, per schema. */
export const slotLockClass = (schema: string) => `'outbox-relay:slot:' || ${quoteLiteral(schema)}`

/**
 * An array parameter as Postgres array text (`{1,2,3}`), bound as text and cast in the statement:
 * the clients skip fetching array types at connect, so they cannot serialise arrays themselves.
 */
export const arrayParam = (values: ReadonlyArray<string | number>): string => `{${values.join(",")}}`

/** Quotes a string literal for Postgres. */
export const quoteLiteral = (value: string): string => `'${value.replaceAll("'", "''")}'`

/**
 * The slots a claim may take, as one 64-bit mask (bit n = slot n), in the signed decimal form an
 * `int8` parameter takes. The claim tests a row's slot with one shift and one AND; the earlier
 * `slot = ANY($2::int2[])` compared each row against the whole slot list (docs/benchmarks.md, claim cost).
 */
export const slotMask = (slots: Iterable<number>): string => {
  let mask = 0n
  for (const slot of slots) mask |= 1n << BigInt(slot)
  return String(BigInt.asIntN(64, mask))
}

/**
 * Pending rows of the slots in mask $2, in id order, at most $1, locked (skipping rows other claims
 * hold). The claim addresses them by ctid (a TID scan, no join back through the primary key); the row
 * locks keep the ctids stable.
 *
 * Only on the session $3 (the backend pid holding this lane's slot leases): the claim takes nothing
 * anywhere else. postgres.js sends a pipeline's statements as the connection allows and, when a
 * connection drops, runs the statements it had not sent yet on a new one, so a claim could arrive on
 * a new session without the BEGIN that preceded it, and autocommit its DELETE with nothing published
 * (the chaos suite lost events that way once COMMITs were pipelined in front of claims).
 */
const pendingRows = (table: string) => `
        SELECT ctid FROM ${table}
        WHERE dead_at IS NULL AND published_at IS NULL AND ((1::int8 << slot) & $2::text::int8) <> 0
          AND pg_backend_pid() = $3::text::int
        ORDER BY id
        LIMIT $1
        FOR UPDATE SKIP LOCKED`

/**
 * Raises (division by zero) unless this is still the session with backend pid `pid`; the pid is
 * written in, so it can go in a multi-statement message.
 */
export const assertBackendPidSql = (pid: number): string =>
  `SELECT 1 / (pg_backend_pid() = ${Math.trunc(pid)})::int AS same_session`

/** The statements for one schema. */
export const statements = (schema: string) => {
  const table = `${quoteIdent(schema)}.outbox_events`
  return {
    table,
    /**
     * Claims up to $1 pending rows of the slots $2 (those this relay leases) in id order and deletes
     * them, returning them for publishing; only on the session whose backend pid is $3. Must run
     * inside a transaction that commits only after Redis acknowledged the XADDs.
     */
    claimBatch: `
      DELETE FROM ${table} AS o
      WHERE o.ctid = ANY(ARRAY(${pendingRows(table)}))
      RETURNING ${returningColumns}`,
    /** The same claim when published rows are retained (RELAY_RETENTION): marks instead of deleting. */
    claimBatchRetaining: `
      UPDATE ${table} AS o SET published_at = now()
      WHERE o.ctid = ANY(ARRAY(${pendingRows(table)}))
      RETURNING ${returningColumns}`,
    /** Marks a claimed row dead when rows are retained (it was marked published by the claim). */
    markDeadRetaining: `
      UPDATE ${table} SET published_at = NULL, dead_at = now(), last_error = $2::text, attempts = $3::text::int
      WHERE event_id = $1::text::uuid`,
    /** Deletes up to $2 rows published more than $1 ms ago; returns how many. */
    purgePublished: `
      WITH gone AS (
        DELETE FROM ${table} WHERE event_id IN (
          SELECT event_id FROM ${table}
          WHERE published_at < now() - $1::int * interval '1 millisecond'
          ORDER BY published_at
          LIMIT $2
        )
        RETURNING 1
      )
      SELECT count(*)::int AS purged FROM gone`,
    /**
     * Puts a claimed (deleted) row back, marked dead, in the same transaction: the dead-letter store of
     * record. Same id and event_id, so it stays where it was and is replayable. Every parameter is
     * sent as text (postgres.js would JSON-encode a string bound to a jsonb parameter).
     */
    insertDead: `
      INSERT INTO ${table} (id, event_id, topic, event_type, aggregate_type, aggregate_id, tenant_id,
                            payload, headers, schema_version, occurred_at, created_at,
                            attempts, last_error, dead_at)
      OVERRIDING SYSTEM VALUE
      VALUES ($1::text::bigint, $2::text::uuid, $3::text, $4::text, $5::text, $6::text, $7::text,
              $8::text::jsonb, $9::text::jsonb, $10::text::int, $11::text::timestamptz, $12::text::timestamptz,
              $13::text::int, $14::text, now())`,
    /**
     * Dead tuples in the outbox table (cumulative statistics, fresh within a second or so), and
     * whether this role may vacuum it (owner, database owner or superuser; otherwise VACUUM only warns).
     */
    deadTuples: `
      SELECT
        coalesce((SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = '${
      table.replaceAll("'", "''")
    }'::regclass), 0)::float8 AS dead,
        (SELECT pg_has_role(relowner, 'MEMBER') FROM pg_class WHERE oid = '${table.replaceAll("'", "''")}'::regclass)
          OR pg_has_role((SELECT datdba FROM pg_database WHERE datname = current_database()), 'MEMBER')
          OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS allowed`,
    /** Reclaims the rows the relay deleted (never waits for a lock: an autovacuum at work is enough). */
    vacuum: `VACUUM (SKIP_LOCKED) ${table}`,
    /**
     * Backlog, highest attempts among pending rows, age of the oldest pending row (seconds) and
     * dead-letter count, for metrics. Count and max in one pass over the pending rows.
     */
    stats: `
      SELECT p.pending, p.max_attempts,
        coalesce(extract(epoch FROM now() - (
          SELECT created_at FROM ${table} WHERE dead_at IS NULL AND published_at IS NULL ORDER BY id LIMIT 1)),
          0)::float8 AS oldest_pending_seconds,
        (SELECT count(*) FROM ${table} WHERE dead_at IS NOT NULL)::float8 AS dead
      FROM (
        SELECT count(*)::float8 AS pending, coalesce(max(attempts), 0)::float8 AS max_attempts
        FROM ${table} WHERE dead_at IS NULL AND published_at IS NULL
      ) AS p`,
    /** Dead rows, newest first. */
    listDead: `
      SELECT o.id::text AS id, o.event_id::text AS event_id, o.topic, o.event_type, o.aggregate_id,
             o.attempts, o.last_error, o.dead_at::text AS dead_at
      FROM ${table} AS o
      WHERE o.dead_at IS NOT NULL
      ORDER BY o.dead_at DESC, o.id DESC
      LIMIT $1`,
    /**
     * Replays dead rows: moves them back to pending with a fresh id (so they are claimed after what is
     * already waiting) and fires the wake-up trigger. $1: event ids, or NULL for all; $2: a topic, or
     * NULL for every topic.
     */
    replayDead: `
      WITH moved AS (
        DELETE FROM ${table}
        WHERE dead_at IS NOT NULL AND ($1::text IS NULL OR event_id = ANY($1::text::uuid[]))
          AND ($2::text IS NULL OR topic = $2::text)
        RETURNING *
      )
      INSERT INTO ${table} (event_id, topic, event_type, aggregate_type, aggregate_id, tenant_id,
                            payload, headers, schema_version, occurred_at, created_at, attempts, last_error)
      SELECT event_id, topic, event_type, aggregate_type, aggregate_id, tenant_id,
             payload, headers, schema_version, occurred_at, created_at, attempts, last_error
      FROM moved
      ORDER BY id
      RETURNING event_id::text AS event_id`,
    /**
     * This relay is draining: producers may skip NOTIFY until `awake_until` ($2 ms from now). Every
     * change to outbox_relay_wake goes through the functions of sql/0006_wake_summary.sql, which also
     * recompute the number the trigger reads (outbox_relay_awake_until).
     */
    markAwake: `SELECT ${
      quoteIdent(schema)
    }.outbox_relay_wake_set($1::text, clock_timestamp() + $2::int * interval '1 millisecond')`,
    /** This relay is about to sleep: producers must notify again (from the moment this returns). */
    markAsleep: `SELECT ${quoteIdent(schema)}.outbox_relay_wake_set($1::text, '-infinity')`,
    /**
     * True once no producer transaction holds the hand-over lock, i.e. every producer that may have
     * read this relay's flag as awake has finished. Never waits (a blocking exclusive request would
     * queue every new producer behind it).
     */
    tryHandover: `
      SELECT CASE WHEN pg_try_advisory_lock(${wakeLockKey}) THEN pg_advisory_unlock(${wakeLockKey}) ELSE false END
        AS free`,
    /**
     * Keeps this relay's row fresh (creating it, asleep, if it is missing) and forgets relays not seen
     * for a minute (they died).
     */
    heartbeat: `SELECT ${quoteIdent(schema)}.outbox_relay_wake_set($1::text, NULL)`,
    unregister: `SELECT ${quoteIdent(schema)}.outbox_relay_wake_forget($1::text)`,
    /** Relays (lanes) that sent a heartbeat lately, and this session's backend pid. */
    liveRelays: `
      SELECT greatest(count(*), 1)::int AS live, pg_backend_pid() AS pid FROM ${quoteIdent(schema)}.outbox_relay_wake
      WHERE seen_at > now() - $1::int * interval '1 millisecond'`,
    /** Tries to lease each slot of $1 (session advisory locks); returns those now held, comma-separated. */
    tryLeaseSlots: `
      SELECT coalesce(string_agg(s::text, ','), '') AS slots FROM unnest($1::text::int[]) AS s
      WHERE pg_try_advisory_lock(hashtext(${slotLockClass(schema)}), s)`,
    /**
     * Bumps the epochs (fencing tokens) of slots $1, just leased by this session; returns them as
     * `slot:epoch,...`. Run under the leases, so each new owner of a slot gets a higher epoch. At least
     * the clock in milliseconds: a database restored from a backup, or recreated, must not hand out
     * epochs below those Redis already saw (every batch would be fenced off until they caught up).
     */
    bumpEpochs: `
      WITH bumped AS (
        UPDATE ${quoteIdent(schema)}.outbox_slot_epochs
        SET epoch = greatest(epoch + 1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)
        WHERE slot = ANY($1::text::int[]) RETURNING slot, epoch
      )
      SELECT coalesce(string_agg(slot || ':' || epoch, ','), '') AS epochs FROM bumped`,
    /** Gives slots $1 back. */
    releaseSlots: `
      SELECT count(*) FILTER (WHERE pg_advisory_unlock(hashtext(${slotLockClass(schema)}), s))::int AS released
      FROM unnest($1::text::int[]) AS s`
  } as const
}

export type Statements = ReturnType<typeof statements>
