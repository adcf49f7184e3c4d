/**
 * Several relays on one database: they split the slots, publish every event once, keep each
 * aggregate's order, and when one is SIGKILLed the others take its share over within
 * RELAY_LEASE_TIMEOUT.
 */
import { afterEach, describe, expect, it } from "vitest"
import { drained, insertEvents, makeTestEnv, readStream, type TestEnv } from "./support/relayHarness.js"
import { killAllRelayProcesses, type RelayProcessHandle, startRelayProcess } from "./support/relayProcess.js"
import { eventually } from "./support/wait.js"

interface Readiness {
  readonly ready: boolean
  readonly slots: { readonly owned: ReadonlyArray<number>; readonly liveRelays: number }
}

const startRelay = async (env: Record<string, string>) => {
  const relay = startRelayProcess({ ...env, RELAY_LOG_LEVEL: "info" })
  const line = await relay.waitForLine(
    (_, parsed) => (parsed as { message?: string } | undefined)?.message === "admin http server listening",
    20_000
  )
  const port = (line.parsed as { annotations: { port: number } }).annotations.port
  const readiness = async (): Promise<Readiness> => (await fetch(`http://127.0.0.1:${port}/readyz`)).json() as never
  return { relay, readiness }
}

describe("several relays", () => {
  let t: TestEnv | undefined
  afterEach(async () => {
    await killAllRelayProcesses()
    await t?.dispose()
    t = undefined
  })

  it("split the slots, publish each event once in aggregate order, and take over from a killed relay", async () => {
    t = await makeTestEnv("instances", { RELAY_LEASE_TIMEOUT: "3 seconds", RELAY_BATCH_SIZE: "50" })
    const env = t.env
    const relays = await Promise.all([startRelay(env), startRelay(env), startRelay(env)])

    // Every slot owned by exactly one relay once they have seen each other.
    const owners = await eventually(
      () => Promise.all(relays.map((r) => r.readiness())),
      (views) => {
        const owned = views.flatMap((v) => v.slots.owned)
        return owned.length === 64 && new Set(owned).size === 64 && views.every((v) => v.slots.owned.length >= 20)
      },
      15_000,
      100
    )
    const owned = owners.flatMap((v) => v.slots.owned)
    expect(new Set(owned).size).toBe(64)
    expect(owned).toHaveLength(64)

    const aggregates = 30
    const perAggregate = 60
    let victim: RelayProcessHandle | undefined
    let killedAt = 0
    const produce = Promise.all(Array.from({ length: aggregates }, async (_, a) => {
      for (let i = 0; i < perAggregate; i++) {
        await insertEvents(t!.sql, [{
          topic: a % 2 === 0 ? "even" : "odd",
          aggregate_id: `agg-${a}`,
          payload: { a, i }
        }])
        if (a === 0 && i === perAggregate / 3) {
          victim = relays[0]!.relay
          victim.kill("SIGKILL")
          killedAt = Date.now()
        }
      }
    }))
    await produce
    expect(victim).toBeDefined()

    // The survivors own everything within the lease timeout.
    const survivors = relays.slice(1)
    const after = await eventually(
      () => Promise.all(survivors.map((r) => r.readiness())),
      (views) => new Set(views.flatMap((v) => v.slots.owned)).size === 64,
      10_000,
      100
    )
    expect(new Set(after.flatMap((v) => v.slots.owned)).size).toBe(64)
    expect(Date.now() - killedAt).toBeLessThan(10_000)

    const total = aggregates * perAggregate
    const count = async () => (await t!.redis.xlen(`${t!.prefix}even`)) + (await t!.redis.xlen(`${t!.prefix}odd`))
    await eventually(count, (n) => n >= total, 20_000, 50)
    const entries = [...await readStream(t.redis, `${t.prefix}even`), ...await readStream(t.redis, `${t.prefix}odd`)]
    expect(entries).toHaveLength(total)
    expect(new Set(entries.map((e) => e.fields.event_id)).size).toBe(total)
    for (let a = 0; a < aggregates; a++) {
      const seq = entries.filter((e) => e.fields.aggregate_id === `agg-${a}`)
        .map((e) => (JSON.parse(e.fields.payload!) as { i: number }).i)
      expect(seq).toEqual(Array.from({ length: perAggregate }, (_, i) => i))
    }
    expect(await drained(t.sql)).toBe(0)
  })
})
