/**
 * The consumer's typed failures. As in the relay, the class says what happens next:
 * - `ConsumerRedisUnavailable` is transient: the loop that hit it (read, ack, reclaim) backs off and
 *   tries again, for ever; nothing is dead-lettered because Redis was down.
 * - `ConsumerOptionsInvalid` stops the consumer before it starts (a setting that cannot work).
 * - `HandlerTimedOut` describes one delivery: it counts as a failed one (left pending for a later
 *   delivery, or dead-lettered on the last). Poison (a message that can never succeed) is not an
 *   error but an outcome: the message goes to `{<stream>}:dlq` with its reason and is acknowledged.
 */
import * as Schema from "effect/Schema"

/** Redis could not be reached, timed out, or refused the command for now. */
export class ConsumerRedisUnavailable
  extends Schema.TaggedError<ConsumerRedisUnavailable>()("ConsumerRedisUnavailable", {
    operation: Schema.String,
    message: Schema.String
  })
{}

/** An option that can never work (e.g. `claimIdle` not above `handlerTimeout`). */
export class ConsumerOptionsInvalid extends Schema.TaggedError<ConsumerOptionsInvalid>()("ConsumerOptionsInvalid", {
  option: Schema.String,
  message: Schema.String
}) {}

/** A delivery (all its attempts) took longer than `handlerTimeout`. */
export class HandlerTimedOut extends Schema.TaggedError<HandlerTimedOut>()("HandlerTimedOut", {
  entryId: Schema.String,
  timeoutMillis: Schema.Number
}) {}

/** Postgres (inbox) could not be reached or failed mid-transaction. */
export class InboxUnavailable extends Schema.TaggedError<InboxUnavailable>()("InboxUnavailable", {
  message: Schema.String
}) {}
