/**
 * Every Redis key name the relay uses, built in one place.
 *
 * Cluster note: the in-flight marker hash wraps the stream key in a hash tag, `{<stream>}:inflight`,
 * so it hashes to the stream's own slot and one script can touch both. Topics and the prefix may
 * not contain braces (checked by the table and the config), so the stream key itself has no tag.
 */

/**
 * The topics the relay publishes by default (`RELAY_TOPIC_PATTERN`); the outbox table's own CHECK in
 * sql/0001_outbox.sql is the same pattern, the outer bound a setting cannot widen.
 */
export const defaultTopicPattern = "^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$"

/** The stream of a topic. */
export const streamKey = (prefix: string, topic: string): string => `${prefix}${topic}`

/** Events of `stream` added but not yet acknowledged in Postgres (dedupe of re-published batches). */
export const inflightKey = (stream: string): string => `{${stream}}:inflight`

/**
 * The highest slot-lease epoch a publish for `stream` carried, per outbox slot: the fence that stops a
 * relay that lost its leases while paused from adding entries late (lua/publish.lua).
 */
export const fenceKey = (stream: string): string => `{${stream}}:fence`

/** The dead-letter mirror of `stream`, for people and alerts (Postgres holds the record). */
export const deadLetterKey = (stream: string): string => `${stream}:dlq`
