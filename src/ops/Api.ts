/**
 * The admin API, declared once with `effect/http-api`: the server implements it (ApiServer.ts), the
 * OpenAPI document and the docs page come from it, and a typed client can be derived from it.
 * Every path parameter, query parameter and body is decoded by the Schemas below before a handler runs.
 */
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiMiddleware, HttpApiSecurity, OpenApi } from "effect/http-api"
import * as Schema from "effect/Schema"
import { BadInput, Forbidden, NotFound, Unauthorized, Unavailable } from "./Errors.js"
import {
  DeadLetterPage,
  DeadLetterSummary,
  DeadRowPage,
  DeadRowReplay,
  DeadRowSelection,
  EntryPage,
  OutboxOverview,
  PendingPage,
  PurgeResult,
  RangeBound,
  ReplayResult,
  Selection,
  StreamDetails,
  StreamList
} from "./Model.js"

/** Mutations need `Authorization: Bearer <RELAY_ADMIN_TOKEN>`. */
export class AdminToken extends HttpApiMiddleware.Service<AdminToken>()("outbox-relay/ops/AdminToken", {
  security: { bearer: HttpApiSecurity.bearer },
  error: [Unauthorized, Forbidden]
}) {}

const between = (minimum: number, maximum: number) =>
  Schema.Int.check(Schema.isBetween({ minimum, maximum }, { message: `an integer from ${minimum} to ${maximum}` }))

/** `count` of a listing: 1 to 1000. */
export const PageCount = between(1, 1000).annotate({ description: "1 to 1000" })

const streamParam = {
  stream: Schema.String.annotate({
    description: "The stream key: the prefix plus a topic (or its dead letters, `{<stream>}:dlq`)"
  })
}

const read = [NotFound, Unavailable]

export class StreamsGroup extends HttpApiGroup.make("streams")
  .add(
    HttpApiEndpoint.get("list", "/streams", {
      success: StreamList,
      error: Unavailable
    }).annotate(OpenApi.Summary, "Every stream under the prefix"),
    HttpApiEndpoint.get("get", "/streams/:stream", {
      params: streamParam,
      success: StreamDetails,
      error: read
    }).annotate(OpenApi.Summary, "A stream, its groups and their consumers"),
    HttpApiEndpoint.get("entries", "/streams/:stream/entries", {
      params: streamParam,
      query: {
        start: Schema.optionalKey(RangeBound),
        end: Schema.optionalKey(RangeBound),
        count: Schema.optionalKey(PageCount),
        reverse: Schema.optionalKey(Schema.Boolean)
      },
      success: EntryPage,
      error: read
    }).annotate(OpenApi.Summary, "Entries decoded as envelopes (oldest first; newest first with reverse=true)"),
    HttpApiEndpoint.get("pending", "/streams/:stream/pending", {
      params: streamParam,
      query: {
        group: Schema.String.check(Schema.isMinLength(1)),
        consumer: Schema.optionalKey(Schema.String.check(Schema.isMinLength(1))),
        count: Schema.optionalKey(PageCount),
        minIdleMs: Schema.optionalKey(between(0, 2_147_483_647))
      },
      success: PendingPage,
      error: [BadInput, NotFound, Unavailable]
    }).annotate(OpenApi.Summary, "Pending entries of a group, with consumer, idle time and delivery count"),
    HttpApiEndpoint.get("deadLetters", "/streams/:stream/dlq", {
      params: streamParam,
      success: DeadLetterSummary,
      error: read
    }).annotate(OpenApi.Summary, "Dead letters of a stream: count, by reason, oldest and newest"),
    HttpApiEndpoint.get("deadLetterMessages", "/streams/:stream/dlq/messages", {
      params: streamParam,
      query: {
        start: Schema.optionalKey(RangeBound),
        count: Schema.optionalKey(PageCount)
      },
      success: DeadLetterPage,
      error: read
    }).annotate(OpenApi.Summary, "The dead letters, oldest first, with their metadata"),
    HttpApiEndpoint.post("replayDeadLetters", "/streams/:stream/dlq/replay", {
      params: streamParam,
      payload: Selection,
      success: ReplayResult,
      error: read
    }).middleware(AdminToken).annotate(OpenApi.Summary, "Replay dead letters to their stream (token)"),
    HttpApiEndpoint.post("purgeDeadLetters", "/streams/:stream/dlq/purge", {
      params: streamParam,
      payload: Selection,
      success: PurgeResult,
      error: read
    }).middleware(AdminToken).annotate(OpenApi.Summary, "Delete dead letters (token)")
  )
{}

export class OutboxGroup extends HttpApiGroup.make("outbox")
  .add(
    HttpApiEndpoint.get("overview", "/outbox", {
      success: OutboxOverview,
      error: Unavailable
    }).annotate(OpenApi.Summary, "Backlog, dead and retained rows, live relays with lanes and slots"),
    HttpApiEndpoint.get("dead", "/outbox/dead", {
      query: {
        topic: Schema.optionalKey(Schema.String.check(Schema.isMinLength(1))),
        count: Schema.optionalKey(PageCount)
      },
      success: DeadRowPage,
      error: Unavailable
    }).annotate(OpenApi.Summary, "Dead outbox rows, newest first"),
    HttpApiEndpoint.post("replayDead", "/outbox/dead/replay", {
      payload: DeadRowSelection,
      success: DeadRowReplay,
      error: Unavailable
    }).middleware(AdminToken).annotate(OpenApi.Summary, "Move dead outbox rows back to pending (token)")
  )
{}

export class AdminApi extends HttpApi.make("outbox-relay")
  .add(StreamsGroup)
  .add(OutboxGroup)
  .prefix("/api")
  .annotateMerge(OpenApi.annotations({
    title: "outbox-relay admin API",
    description: "Streams, consumer groups, dead letters and the outbox of one relay's Postgres and Redis. " +
      "Mutations need `Authorization: Bearer <RELAY_ADMIN_TOKEN>`."
  }))
{}
