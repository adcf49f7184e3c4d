/**
 * outbox-relay as a library: the services and layers of the daemon, for applications and tests that
 * compose them in their own Effect programs.
 */
export { AdminLive } from "./Admin.js"
export { RelayDaemon, RelayLoop, RelayServices } from "./Daemon.js"
export { Database } from "./Database.js"
export type { ClaimedBatch, DeadLetter, DeadRow, OutboxRow, OutboxStats } from "./Database.js"
export { DatabaseUnavailable, MigrationFailed, RedisUnavailable } from "./Errors.js"
export type { TransientError } from "./Errors.js"
export { Health } from "./Health.js"
export { loggerLayer } from "./Logging.js"
export * as Metrics from "./Metrics.js"
export { defaultMigrationsDir, migrate, readMigrations } from "./Migrator.js"
export { channel as notificationChannel, Notifications } from "./Notifications.js"
export type { Wakeup } from "./Notifications.js"
export { deadLetterKey, inflightKey, streamKey } from "./RedisKeys.js"
export { Relay, rejectReason, retryPublish } from "./Relay.js"
export type { BatchResult } from "./Relay.js"
export { ConfigInvalid, loadSettings, RelayConfig, settings } from "./RelayConfig.js"
export type { RelaySettings } from "./RelayConfig.js"
export { StreamPublisher } from "./StreamPublisher.js"
export type { PublishOutcome } from "./StreamPublisher.js"
