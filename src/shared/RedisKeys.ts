/**
 * Every Redis key name the relay and the consumer use, built in one place.
 *
 * Cluster: every other key of a stream wraps the stream key in a hash tag (`{<stream>}:attempts`,
 * `{<stream>}:orphans`, `{<stream>}:fence`, `{<stream>}:dlq`), so it hashes to the stream's own slot and one script or
 * MULTI can touch both. Topics and the prefix may not contain braces (checked by the table and the config), so the
 * stream key itself has no tag and its slot is the hash of the whole key.
 */

/**
 * The topics the relay publishes by default (`RELAY_TOPIC_PATTERN`); the outbox table's own CHECK in
 * sql/0001_outbox.sql is the same pattern, the outer bound a setting cannot widen.
 */
export const defaultTopicPattern = "^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$"

/** The stream of a topic. */
export const streamKey = (prefix: string, topic: string): string => `${prefix}${topic}`

/** Records of the publish calls for `stream` whose Postgres transaction is not known to have committed. */
export const attemptsKey = (stream: string): string => `{${stream}}:attempts`

/** Records of attempts for `stream` that failed or lost their lease: what a re-claim must not add again. */
export const orphansKey = (stream: string): string => `{${stream}}:orphans`

/** Per-event markers of relays before attempt records: still looked up, never written, gone within an hour. */
export const legacyInflightKey = (stream: string): string => `{${stream}}:inflight`

/**
 * The highest slot-lease epoch a publish for `stream` carried, per outbox slot: the fence that stops a
 * relay that lost its leases while paused from adding entries late (lua/publish.lua).
 */
export const fenceKey = (stream: string): string => `{${stream}}:fence`

/**
 * The dead letters of `stream`: those consumers gave up on, and the relay's mirror of the rows it
 * dead-lettered (Postgres holds those).
 */
export const deadLetterKey = (stream: string): string => `{${stream}}:dlq`

/** The stream whose dead letters `key` holds, or undefined when `key` is not a dead-letter key. */
export const streamOfDeadLetterKey = (key: string): string | undefined =>
  key.startsWith("{") && key.endsWith("}:dlq") && key.indexOf("}") === key.length - 5 ? key.slice(1, -5) : undefined
