/**
 * The event catalog: the contract between producers and consumers. An event is a topic, a type name, a
 * version, a payload schema and the upgrades from its older versions; a catalog is the set of events of a
 * system, shared by the code that writes them and the code that reads them.
 *
 * What is stored (in `outbox_events.payload`, then in the stream entry) is the payload's JSON form: the
 * encoded side of `Schema.toCodecJson(payload)`, so a `Date` field is written as an ISO string and read
 * back as a `Date`. Upgrades work on that stored JSON: `upgrades[n]` turns a version-n payload into a
 * version n+1 payload, and the chain runs until the current version, which the schema then decodes.
 * docs/events.md has the long story (defining, versioning, what a decode failure does).
 */
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"

/** A payload in its stored (JSON) form. */
export type JsonObject = { readonly [key: string]: unknown }

/** `upgrades[n]`: a version-n payload (stored form) to a version n+1 payload. */
export type EventUpgrades = { readonly [fromVersion: number]: (payload: any) => JsonObject }

/** What `defineEvent` takes. */
export interface EventOptions<Type extends string, S extends Schema.Top> {
  /** The stream it goes to: `RELAY_STREAM_PREFIX` + topic. */
  readonly topic: string
  /** Unique in a catalog; consumers route by it (`outbox_events.event_type`). */
  readonly type: Type
  /** The current version (`schema_version`), from 1. Default 1. */
  readonly version?: number
  /** Schema of the current version's payload; its JSON form must be an object. */
  readonly payload: S
  /** Default `aggregate_type` of the rows written for this event. Default "". */
  readonly aggregateType?: string
  /** Older versions still in outboxes or streams are upgraded on read, one version at a time. */
  readonly upgrades?: EventUpgrades
}

/** One event of the catalog. `Type` is its name, `S` its payload schema. */
export interface EventDefinition<Type extends string = string, S extends Schema.Top = Schema.Top> {
  readonly topic: string
  readonly type: Type
  readonly version: number
  readonly aggregateType: string
  readonly payload: S
  readonly upgrades: EventUpgrades
  /** Payload value to stored form, or why it is not a valid payload. */
  readonly encode: (payload: unknown) => Result.Result<JsonObject, EventPayloadInvalid>
  /**
   * A stored payload of `version` to the current payload value: upgraded when older, then decoded. Fails
   * with the reason when it can never be read (newer than this definition, no upgrade, refused by the schema).
   */
  readonly decode: (version: number, stored: unknown) => Result.Result<S["Type"], EventPayloadInvalid>
}

/** Any event, whatever its name and payload. */
export type AnyEvent = EventDefinition<string, Schema.Top>

/** The payload type of an event (what producers pass and handlers get). */
export type PayloadOf<E extends AnyEvent> = E["payload"]["Type"]

/**
 * A payload that its event's schema refuses (or cannot be upgraded). `field` is the path of the first
 * offending field ("items.0.sku"; "" for the payload as a whole).
 */
export class EventPayloadInvalid extends Schema.TaggedError<EventPayloadInvalid>()("EventPayloadInvalid", {
  eventType: Schema.String,
  version: Schema.Number,
  field: Schema.String,
  message: Schema.String
}) {}

const formatIssue = SchemaIssue.makeFormatterStandardSchemaV1()

const invalid = (eventType: string, version: number, field: string, reason: string) =>
  new EventPayloadInvalid({
    eventType,
    version,
    field,
    message: `${eventType} v${version} payload${field === "" ? "" : ` field "${field}"`}: ${reason}`
  })

const fromSchemaError = (eventType: string, version: number, error: Schema.SchemaError) => {
  const [first] = formatIssue(error.issue).issues
  const field = first?.path?.map((key) => String(typeof key === "object" ? key.key : key)).join(".") ?? ""
  return invalid(eventType, version, field, first?.message ?? error.message)
}

const isJsonObject = (value: unknown): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/**
 * Defines one event. Throws when the definition itself cannot work (a version below 1, an upgrade from a
 * version that is not older, a gap in the chain of upgrades).
 */
