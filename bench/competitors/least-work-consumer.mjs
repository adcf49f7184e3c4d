/**
 * The least work a consumer of a relay stream must do, as a yardstick for `startConsumer` (not a
 * product): one connection, `XREADGROUP ... COUNT 500` for new entries, `JSON.parse` of each entry's
 * payload, the handler, and one XACK per read, sent without waiting for it (it is pipelined with the
 * next read on the same connection). No delivery counts, no retries, no timeouts, no reclaim, no dead
 * letters, no ordering, no back-pressure: a handler that throws loses its message.
 *
 * Used by the bench's consumer scenario (bench/consumer.mjs through bench/lib/consumer-row.mjs).
 */
import Redis from "ioredis"

/**
 * Reads `count` entries of `stream` as `consumer` of `group` (which must exist), calls `handler` with
 * each parsed payload, and resolves once every one is acknowledged.
 */
export const leastWorkConsumer = async ({ redisUrl, stream, group, consumer, count, handler, batchSize = 500 }) => {
  const redis = new Redis(redisUrl)
  let seen = 0
  let lastAck
  try {
    while (seen < count) {
      const reply = await redis.call(
        "XREADGROUP",
        "GROUP",
        group,
        consumer,
        "COUNT",
        batchSize,
        "BLOCK",
        2000,
        "STREAMS",
        stream,
        ">"
      )
      if (reply === null) continue
      const entries = reply[0][1]
      const ids = new Array(entries.length)
      for (let i = 0; i < entries.length; i++) {
        const [id, fields] = entries[i]
        let payload
        for (let f = 0; f < fields.length; f += 2) {
          if (fields[f] === "payload") payload = JSON.parse(fields[f + 1])
        }
        handler(payload)
        ids[i] = id
      }
      lastAck = redis.call("XACK", stream, group, ...ids)
      seen += entries.length
    }
    await lastAck
  } finally {
    redis.disconnect()
  }
}
