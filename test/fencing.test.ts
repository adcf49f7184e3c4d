/**
 * Fencing: a relay paused mid-batch (SIGSTOP, a long GC pause) whose Postgres session ended has lost
 * its slot leases, but still holds the claimed rows in memory. Another relay leases the slots (a
 * higher epoch), publishes the rows and commits. When the paused relay resumes, its publish must add
 * nothing: the markers cannot stop it (they are dropped once the other relay committed), only the
 * fence can. The stages are driven directly, as the relay's lanes run them, so the pause is exact.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { LeaseBoard, SlotLeases } from "../src/relay/2-SlotLeases.js"
import { ClaimSession } from "../src/relay/3-ClaimSession.js"
import { makeLedger, StreamPublisher } from "../src/relay/4-Publish.js"
import { RelayConfig } from "../src/relay/RelayConfig.js"
import { fenceKey } from "../src/shared/RedisKeys.js"
import { insertEvents, readStream, relayLayer, streamWithAtLeast, testEnv } from "./support/relayHarness.js"

/** One lane's stages (session, leases, publisher), as a relay process has them. */
const lane = (env: Record<string, string>) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      Layer.mergeAll(SlotLeases.layer, StreamPublisher.layer).pipe(
        Layer.provideMerge(ClaimSession.layer),
        Layer.provide(LeaseBoard.layer),
        Layer.provide(RelayConfig.layerFrom(env))
      )
    )
    return {
      session: Context.get(context, ClaimSession),
      leases: Context.get(context, SlotLeases),
      publisher: Context.get(context, StreamPublisher)
    }
  })

describe("fencing", () => {
  it.live("a relay that lost its leases while paused adds nothing when it resumes", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("fencing")
      const stream = `${t.prefix}orders`
      const payloads = async () =>
        (await readStream(t.redis, stream)).map((e) => (JSON.parse(e.fields.payload!) as { n: number }).n)
      yield* Effect.promise(() =>
        insertEvents(t.sql, [1, 2, 3].map((n) => ({ topic: "orders", aggregate_id: "order-1", payload: { n } })))
      )
      const a = yield* lane(t.env)
      const b = yield* lane(t.env)
      assert.strictEqual((yield* a.leases.rebalance).owned.length, 64)

      yield* Effect.scoped(Effect.gen(function*() {
        // A claims the batch, then "freezes" before publishing it.
        const stale = yield* a.session.claimBatch(10)
        assert.strictEqual(stale.rows.length, 3)
        // Postgres ends A's session while it is frozen (idle_in_transaction_session_timeout, keepalives):
        // its leases and its claim are gone, the rows are pending again.
        const ended = yield* Effect.promise(() =>
          t.sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                WHERE application_name LIKE 'outbox-relay-claim/%' AND datname = current_database()`
        )
        assert.strictEqual(ended.length, 1)

        // B takes the slots over (newer epochs), publishes the rows and one more, and commits.
        yield* Effect.promise(() =>
          insertEvents(t.sql, [{ topic: "orders", aggregate_id: "order-1", payload: { n: 4 } }])
        )
        yield* Effect.eventually(Effect.gen(function*() {
          if ((yield* b.leases.rebalance).owned.length < 64) yield* Effect.fail("A's locks not released yet")
        }))
        yield* Effect.scoped(Effect.gen(function*() {
          const batch = yield* b.session.claimBatch(10)
          assert.strictEqual(batch.rows.length, 4)
          const ledger = makeLedger()
          const outcomes = yield* b.publisher.publish(batch.rows, b.session.epochs(), ledger)
          assert.isTrue(outcomes.every((o) => o._tag === "Published" && !o.duplicate))
          yield* batch.commit([])
          yield* b.publisher.forgetLater(ledger)
          yield* b.publisher.flushForgotten
        }))
        assert.deepStrictEqual(yield* Effect.promise(payloads), [1, 2, 3, 4])
        const slot = String(stale.rows[0]!.slot)
        assert.isAbove(Number(b.session.epochs().get(Number(slot))), Number(a.session.epochs().get(Number(slot))))

        // A resumes and publishes its stale batch: refused, nothing added.
        const refused = yield* Effect.flip(a.publisher.publish(stale.rows, a.session.epochs(), makeLedger()))
        assert.strictEqual(refused._tag, "LeaseFenced")
        assert.deepStrictEqual(yield* Effect.promise(payloads), [1, 2, 3, 4], "no late entries from A")
        assert.strictEqual(
          yield* Effect.promise(() => t.redis.hget(fenceKey(stream), slot)),
          b.session.epochs().get(Number(slot))
        )
      }))
      // A drops what is left of its session and leases again; it gets no slot B holds.
      yield* a.session.dropLeases
      assert.strictEqual((yield* a.leases.rebalance).owned.length, 0)
    }).pipe(Effect.scoped))

  it.live("a database restored from a backup does not leave the relay fenced off", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("fence-restore", { RELAY_POLL_INTERVAL: "1 minute" })
      const stream = `${t.prefix}orders`
      // Redis saw high epochs (a minute ago) for every slot; the restored table starts again from 0.
      const earlier = String(Date.now() - 60_000)
      yield* Effect.promise(() =>
        t.redis.hset(fenceKey(stream), ...Array.from({ length: 64 }, (_, slot) => [String(slot), earlier]).flat())
      )
      yield* Effect.promise(() => t.sql`UPDATE outbox_slot_epochs SET epoch = 0`)
      yield* Layer.build(relayLayer(t.env))
      yield* Effect.promise(() => insertEvents(t.sql, [{ topic: "orders", aggregate_id: "after-restore" }]))
      const entries = yield* Effect.promise(() => streamWithAtLeast(t.redis, stream, 1, 5_000))
      assert.strictEqual(entries.length, 1)
    }).pipe(Effect.scoped))
})
