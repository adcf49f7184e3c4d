/**
 * Every backoff schedule of the relay and the consumer, defined once. Transient failures (a server
 * down, a timeout) are retried for ever with a capped, jittered exponential delay; only the consumer's
 * handler retry is bounded, because a handler's failure may be permanent.
 */
import * as Duration from "effect/Duration"
import * as Schedule from "effect/Schedule"

/** Exponential from `base`, capped at `cap`, jittered, without end: a relay batch that failed transiently. */
export const retryBatch = (base: Duration.Input, cap: Duration.Input): Schedule.Schedule<unknown> =>
  Schedule.min([Schedule.exponential(base), Schedule.spaced(cap)]).pipe(Schedule.jittered)

/** Migrations at start-up while Postgres is not up yet: from 200 ms, capped at 5 s. */
export const retryMigration: Schedule.Schedule<unknown> = Schedule.min([
  Schedule.exponential("200 millis"),
  Schedule.spaced("5 seconds")
])

/** The consumer's Redis commands that must happen eventually (read, ack, dead-letter): from 50 ms, capped at 2 s. */
export const retryRedis: Schedule.Schedule<unknown> = retryBatch("50 millis", "2 seconds")

/** The default retry of one consumer delivery: three retries, jittered exponential from 100 ms. */
export const defaultHandlerRetry: Schedule.Schedule<unknown, unknown> = Schedule.exponential("100 millis").pipe(
  Schedule.jittered,
  Schedule.upTo({ times: 3 })
)

/** Delay before the n-th reconnect of the LISTEN connection (n from 1): from 100 ms, capped at 5 s. */
export const listenReconnectDelay = (failures: number): Duration.Duration =>
  Duration.millis(Math.min(100 * 2 ** Math.min(failures - 1, 6), 5_000))

/** ioredis `retryStrategy`: reconnect after 100 ms, doubling, at most every second. */
export const redisReconnectDelay = (attempt: number): number => Math.min(50 * 2 ** attempt, 1_000)
