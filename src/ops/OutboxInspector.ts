/**
 * The Postgres side of the operations surface: the backlog, dead rows, retained rows and the live
 * relays (their lanes from `outbox_relay_wake`, their slots from the advisory locks their claim
 * connections hold), and moving dead rows back to pending.
 *
 * Relays are told apart by their connections' `application_name`: `outbox-relay-claim/<pid>` and
 * `outbox-relay-wake/<lane id>` (the lane id starts with the pid), seen from the same client address.
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { Client } from "../relay/Database.js"
import { runQuery } from "../relay/Database.js"
import { arrayParam, quoteIdent, slotLockClass, statements } from "../relay/Statements.js"
import { Unavailable } from "./Errors.js"
import type { DeadRow, DeadRowPage, DeadRowReplay, DeadRowSelection, OutboxOverview, RelayInstance } from "./Model.js"

const queries = (schema: string) => {
  const table = `${quoteIdent(schema)}.outbox_events`
  return {
    retained: `SELECT count(*)::float8 AS retained FROM ${table} WHERE published_at IS NOT NULL`,
    deadByTopic: `
      SELECT topic, coalesce(last_error, '') AS reason, count(*)::float8 AS count
      FROM ${table} WHERE dead_at IS NOT NULL
      GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT 200`,
    lanes: `
      SELECT w.relay_id, w.awake_until > now() AS awake,
             to_char(w.seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS seen_at,
             extract(epoch FROM now() - w.seen_at)::float8 AS heartbeat_age,
             CASE WHEN a.pid IS NULL THEN NULL ELSE coalesce(host(a.client_addr), 'local') END AS host
      FROM ${quoteIdent(schema)}.outbox_relay_wake AS w
      LEFT JOIN pg_stat_activity AS a
        ON a.datname = current_database() AND a.application_name = 'outbox-relay-wake/' || w.relay_id
      ORDER BY w.relay_id`,
    slots: `
      SELECT coalesce(host(a.client_addr), 'local') AS host, split_part(a.application_name, '/', 2) AS pid,
             coalesce(array_agg(l.objid::int ORDER BY l.objid) FILTER (WHERE l.objid IS NOT NULL), '{}')::text AS slots
      FROM pg_stat_activity AS a
      LEFT JOIN pg_locks AS l
        ON l.pid = a.pid AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
       AND l.classid = hashtext(${slotLockClass(schema)})::oid
      WHERE a.datname = current_database() AND a.application_name LIKE 'outbox-relay-claim/%'
      GROUP BY 1, 2`,
    listDead: `
      SELECT id::text AS id, event_id::text AS event_id, topic, event_type, aggregate_id, attempts, last_error,
             to_char(dead_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS dead_at,
             payload::text AS payload, headers::text AS headers
      FROM ${table}
      WHERE dead_at IS NOT NULL AND ($1::text IS NULL OR topic = $1::text)
      ORDER BY dead_at DESC, id DESC
      LIMIT $2`
  }
}

const unavailable = (error: { readonly message: string }) => new Unavailable({ error: error.message })

const parseSlots = (text: string): Array<number> => text === "{}" ? [] : text.slice(1, -1).split(",").map(Number)

const json = (text: string) => {
  try {
    return JSON.parse(text) as unknown
  } catch {
    return text
  }
}

/** The statements over `client`, for one schema. */
export const makeOutboxInspector = (client: Client, schema: string, timeout: Duration.Duration) => {
  const sql = queries(schema)
  // The backlog gauges' statement: the overview and /metrics count the same way.
  const { replayDead: replaySql, stats: statsSql } = statements(schema)
  const query = <A>(operation: string, text: string, params: ReadonlyArray<unknown> = []) =>
    runQuery(operation, timeout, () => client.unsafe<Array<A>>(text, params as never)).pipe(
      Effect.mapError(unavailable)
    )

  const overview = Effect.gen(function*() {
    // One snapshot for all five: the counts and the dead rows by topic agree.
    const [[counts], [retained], deadByTopic, lanes, slotRows] = yield* runQuery(
      "overview",
      timeout,
      () =>
        client.begin("ISOLATION LEVEL REPEATABLE READ READ ONLY", (tx) =>
          Promise.all(
            [
              tx.unsafe<Array<Record<string, number>>>(statsSql),
              tx.unsafe<Array<{ retained: number }>>(sql.retained),
              tx.unsafe<Array<{ topic: string; reason: string; count: number }>>(sql.deadByTopic),
              tx.unsafe<
                Array<{ relay_id: string; awake: boolean; seen_at: string; heartbeat_age: number; host: string | null }>
              >(sql.lanes),
              tx.unsafe<Array<{ host: string; pid: string; slots: string }>>(sql.slots)
            ] as const
          ))
    ).pipe(Effect.mapError(unavailable))
    const relays = new Map<string, RelayInstance & { lanes: Array<RelayInstance["lanes"][number]> }>()
    const relayOf = (host: string, pid: string) => {
      const id = `${host}/${pid}`
      let relay = relays.get(id)
      if (!relay) relays.set(id, relay = { id, host, pid: Number(pid), lanes: [], slots: [] })
      return relay
    }
    for (const row of slotRows) {
      const relay = relayOf(row.host, row.pid)
      relays.set(relay.id, { ...relay, slots: [...relay.slots, ...parseSlots(row.slots)].sort((a, b) => a - b) })
    }
    const staleLanes: Array<RelayInstance["lanes"][number]> = []
    for (const row of lanes) {
      const lane = {
        laneId: row.relay_id,
        awake: row.awake,
        lastHeartbeat: row.seen_at,
        heartbeatAgeSeconds: row.heartbeat_age,
        connected: row.host !== null
      }
      // A lane's row stays until another relay prunes it; without a connection it is only history.
      if (row.host === null) staleLanes.push(lane)
      else relayOf(row.host, row.relay_id.split("-")[0]!).lanes.push(lane)
    }
    return {
      backlog: counts!.pending!,
      oldestPendingSeconds: counts!.oldest_pending_seconds!,
      maxPendingAttempts: counts!.max_attempts!,
      dead: counts!.dead!,
      deadByTopic: deadByTopic.map((r) => ({ topic: r.topic, reason: r.reason, count: r.count })),
      retained: retained!.retained,
      relays: [...relays.values()].sort((a, b) => a.id.localeCompare(b.id)),
      staleLanes
    } satisfies OutboxOverview
  })

  const listDead = (options: { readonly topic?: string | undefined; readonly count: number }) =>
    query<Record<string, string | number | null>>("listDead", sql.listDead, [options.topic ?? null, options.count])
      .pipe(Effect.map((rows) => ({
        rows: rows.map((r): DeadRow => ({
          id: String(r.id),
          eventId: String(r.event_id),
          topic: String(r.topic),
          eventType: String(r.event_type),
          aggregateId: String(r.aggregate_id),
          attempts: Number(r.attempts),
          lastError: r.last_error === null ? null : String(r.last_error),
          deadAt: String(r.dead_at),
          payload: json(String(r.payload)),
          headers: json(String(r.headers))
        }))
      } satisfies DeadRowPage)))

  const replayDead = (selection: DeadRowSelection) =>
    Effect.gen(function*() {
      const ids = "ids" in selection ? selection.ids.map((id) => id.toLowerCase()) : null
      const rows = yield* query<{ event_id: string }>("replayDead", replaySql, [
        ids === null ? null : arrayParam(ids),
        "topic" in selection && selection.topic !== undefined ? selection.topic : null
      ])
      const replayed = rows.map((r) => r.event_id)
      return {
        replayed,
        notFound: ids === null ? [] : ids.filter((id) => !replayed.includes(id))
      } satisfies DeadRowReplay
    })

  return { overview, listDead, replayDead }
}

export type OutboxInspector = ReturnType<typeof makeOutboxInspector>
