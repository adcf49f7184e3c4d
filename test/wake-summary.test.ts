/**
 * The NOTIFY skip test of sql/0006_wake_summary.sql at the SQL level (no relay running): the
 * sequence the trigger reads says "awake" only while EVERY registered lane is awake, whatever the
 * order of changes; and the trigger notifies exactly when it should, in any isolation level.
 */
import { afterEach, describe, expect, it } from "vitest"
import { makeTestEnv, type TestEnv } from "./support/relayHarness.js"

describe("wake summary (sql/0006)", () => {
  let t: TestEnv | undefined
  afterEach(async () => {
    await t?.dispose()
    t = undefined
  })

  it("says awake only while every registered lane is, and the trigger skips NOTIFY only then", async () => {
    t = await makeTestEnv("wake-summary")
    const sql = t.sql
    const awake = async () => {
      const [row] = await sql<[{ awake: boolean }]>`
        SELECT pg_sequence_last_value('outbox_relay_awake_until')
                 > (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
          AS awake`
      return row.awake
    }
    let notifications = 0
    const listener = await sql.listen("outbox_events", () => {
      notifications++
    })
    /** Inserts one event in a transaction of the given isolation level; true when it notified. */
    const notifies = async (level = "read committed") => {
      const before = notifications
      await sql.begin(
        `isolation level ${level}`,
        (tx) =>
          tx`INSERT INTO outbox_events (topic, event_type, aggregate_id, payload) VALUES ('orders', 'T', 'a', '{}')`
      )
      // Notifications arrive on their own connection: give the one that should come time to arrive.
      const deadline = Date.now() + 1_000
      while (notifications === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
      return notifications > before
    }
    const soon = "clock_timestamp() + interval '1 minute'"
    try {
      // No relay registered: notify.
      expect(await awake()).toBe(false)
      expect(await notifies()).toBe(true)

      await sql.unsafe(`SELECT outbox_relay_wake_set('a', ${soon})`)
      expect(await awake()).toBe(true)
      expect(await notifies()).toBe(false)
      expect(await notifies("repeatable read")).toBe(false)
      expect(await notifies("serializable")).toBe(false)

      // A second lane registers asleep: notify again until it is awake too.
      await sql.unsafe(`SELECT outbox_relay_wake_set('b', '-infinity')`)
      expect(await awake()).toBe(false)
      expect(await notifies("repeatable read")).toBe(true)
      await sql.unsafe(`SELECT outbox_relay_wake_set('b', ${soon})`)
      expect(await awake()).toBe(true)
      expect(await notifies()).toBe(false)

      // A heartbeat keeps the flag as it is.
      await sql.unsafe(`SELECT outbox_relay_wake_set('a', NULL)`)
      expect(await awake()).toBe(true)

      // One goes to sleep, then leaves: notify while it is asleep, skip once it is gone.
      await sql.unsafe(`SELECT outbox_relay_wake_set('a', '-infinity')`)
      expect(await awake()).toBe(false)
      expect(await notifies()).toBe(true)
      await sql.unsafe(`SELECT outbox_relay_wake_forget('a')`)
      expect(await awake()).toBe(true)

      // A flag that runs out is not awake, without anyone writing.
      await sql.unsafe(`SELECT outbox_relay_wake_set('b', clock_timestamp() + interval '200 milliseconds')`)
      expect(await awake()).toBe(true)
      await new Promise((r) => setTimeout(r, 300))
      expect(await awake()).toBe(false)
      expect(await notifies()).toBe(true)

      // The last one leaves: nobody registered, notify.
      await sql.unsafe(`SELECT outbox_relay_wake_forget('b')`)
      expect(await awake()).toBe(false)
      expect(await notifies()).toBe(true)
    } finally {
      await listener.unlisten()
    }
  })
})
