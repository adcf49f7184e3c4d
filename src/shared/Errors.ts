/**
 * The relay's typed failures. The class says what happens next:
 * - `DatabaseUnavailable` and `RedisUnavailable` are transient: the batch is rolled back and retried
 *   with backoff, forever; nothing is dead-lettered because a server was down.
 * - `LeaseFenced`: Redis refused a batch whose slot leases were taken over (the relay was paused past
 *   the end of its session); the batch is rolled back and the lane drops its leases and leases again.
 * - `MigrationFailed` stops `migrate` (and `run`) with a clear message.
 * A permanent problem with one event is not an error here: it is an outcome of the batch
 * (see `StreamPublisher.PublishOutcome`) and sends that event to the dead-letter store.
 */
import * as Schema from "effect/Schema"

/** Postgres could not be reached, timed out, or lost the connection mid-batch. */
export class DatabaseUnavailable extends Schema.TaggedError<DatabaseUnavailable>()("DatabaseUnavailable", {
  operation: Schema.String,
  message: Schema.String
}) {}

/** Redis could not be reached, timed out, or refused writes for now (OOM, LOADING, READONLY...). */
export class RedisUnavailable extends Schema.TaggedError<RedisUnavailable>()("RedisUnavailable", {
  operation: Schema.String,
  message: Schema.String
}) {}

/** The publish script refused a batch: a slot's lease epoch is older than one Redis has seen. */
export class LeaseFenced extends Schema.TaggedError<LeaseFenced>()("LeaseFenced", {
  message: Schema.String
}) {}

/** A migration could not be applied. */
export class MigrationFailed extends Schema.TaggedError<MigrationFailed>()("MigrationFailed", {
  migration: Schema.String,
  message: Schema.String
}) {}

/** Any transient failure of a batch. */
export type TransientError = DatabaseUnavailable | RedisUnavailable

/** Best-effort one-line description of a thrown value (driver errors are not always `Error`s). */
export const describe = (cause: unknown): string => {
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code
    return typeof code === "string" && !cause.message.includes(code) ? `${code}: ${cause.message}` : cause.message
  }
  return String(cause)
}
