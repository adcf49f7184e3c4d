/**
 * Bad input from producers: each case is refused at insert with a clear error (a named constraint or
 * outbox_enqueue's message) or dead-lettered with its reason. Never a crash, never a stuck relay,
 * never a lost neighbour.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import type postgres from "postgres"
import { drained, insertEvents, readStream, relayLayer, streamWithAtLeast, testEnv } from "./support/relayHarness.js"
import { eventually } from "./support/wait.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

/** The error message of a failed statement, or "accepted". */
const outcome = (run: () => Promise<unknown>) =>
  promise(() => run().then(() => "accepted", (error: Error) => error.message))

const insertRaw = (sql: postgres.Sql, topic: unknown, eventType: unknown, payload: string | null, headers = "{}") =>
  sql.unsafe(
    `INSERT INTO outbox_events (topic, event_type, aggregate_id, payload, headers)
     VALUES ($1, $2, 'agg', $3::text::jsonb, $4::text::jsonb)`,
    [topic as string, eventType as string, payload as string, headers]
  )

const enqueue = (sql: postgres.Sql, topic: unknown, eventType: unknown, payload: string | null, headers = "{}") =>
  sql.unsafe("SELECT outbox_enqueue($1, $2, 'agg', $3::text::jsonb, $4::text::jsonb)", [
    topic as string,
    eventType as string,
    payload as string,
    headers
  ])

