/**
 * What the operations surface answers, as Schemas: the HTTP API encodes and documents them (OpenAPI),
 * the command line prints them with `--json`, and the dashboard reads them.
 */
import * as Schema from "effect/Schema"

const Count = Schema.Number.annotate({ description: "A count" })
const Seconds = Schema.Number.annotate({ description: "Seconds" })

/** `<ms>-<seq>`, or `<ms>` for the first entry of that millisecond. */
export const streamIdPattern = /^\d{1,20}(-\d{1,20})?$/

/** An event id. */
export const uuidPattern = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/

/** A stream entry id. */
export const StreamId = Schema.String.check(Schema.isPattern(streamIdPattern, {
  message: "a stream entry id, like 1700000000000-0"
})).annotate({ description: "A stream entry id, like 1700000000000-0" })

/** A range bound of XRANGE: `-`, `+`, an id, or an id prefixed by `(` (exclusive). */
export const RangeBound = Schema.String.check(Schema.isPattern(/^(-|\+|\(?\d{1,20}(-\d{1,20})?)$/, {
  message: "-, +, a stream entry id, or ( followed by an id (exclusive)"
}))

export const StreamSummary = Schema.Struct({
  key: Schema.String,
  topic: Schema.String,
  deadLetter: Schema.Boolean.annotate({ description: "A dead-letter stream (`{<stream>}:dlq`)" }),
  length: Count,
  firstId: Schema.NullOr(Schema.String),
  lastId: Schema.NullOr(Schema.String),
  firstEntryAgeSeconds: Schema.NullOr(Seconds),
  memoryBytes: Schema.NullOr(Schema.Number),
  groupCount: Count,
  deadLetters: Count.annotate({ description: "Entries in the stream's dead-letter stream" })
})
export type StreamSummary = typeof StreamSummary.Type

export const StreamList = Schema.Struct({
  prefix: Schema.String,
  streams: Schema.Array(StreamSummary)
})
export type StreamList = typeof StreamList.Type

export const GroupConsumer = Schema.Struct({
  name: Schema.String,
  pending: Count,
  idleMs: Schema.Number,
  inactiveMs: Schema.NullOr(Schema.Number)
})

export const Group = Schema.Struct({
  name: Schema.String,
  pending: Count,
  lag: Schema.NullOr(Count).annotate({ description: "Entries not yet delivered to the group (null: unknown)" }),
  lastDeliveredId: Schema.String,
  entriesRead: Schema.NullOr(Count),
  consumers: Schema.Array(GroupConsumer)
})
export type Group = typeof Group.Type

export const StreamDetails = Schema.Struct({
  ...StreamSummary.fields,
  groups: Schema.Array(Group)
})
export type StreamDetails = typeof StreamDetails.Type

/** An entry read back: the envelope decoded (payload and headers as JSON), other fields kept as text. */
export const Entry = Schema.Struct({
  id: Schema.String,
  eventId: Schema.NullOr(Schema.String),
  eventType: Schema.NullOr(Schema.String),
  topic: Schema.NullOr(Schema.String),
  aggregateType: Schema.NullOr(Schema.String),
  aggregateId: Schema.NullOr(Schema.String),
  tenantId: Schema.NullOr(Schema.String),
  schemaVersion: Schema.NullOr(Schema.Number),
  occurredAt: Schema.NullOr(Schema.String),
  payload: Schema.Unknown,
  headers: Schema.Unknown,
  metadata: Schema.Record(Schema.String, Schema.String).annotate({
    description: "Fields beyond the envelope (a dead letter's reason, delivery count, ...)"
  }),
  decodeError: Schema.NullOr(Schema.String).annotate({ description: "Why payload or headers are not JSON" })
})
export type Entry = typeof Entry.Type

export const EntryPage = Schema.Struct({
  stream: Schema.String,
  entries: Schema.Array(Entry),
  next: Schema.NullOr(Schema.String).annotate({ description: "Pass as `start` (or `end` when reversed) for more" })
})
export type EntryPage = typeof EntryPage.Type

export const PendingEntry = Schema.Struct({
  id: Schema.String,
  consumer: Schema.String,
  idleMs: Schema.Number,
  deliveries: Count
})

export const PendingPage = Schema.Struct({
  stream: Schema.String,
  group: Schema.String,
  entries: Schema.Array(PendingEntry)
})
export type PendingPage = typeof PendingPage.Type

const DeadLetterEdge = Schema.Struct({
  id: Schema.String,
  ageSeconds: Schema.Number
})

export const DeadLetterSummary = Schema.Struct({
  stream: Schema.String,
  deadLetterStream: Schema.String,
  count: Count,
  byReason: Schema.Record(Schema.String, Count),
  bySource: Schema.Struct({ consumer: Count, relay: Count }),
  oldest: Schema.NullOr(DeadLetterEdge),
  newest: Schema.NullOr(DeadLetterEdge),
  complete: Schema.Boolean.annotate({
    description: "false when the stream held more dead letters than were read for the counts by reason"
  })
})
export type DeadLetterSummary = typeof DeadLetterSummary.Type

export const DeadLetterMessage = Schema.Struct({
  ...Entry.fields,
  source: Schema.Literals(["consumer", "relay"]).annotate({
    description: "consumer: replayable here; relay: replay from Postgres (POST /api/outbox/dead/replay)"
  }),
  reason: Schema.NullOr(Schema.String)
})
export type DeadLetterMessage = typeof DeadLetterMessage.Type

export const DeadLetterPage = Schema.Struct({
  stream: Schema.String,
  messages: Schema.Array(DeadLetterMessage),
  next: Schema.NullOr(Schema.String)
})
export type DeadLetterPage = typeof DeadLetterPage.Type

/** Which entries a mutation acts on: the given ids, or every one. */
export const Selection = Schema.Union([
  Schema.Struct({ ids: Schema.Array(StreamId).check(Schema.isMinLength(1), Schema.isMaxLength(10_000)) }),
  Schema.Struct({ all: Schema.Literal(true) })
]).annotate({ description: "{\"ids\": [...]} or {\"all\": true}" })
export type Selection = typeof Selection.Type

export const ReplayResult = Schema.Struct({
  replayed: Schema.Array(Schema.Struct({ id: Schema.String, newId: Schema.String })),
  skipped: Schema.Array(Schema.Struct({ id: Schema.String, reason: Schema.String }))
})
export type ReplayResult = typeof ReplayResult.Type

export const PurgeResult = Schema.Struct({
  purged: Count,
  notFound: Schema.Array(Schema.String)
})
export type PurgeResult = typeof PurgeResult.Type

export const Lane = Schema.Struct({
  laneId: Schema.String,
  awake: Schema.Boolean.annotate({ description: "Draining: producers skip their NOTIFY" }),
  lastHeartbeat: Schema.String,
  heartbeatAgeSeconds: Seconds,
  connected: Schema.Boolean.annotate({ description: "Its connection is open (false: a lane that vanished)" })
})

export const RelayInstance = Schema.Struct({
  id: Schema.String.annotate({ description: "<client address>/<process id>" }),
  host: Schema.String,
  pid: Schema.Number,
  lanes: Schema.Array(Lane),
  slots: Schema.Array(Schema.Number).annotate({ description: "Slots (of 64) this relay leases" })
})
export type RelayInstance = typeof RelayInstance.Type

export const OutboxOverview = Schema.Struct({
  backlog: Count.annotate({ description: "Pending rows" }),
  oldestPendingSeconds: Seconds,
  maxPendingAttempts: Count,
  dead: Count,
  deadByTopic: Schema.Array(Schema.Struct({ topic: Schema.String, reason: Schema.String, count: Count })),
  retained: Count.annotate({ description: "Published rows kept for RELAY_RETENTION" }),
  relays: Schema.Array(RelayInstance),
  staleLanes: Schema.Array(Lane).annotate({ description: "Registered lanes without a live connection" })
})
export type OutboxOverview = typeof OutboxOverview.Type

export const DeadRow = Schema.Struct({
  id: Schema.String,
  eventId: Schema.String,
  topic: Schema.String,
  eventType: Schema.String,
  aggregateId: Schema.String,
  attempts: Count,
  lastError: Schema.NullOr(Schema.String),
  deadAt: Schema.String,
  payload: Schema.Unknown,
  headers: Schema.Unknown
})
export type DeadRow = typeof DeadRow.Type

export const DeadRowPage = Schema.Struct({ rows: Schema.Array(DeadRow) })
export type DeadRowPage = typeof DeadRowPage.Type

const Uuid = Schema.String.check(Schema.isPattern(uuidPattern, { message: "an event id (UUID)" }))

/** Dead outbox rows to replay: the given event ids, or every one (of `topic`, when given). */
export const DeadRowSelection = Schema.Union([
  Schema.Struct({ ids: Schema.Array(Uuid).check(Schema.isMinLength(1), Schema.isMaxLength(10_000)) }),
  Schema.Struct({ all: Schema.Literal(true), topic: Schema.optionalKey(Schema.String) })
]).annotate({ description: "{\"ids\": [event ids]} or {\"all\": true, \"topic\"?: \"...\"}" })
export type DeadRowSelection = typeof DeadRowSelection.Type

export const DeadRowReplay = Schema.Struct({
  replayed: Schema.Array(Schema.String).annotate({ description: "Event ids moved back to pending" }),
  notFound: Schema.Array(Schema.String)
})
export type DeadRowReplay = typeof DeadRowReplay.Type
