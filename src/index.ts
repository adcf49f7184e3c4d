/**
 * outbox-relay as a library. The relay: its layers (`RelayDaemon` with the admin HTTP server,
 * `RelayLoop` without), its settings and migrations, for applications and tests that run it inside
 * their own Effect program. The consumer: `startConsumer` (promises) or the `Consumer` layer (Effect),
 * the inbox, and the dead-letter tools. Typed events: `defineEvent` and `eventCatalog`, the producer
 * helpers `enqueue` / `enqueueMany` (postgres.js or node-postgres) and `Outbox` (Effect `SqlClient`).
 */
export { Consumer } from "./consumer/Consumer.js"
export { metricsServer, prometheusText } from "./consumer/ConsumerMetrics.js"
export {
  countDeadLetters,
  listDeadLetters,
  listDeadLettersAsync,
  replayDeadLetters,
  replayDeadLettersAsync
} from "./consumer/DeadLetters.js"
export type { DeadLetterEntry, ReplayResult } from "./consumer/DeadLetters.js"
export type { ConsumerStats } from "./consumer/Delivery.js"
export type { ConsumedEvent } from "./consumer/Envelope.js"
export {
  ConsumerOptionsInvalid,
  ConsumerRedisUnavailable,
  HandlerTimedOut,
  InboxUnavailable
} from "./consumer/Errors.js"
export { isProcessed, withInbox } from "./consumer/Inbox.js"
export type { InboxHandler, InboxSettings } from "./consumer/Inbox.js"
export type { ConsumerOptions, StartFrom } from "./consumer/Options.js"
export type {
  CatalogConsumerOptions,
  CatalogHandlers,
  ConsumerSettings,
  ConsumerTls,
  UnknownEvents
} from "./consumer/Options.js"
export { startConsumer } from "./consumer/startConsumer.js"
export type {
  ConsumerHandle,
  Handler,
  HandlerContext,
  InboxConsumerOptions,
  InboxOptions,
  PlainConsumerOptions,
  StartConsumerOptions
} from "./consumer/startConsumer.js"
export type {
  CatalogOptions,
  InboxCatalogConsumerOptions,
  PlainCatalogConsumerOptions,
  TypedHandlers
} from "./consumer/startConsumer.js"
export { defineEvent, eventCatalog, EventPayloadInvalid } from "./events/Catalog.js"
export type {
  AnyEvent,
  CatalogEntry,
  EventCatalog,
  EventDefinition,
  EventOptions,
  EventUpgrades,
  JsonObject,
  PayloadOf
} from "./events/Catalog.js"
export type { EnqueueEntry, EnqueueInput } from "./events/Enqueue.js"
export { Outbox } from "./events/Outbox.js"
export { enqueue, enqueueMany } from "./events/Producer.js"
export type { PgQueryable, SqlTarget } from "./events/Producer.js"
export { Database } from "./relay/Database.js"
export type { DeadRow, OutboxStats } from "./relay/Database.js"
export { Health } from "./relay/Health.js"
export type { HealthSnapshot } from "./relay/Health.js"
export { migrate } from "./relay/Migrator.js"
export type { MigrateOptions } from "./relay/Migrator.js"
export { RelayDaemon, RelayLoop } from "./relay/Relay.js"
export { ConfigInvalid, RelayConfig } from "./relay/RelayConfig.js"
export type { RelaySettings } from "./relay/RelayConfig.js"
export { envelopeFields } from "./shared/Envelope.js"
export { DatabaseUnavailable, MigrationFailed, RedisUnavailable } from "./shared/Errors.js"
export { loggerLayer } from "./shared/Logging.js"
export { deadLetterKey, streamKey } from "./shared/RedisKeys.js"
export { defaultHandlerRetry } from "./shared/Retry.js"
export {
  formatTraceparent,
  parentFromHeaders,
  parseTraceparent,
  traceHeaders,
  traceHeadersFrom,
  withTraceHeaders
} from "./shared/TraceContext.js"
export type { SpanContextLike, TraceHeaders, TraceParent } from "./shared/TraceContext.js"