describe("bad input", () => {
  it.live("refuses malformed events at insert, through the table and through outbox_enqueue", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("bad-insert")
      yield* Layer.build(relayLayer(t.env))
      const cases: Array<[string, string | null, string | null, string | null, string?, RegExp?]> = [
        // label, topic, event_type, payload, headers, expected error
        ["SQL NULL payload", "orders", "E", null, "{}", /null value in column "payload"|payload must be a JSON object/],
        [
          "JSON null payload",
          "orders",
          "E",
          "null",
          "{}",
          /outbox_events_payload_object|payload must be a JSON object/
        ],
        ["array payload", "orders", "E", "[1,2]", "{}", /outbox_events_payload_object|payload must be a JSON object/],
        ["string payload", "orders", "E", "\"hi\"", "{}", /outbox_events_payload_object|payload must be a JSON object/],
        ["number payload", "orders", "E", "42", "{}", /outbox_events_payload_object|payload must be a JSON object/],
        ["empty topic", "", "E", "{}", "{}", /outbox_events_topic_format|invalid topic/],
        ["300-character topic", "t".repeat(300), "E", "{}", "{}", /outbox_events_topic_format|invalid topic/],
        ["topic with a space", "my orders", "E", "{}", "{}", /outbox_events_topic_format|invalid topic/],
        ["topic with braces", "{orders}", "E", "{}", "{}", /outbox_events_topic_format|invalid topic/],
        ["topic with a newline", "orders\nx", "E", "{}", "{}", /outbox_events_topic_format|invalid topic/],
        ["topic with *", "orders*", "E", "{}", "{}", /outbox_events_topic_format|invalid topic/],
        ["topic with :", "orders:dlq", "E", "{}", "{}", /outbox_events_topic_format|invalid topic/],
        [
          "SQL injection topic",
          "x'); DROP TABLE outbox_events; --",
          "E",
          "{}",
          "{}",
          /outbox_events_topic_format|invalid topic/
        ],
        ["missing event_type", "orders", null, "{}", "{}", /null value in column "event_type"|invalid event_type/],
        ["empty event_type", "orders", "", "{}", "{}", /outbox_events_event_type_format|invalid event_type/],
        [
          "headers not an object",
          "orders",
          "E",
          "{}",
          "[\"traceparent\"]",
          /outbox_events_headers_object|headers must be a JSON object/
        ]
      ]
      for (const [label, topic, eventType, payload, headers, expected] of cases) {
        for (const [path, run] of [["insert", insertRaw], ["outbox_enqueue", enqueue]] as const) {
          const result = yield* outcome(() => run(t.sql, topic, eventType, payload, headers))
          assert.match(result, expected!, `${label} via ${path}: ${result}`)
        }
      }
      // Nothing of that reached the table; a good neighbour still flows.
      yield* promise(() => insertEvents(t.sql, [{ topic: "orders", event_type: "Good" }]))
      const entries = yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}orders`, 1))
      assert.deepStrictEqual(entries.map((e) => e.fields.event_type), ["Good"])
    }).pipe(Effect.scoped))

  it.live("refuses an event_id reused with a different payload, keeps the first", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("bad-reuse", { RELAY_POLL_INTERVAL: "1 minute" })
      const id = "0f8fad5b-d9cb-469f-a165-70867728950e"
      // No relay yet: the first event is still in the outbox when the second comes.
      yield* promise(() =>
        t.sql`SELECT outbox_enqueue('orders', 'E', 'a', '{"v": 1}'::jsonb, '{}'::jsonb, ${id}::uuid)`
      )
      const viaEnqueue = yield* outcome(() =>
        t.sql`SELECT outbox_enqueue('orders', 'E', 'a', '{"v": 2}'::jsonb, '{}'::jsonb, ${id}::uuid)`
      )
      assert.match(viaEnqueue, /already enqueued with a different payload/)
      const viaInsert = yield* outcome(() =>
        t.sql`INSERT INTO outbox_events (event_id, topic, event_type, aggregate_id, payload)
              VALUES (${id}, 'orders', 'E', 'a', '{"v": 3}')`
      )
      assert.match(viaInsert, /outbox_events_pkey/)
      yield* Layer.build(relayLayer(t.env))
      const entries = yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}orders`, 1))
      yield* Effect.sleep("200 millis")
      const all = yield* promise(() => readStream(t.redis, `${t.prefix}orders`))
      assert.strictEqual(all.length, 1)
      assert.deepStrictEqual(JSON.parse(entries[0]!.fields.payload!), { v: 1 })
    }).pipe(Effect.scoped))

  it.live("publishes SQL-injection strings in every text column verbatim", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("bad-injection")
      yield* Layer.build(relayLayer(t.env))
      const evil = "'); DROP TABLE outbox_events; --"
      yield* promise(() =>
        t.sql`INSERT INTO outbox_events (topic, event_type, aggregate_type, aggregate_id, tenant_id, payload, headers)
              VALUES ('orders', ${evil}, ${evil}, ${evil}, ${evil}, ${t.sql.json({ note: evil })}, ${
          t.sql.json({ x: evil })
        })`
      )
      const [entry] = yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}orders`, 1))
      for (const field of ["event_type", "aggregate_type", "aggregate_id", "tenant_id"]) {
        assert.strictEqual(entry!.fields[field], evil)
      }
      assert.deepStrictEqual(JSON.parse(entry!.fields.payload!), { note: evil })
      assert.deepStrictEqual(JSON.parse(entry!.fields.headers!), { x: evil })
      const [exists] = yield* promise(() => t.sql`SELECT to_regclass('outbox_events') IS NOT NULL AS ok`)
      assert.isTrue(exists!.ok)
    }).pipe(Effect.scoped))

  it.live("dead-letters a 10 MB payload while the events around it arrive", () =>
    Effect.gen(function*() {
      const t = yield* testEnv("bad-huge")
      yield* Layer.build(relayLayer(t.env))
      yield* promise(() =>
        insertEvents(t.sql, [
          { topic: "orders", payload: { seq: 1 } },
          { topic: "orders", payload: { seq: 2, blob: "x".repeat(10 * 1024 * 1024) } },
          { topic: "orders", payload: { seq: 3 } }
        ])
      )
      const entries = yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}orders`, 2, 20_000))
      assert.deepStrictEqual(entries.map((e) => (JSON.parse(e.fields.payload!) as { seq: number }).seq), [1, 3])
      const dead = yield* promise(() =>
        eventually(
          () => t.sql<Array<{ last_error: string }>>`SELECT last_error FROM outbox_events WHERE dead_at IS NOT NULL`,
          (rows) => rows.length === 1,
          10_000
        )
      )
      assert.match(dead[0]!.last_error, /over RELAY_MAX_PAYLOAD_BYTES/)
      const mirrored = yield* promise(() => streamWithAtLeast(t.redis, `{${t.prefix}orders}:dlq`, 1))
      assert.strictEqual(mirrored[0]!.fields.payload, "", "the mirror leaves the oversized payload in Postgres")
      assert.strictEqual(yield* promise(() => drained(t.sql)), 0)
      yield* promise(() => insertEvents(t.sql, [{ topic: "orders", payload: { seq: 4 } }]))
      assert.strictEqual((yield* promise(() => streamWithAtLeast(t.redis, `${t.prefix}orders`, 3))).length, 3)
    }).pipe(Effect.scoped))
})
