/**
 * The operations surface's errors. Each carries its HTTP status, so the API answers with it, and an
 * `error` sentence a person can act on; the command line prints the same sentence.
 */
import * as Schema from "effect/Schema"

/** A parameter or body field is wrong: `field` names it. */
export class BadInput extends Schema.TaggedError<BadInput>()("BadInput", {
  error: Schema.String,
  field: Schema.String
}, { httpApiStatus: 400 }) {}

/** No such stream, group or row (a name outside the stream prefix is also "not found"). */
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", {
  error: Schema.String
}, { httpApiStatus: 404 }) {}

/** Postgres or Redis did not answer: `error` says which and why. */
export class Unavailable extends Schema.TaggedError<Unavailable>()("Unavailable", {
  error: Schema.String
}, { httpApiStatus: 503 }) {}

/** A mutating call without the right bearer token. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  error: Schema.String
}, { httpApiStatus: 401 }) {}

/** A mutating call while no admin token is configured. */
export class Forbidden extends Schema.TaggedError<Forbidden>()("Forbidden", {
  error: Schema.String
}, { httpApiStatus: 403 }) {}

export type OperationError = BadInput | NotFound | Unavailable
