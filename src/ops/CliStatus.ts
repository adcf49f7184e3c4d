/**
 * `outbox-relay status`: the outbox (Postgres) and every stream with its groups (Redis) on one screen.
 * The two servers are asked side by side and a failing one is reported in its place, so an operator
 * sees what still works; the command still exits 1 when either failed.
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import { OutboxOverview, StreamDetails } from "./Model.js"
import { Operations } from "./Operations.js"

/** Whether a server answered, and if not why. */
export const Reachable = Schema.Struct({
  ok: Schema.Boolean,
  error: Schema.NullOr(Schema.String)
})

/** What `status --json` prints: `null` stands for the part whose server failed. */
export const CliStatus = Schema.Struct({
  postgres: Reachable,
  redis: Reachable,
  outbox: Schema.NullOr(OutboxOverview),
  streams: Schema.NullOr(Schema.Struct({ prefix: Schema.String, streams: Schema.Array(StreamDetails) }))
})
export type CliStatus = typeof CliStatus.Type

const reachable = <A>(result: Result.Result<A, string>) =>
  Result.isSuccess(result) ? { ok: true, error: null } : { ok: false, error: result.failure }

/** Every stream's details; one that vanished between the listing and its details is left out. */
const allStreams = Effect.gen(function*() {
  const ops = yield* Operations
  const list = yield* ops.streams
  const details = yield* Effect.forEach(
    list.streams,
    (stream) =>
      ops.stream(stream.key).pipe(Effect.map((d) => [d]), Effect.catchTag("NotFound", () => Effect.succeed([]))),
    { concurrency: 4 }
  )
  return { prefix: list.prefix, streams: details.flat() }
})

export const gatherStatus: Effect.Effect<CliStatus, never, Operations> = Effect.gen(function*() {
  const ops = yield* Operations
  const [outbox, streams] = yield* Effect.all([
    ops.outbox.pipe(Effect.mapError((e) => `Postgres failed: ${e.error}`), Effect.result),
    allStreams.pipe(Effect.mapError((e) => e.error), Effect.result)
  ], { concurrency: 2 })
  return {
    postgres: reachable(outbox),
    redis: reachable(streams),
    outbox: Result.getOrNull(outbox),
    streams: Result.getOrNull(streams)
  }
})
