/**
 * How the command line shows the operations surface's documents to a person: plain aligned text, one
 * function per document, each returning lines. `--json` prints the documents themselves instead
 * (CliActions.ts); nothing here talks to a server.
 */
import { deadLetterKey, streamOfDeadLetterKey } from "../shared/RedisKeys.js"
import type { CliStatus } from "./CliStatus.js"
import type {
  DeadLetterPage,
  DeadLetterSummary,
  DeadRowPage,
  DeadRowReplay,
  Entry,
  OutboxOverview,
  PurgeResult,
  ReplayResult,
  StreamDetails,
  StreamList
} from "./Model.js"

/** Columns left-aligned and separated by two spaces; no trailing blanks. */
export const table = (headers: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): Array<string> => {
  const all = [headers, ...rows]
  const widths = headers.map((_, column) => Math.max(...all.map((row) => (row[column] ?? "").length)))
  return all.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd())
}

/** An age or duration in seconds, to the unit a person reads at a glance: 0.4s, 12s, 3m 20s, 2h 05m, 3d 4h. */
export const age = (seconds: number): string => {
  if (seconds < 10) return `${(Math.round(seconds * 10) / 10).toFixed(1)}s`
  const s = Math.floor(seconds)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`
  return `${Math.floor(s / 86_400)}d ${Math.floor(s / 3600) % 24}h`
}

/** Cuts `text` to `width` characters, marking the cut with an ellipsis. */
export const truncate = (text: string, width: number): string =>
  text.length <= width ? text : `${text.slice(0, Math.max(0, width - 1))}…`

const orDash = (value: string | number | null | undefined) =>
  value === null || value === undefined || value === "" ? "-" : String(value)

const compactJson = (value: unknown) => typeof value === "string" ? value : JSON.stringify(value) ?? "null"

/** The time a stream entry was added, from its id. */
export const entryTime = (id: string): string => {
  const millis = Number(id.split("-")[0])
  return Number.isSafeInteger(millis) && millis < 8.64e15 ? new Date(millis).toISOString() : "-"
}

/**
 * One line per entry: id, time added, event type, aggregate, then the payload as compact JSON. The
 * payload is cut to fit `width` when it is known (a terminal), else to `payloadWidth` characters.
 */
export const entryLine = (entry: Entry, width: number | undefined, payloadWidth = 200): string => {
  const head = [entry.id, entryTime(entry.id), orDash(entry.eventType), orDash(entry.aggregateId)].join("  ")
  const reason = entry.metadata.reason === undefined ? "" : `  reason=${JSON.stringify(entry.metadata.reason)}`
  const payload = compactJson(entry.payload)
  if (width === undefined) return `${head}  ${truncate(payload, payloadWidth)}${reason}`
  return truncate(`${head}  ${payload}${reason}`, width)
}

// --- status -------------------------------------------------------------------------------------------

const component = (name: string, state: CliStatus["postgres"]) =>
  state.error === null ? `${name}  ok` : `${name}  FAILING: ${state.error}`

const outboxLines = (outbox: OutboxOverview): Array<string> => {
  const lines = table(["OUTBOX", ""], [
    ["backlog", String(outbox.backlog)],
    ["oldest pending", outbox.backlog === 0 ? "-" : age(outbox.oldestPendingSeconds)],
    ["max attempts (pending)", String(outbox.maxPendingAttempts)],
    ["dead rows", String(outbox.dead)],
    ["retained", String(outbox.retained)]
  ])
  lines.push("")
  if (outbox.relays.length === 0) lines.push("RELAYS  none connected")
  else {
    lines.push(...table(
      ["RELAY", "LANES", "AWAKE", "ASLEEP", "SLOTS", "HEARTBEAT"],
      outbox.relays.map((relay) => {
        const awake = relay.lanes.filter((lane) => lane.awake).length
        const heartbeat = relay.lanes.length === 0
          ? "-"
          : age(Math.max(...relay.lanes.map((lane) => lane.heartbeatAgeSeconds)))
        return [
          relay.id,
          String(relay.lanes.length),
          String(awake),
          String(relay.lanes.length - awake),
          String(relay.slots.length),
          heartbeat
        ]
      })
    ))
  }
  if (outbox.staleLanes.length > 0) lines.push(`(${outbox.staleLanes.length} registered lane(s) without a connection)`)
  return lines
}

/** A row per group of every stream (a stream without groups gets one row); dead-letter streams fold into theirs. */
const streamRows = (streams: ReadonlyArray<StreamDetails>): Array<Array<string>> => {
  const main = streams.filter((s) => !s.deadLetter)
  const mainKeys = new Set(main.map((s) => s.key))
  // A stream whose every event the relay dead-lettered has only its dead-letter stream.
  const orphans = streams.filter((s) => s.deadLetter && !mainKeys.has(streamOfDeadLetterKey(s.key)!))
  const rows: Array<Array<string>> = []
  for (const stream of main) {
    if (stream.groups.length === 0) {
      rows.push([stream.key, String(stream.length), "-", "-", "-", String(stream.deadLetters)])
    }
    for (const group of stream.groups) {
      rows.push([
        stream.key,
        String(stream.length),
        group.name,
        orDash(group.lag),
        String(group.pending),
        String(stream.deadLetters)
      ])
    }
  }
  for (const dlq of orphans) rows.push([streamOfDeadLetterKey(dlq.key)!, "-", "-", "-", "-", String(dlq.length)])
  return rows.sort((a, b) => a[0]!.localeCompare(b[0]!))
}

export const renderStatus = (status: CliStatus): Array<string> => {
  const lines = [component("postgres", status.postgres), component("redis   ", status.redis), ""]
  if (status.outbox) lines.push(...outboxLines(status.outbox), "")
  if (status.streams) {
    const rows = streamRows(status.streams.streams)
    if (rows.length === 0) lines.push(`STREAMS  none under the prefix ${JSON.stringify(status.streams.prefix)}`)
    else lines.push(...table(["STREAM", "LENGTH", "GROUP", "LAG", "PENDING", "DEAD LETTERS"], rows))
  }
  while (lines[lines.length - 1] === "") lines.pop()
  return lines
}

// --- streams ------------------------------------------------------------------------------------------

export const renderStreamList = (list: StreamList): Array<string> =>
  list.streams.length === 0
    ? [`No streams under the prefix ${JSON.stringify(list.prefix)}.`]
    : table(
      ["STREAM", "LENGTH", "GROUPS", "DEAD LETTERS", "OLDEST ENTRY", "LAST ID"],
      list.streams.map((s) => [
        s.key,
        String(s.length),
        String(s.groupCount),
        s.deadLetter ? "-" : String(s.deadLetters),
        s.firstEntryAgeSeconds === null ? "-" : age(s.firstEntryAgeSeconds),
        orDash(s.lastId)
      ])
    )

export const renderStreamDetails = (stream: StreamDetails): Array<string> => {
  const lines = table(["STREAM", stream.key], [
    ["length", String(stream.length)],
    ["first id", orDash(stream.firstId)],
    ["last id", orDash(stream.lastId)],
    ["oldest entry", stream.firstEntryAgeSeconds === null ? "-" : age(stream.firstEntryAgeSeconds)],
    ["memory", stream.memoryBytes === null ? "-" : `${stream.memoryBytes} bytes`],
    ...(stream.deadLetter ? [] : [["dead letters", String(stream.deadLetters)]])
  ])
  lines.push("")
  if (stream.groups.length === 0) return [...lines, "GROUPS  none"]
  lines.push(...table(
    ["GROUP", "LAG", "PENDING", "LAST DELIVERED", "CONSUMER", "CONSUMER PENDING", "IDLE"],
    stream.groups.flatMap((group) => {
      const head = [group.name, orDash(group.lag), String(group.pending), group.lastDeliveredId]
      return group.consumers.length === 0
        ? [[...head, "-", "-", "-"]]
        : group.consumers.map((c, i) => [
          ...(i === 0 ? head : ["", "", "", ""]),
          c.name,
          String(c.pending),
          age(c.idleMs / 1000)
        ])
    })
  ))
  return lines
}

// --- dead letters -------------------------------------------------------------------------------------

export const renderDeadLetters = (summary: DeadLetterSummary, page: DeadLetterPage): Array<string> => {
  const shown = summary.count > page.messages.length ? `, showing the oldest ${page.messages.length}` : ""
  const lines = [
    `${summary.deadLetterStream}: ${summary.count} dead letter(s) (${summary.bySource.consumer} from consumers, ` +
    `${summary.bySource.relay} from the relay)${shown}`
  ]
  for (const message of page.messages) {
    const f = message.metadata
    const by = message.source === "relay" ? `relay attempts=${f.attempts ?? "?"}` : `group ${f.group ?? "?"}` +
      ` deliveries=${f.delivery_count ?? "?"}`
    lines.push(
      `${message.id}  ${orDash(message.eventType)}  event_id=${orDash(message.eventId)} ` +
        `aggregate=${orDash(message.aggregateId)} by ${by} dead_at=${f.dead_at ?? "?"}`,
      `    reason: ${message.reason ?? "?"}`
    )
  }
  return lines
}

export const renderReplay = (stream: string, result: ReplayResult) => ({
  out: [
    ...result.replayed.map(({ id, newId }) => `replayed ${id} -> ${stream} ${newId}`),
    `${result.replayed.length} replayed, ${result.skipped.length} skipped`
  ],
  err: result.skipped.map(({ id, reason }) => `skipped ${id}: ${reason}`)
})

export const renderPurge = (stream: string, result: PurgeResult) => ({
  out: [`${result.purged} purged from ${deadLetterKey(stream)}`],
  err: result.notFound.map((id) => `not found: ${id}`)
})

// --- dead outbox rows ---------------------------------------------------------------------------------

export const renderDeadRows = (page: DeadRowPage, width: number | undefined): Array<string> =>
  page.rows.length === 0 ? ["No dead rows."] : page.rows.flatMap((row) => [
    `${row.eventId}  ${row.topic}  ${row.eventType}  aggregate=${orDash(row.aggregateId)} ` +
    `attempts=${row.attempts} dead_at=${row.deadAt}`,
    `    error: ${row.lastError ?? "-"}`,
    `    payload: ${truncate(compactJson(row.payload), width === undefined ? 200 : Math.max(20, width - 13))}`
  ])

export const renderDeadRowReplay = (result: DeadRowReplay) => ({
  out: [
    ...result.replayed.map((id) => `replayed ${id}`),
    `${result.replayed.length} moved back to pending`
  ],
  err: result.notFound.map((id) => `not found among dead rows: ${id}`)
})