export const defineEvent = <const Type extends string, S extends Schema.Top>(
  options: EventOptions<Type, S>
): EventDefinition<Type, S> => {
  const { type } = options
  const version = options.version ?? 1
  const upgrades = options.upgrades ?? {}
  if (!Number.isInteger(version) || version < 1) {
    throw new Error(`defineEvent ${type}: version must be an integer from 1, got ${version}`)
  }
  if (type === "" || options.topic === "") throw new Error(`defineEvent: topic and type must not be empty`)
  const from = Object.keys(upgrades).map(Number).sort((a, b) => a - b)
  for (const v of from) {
    if (!Number.isInteger(v) || v < 1 || v >= version) {
      throw new Error(`defineEvent ${type}: upgrades[${v}] must upgrade a version from 1 to ${version - 1}`)
    }
    if (v + 1 < version && upgrades[v + 1] === undefined) {
      throw new Error(`defineEvent ${type}: upgrades[${v}] leads to version ${v + 1}, which has no upgrade`)
    }
  }
  const oldest = from[0] ?? version
  // The JSON form, so what is written is what JSON.stringify keeps, and what is read is decoded from it.
  const codec = Schema.toCodecJson(options.payload) as unknown as Schema.Codec<unknown, unknown>
  const encodeJson = Schema.encodeUnknownResult(codec)
  const decodeJson = Schema.decodeUnknownResult(codec)

  const encode = (payload: unknown): Result.Result<JsonObject, EventPayloadInvalid> => {
    const encoded = encodeJson(payload)
    if (Result.isFailure(encoded)) return Result.fail(fromSchemaError(type, version, encoded.failure))
    if (!isJsonObject(encoded.success)) {
      return Result.fail(invalid(type, version, "", "must be stored as a JSON object"))
    }
    return Result.succeed(encoded.success)
  }

  const decode = (stored: number, payload: unknown): Result.Result<S["Type"], EventPayloadInvalid> => {
    if (!Number.isInteger(stored) || stored < 1) {
      return Result.fail(invalid(type, version, "", `schema_version ${stored} is not a version`))
    }
    if (stored > version) {
      return Result.fail(
        invalid(type, stored, "", `version ${stored} is newer than the catalog's ${version} (deploy readers first)`)
      )
    }
    if (stored < oldest) {
      return Result.fail(invalid(type, stored, "", `no upgrade from version ${stored} (oldest: ${oldest})`))
    }
    let current = payload
    for (let v = stored; v < version; v++) {
      try {
        current = upgrades[v]!(current)
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error)
        return Result.fail(invalid(type, v, "", `upgrade to version ${v + 1} failed: ${reason}`))
      }
    }
    const decoded = decodeJson(current)
    return Result.isFailure(decoded)
      ? Result.fail(fromSchemaError(type, version, decoded.failure))
      : Result.succeed(decoded.success as S["Type"])
  }

  return {
    topic: options.topic,
    type,
    version,
    aggregateType: options.aggregateType ?? "",
    payload: options.payload,
    upgrades,
    encode,
    decode
  }
}

/** One line of `catalog.list()`: what the docs and `outbox-relay catalog --json` show. */
export interface CatalogEntry {
  readonly type: string
  readonly topic: string
  readonly version: number
  readonly aggregateType: string
  /** Older versions that are still read (upgraded), oldest first. */
  readonly upgradesFrom: ReadonlyArray<number>
  /** JSON Schema (draft 2020-12) of the stored payload of the current version. */
  readonly payloadSchema: Record<string, unknown>
}

/** A set of events with distinct type names. */
export interface EventCatalog<Events extends AnyEvent = AnyEvent> {
  readonly events: ReadonlyArray<Events>
  /** The event named `type`, if the catalog has it. */
  readonly get: (type: string) => Events | undefined
  /** Every event, sorted by topic then type, with its payload's JSON Schema. */
  readonly list: () => ReadonlyArray<CatalogEntry>
}

/** Collects events into a catalog; throws when two share a type name. */
export const eventCatalog = <const Events extends ReadonlyArray<AnyEvent>>(
  ...events: Events
): EventCatalog<Events[number]> => {
  const byType = new Map<string, Events[number]>()
  for (const event of events) {
    if (byType.has(event.type)) throw new Error(`eventCatalog: two events are named ${event.type}`)
    byType.set(event.type, event)
  }
  return {
    events,
    get: (type) => byType.get(type),
    list: () =>
      [...events]
        .sort((a, b) => a.topic.localeCompare(b.topic) || a.type.localeCompare(b.type))
        .map((event) => {
          const document = Schema.toJsonSchemaDocument(event.payload)
          return {
            type: event.type,
            topic: event.topic,
            version: event.version,
            aggregateType: event.aggregateType,
            upgradesFrom: Object.keys(event.upgrades).map(Number).sort((a, b) => a - b),
            payloadSchema: {
              $schema: "https://json-schema.org/draft/2020-12/schema",
              ...document.schema,
              ...(Object.keys(document.definitions).length > 0 ? { $defs: document.definitions } : {})
            }
          }
        })
  }
}
