/**
 * The claim statement only takes rows on the session that holds the lane's slot leases. postgres.js
 * may run statements of a pipeline it had not sent yet on a new connection after the old one drops,
 * so the claim can reach a session without its BEGIN; there, in autocommit, a DELETE that took rows
 * would remove them for good with nothing published. The chaos suite lost events that way once the
 * relay pipelined its COMMITs in front of its claims; this pins the guard that stopped it.
 */
import postgres from "postgres"
import { describe, expect, it } from "vitest"
import { slotCount, slotMask, statements } from "../src/relay/Statements.js"
import { insertEvents, makeTestEnv } from "./support/relayHarness.js"

describe("claim statement", () => {
  it("takes nothing on any session but the one it names, and takes rows on that one", async () => {
    const t = await makeTestEnv("claim-guard")
    const other = postgres(t.databaseUrl, { max: 1, onnotice: () => {}, fetch_types: false })
    try {
      await insertEvents(
        t.sql,
        Array.from({ length: 5 }, (_, i) => ({ topic: "orders", aggregate_id: `a${i}`, payload: { i } }))
      )
      const claim = statements("public").claimBatch
      const allSlots = slotMask(Array.from({ length: slotCount }, (_, i) => i))
      const [{ pid: otherPid }] = await other<[{ pid: number }]>`SELECT pg_backend_pid() AS pid`
      const pending = async () => (await t.sql`SELECT count(*)::int AS n FROM outbox_events`)[0]!.n as number

      // A claim naming another session (the leases' one), arriving here in autocommit.
      const stray = await t.sql.unsafe(claim, [10, allSlots, String(otherPid)])
      expect(stray.length).toBe(0)
      expect(await pending()).toBe(5)

      // On the session it names, inside a transaction, it claims (and a rollback puts them back).
      const rows = await other.begin((tx) =>
        tx.unsafe(claim, [10, allSlots, String(otherPid)]).then((r) => {
          expect(r.length).toBe(5)
          throw new Error("roll back")
        })
      ).catch((error: Error) => error.message)
      expect(rows).toBe("roll back")
      expect(await pending()).toBe(5)
    } finally {
      await other.end()
      await t.dispose()
    }
  })
})
