/**
 * The chaos suite's producers: several connections writing outbox events in concurrent transactions,
 * honest about what committed.
 *
 * - Aggregates are partitioned among producers, and each producer runs one transaction at a time, so
 *   an aggregate is written by one session at a time: its events' outbox ids (the relay's order)
 *   follow the per-aggregate sequence number carried in the payload.
 * - Every committing transaction also inserts its events into `chaos_ledger` (event_id primary key).
 *   After the run the ledger IS the set of committed events: no guesswork from client-side outcomes.
 * - A transaction whose outcome is unknown (any error, including on COMMIT) is retried with the same
 *   event_ids and sequence numbers. The retry first inserts the ledger rows with ON CONFLICT DO
 *   NOTHING: a unique-index insert waits for a still-running earlier attempt, so it sees exactly
 *   whether that attempt committed (nothing inserted: it did; stop) or not (everything inserted: go
 *   on and insert the outbox rows). Never a second copy of a committed event.
 * - A tenth of the transactions insert the same way and then ROLLBACK on purpose; their event_ids are
 *   recorded and must never reach a stream.
 */
import { randomUUID } from "node:crypto"
import pg from "pg"
import { sleep } from "../support/wait.js"

export const ledgerDdl = `
  CREATE TABLE IF NOT EXISTS chaos_ledger (
    event_id  uuid PRIMARY KEY,
    aggregate int  NOT NULL,
    seq       int  NOT NULL,
    producer  int  NOT NULL,
    UNIQUE (aggregate, seq)
  )`

export interface ProducerOptions {
  readonly url: string
  readonly producers: number
  readonly aggregates: number
  readonly topics: ReadonlyArray<string>
  /** Committed events per producer. */
  readonly eventsPerProducer: number
  readonly maxTxSize: number
  readonly rollbackRatio: number
  /** Pace: spread each producer's quota over about this long (ms). */
  readonly targetDurationMs: number
  /** Give up (fail) after this long. */
  readonly deadline: number
  readonly log: (line: string) => void
}

export interface ProducerStats {
  committedTx: number
  committedEvents: number
  rolledBackTx: number
  /** Attempts that failed with an error (connection lost, server shutting down, ...). */
  failedAttempts: number
  /** Retries that found their earlier attempt had committed after all. */
  resolvedCommitted: number
  /** Retries that found their earlier attempt had not committed. */
  resolvedNotCommitted: number
  errors: Map<string, number>
}

export interface ProductionResult {
  readonly stats: ProducerStats
  /** event_ids of deliberately rolled-back transactions. */
  readonly rolledBack: ReadonlySet<string>
}

/** A broken promise of this test (not a server failure): fail at once. */
class ProducerBug extends Error {}

/**
 * Errors a producer retries: the connection or the server went away (or refused us while starting or
 * stopping), or a client-side timeout. A server error with another SQLSTATE (a constraint, a syntax
 * error) is a bug in this test: fail at once.
 */
export const isTransient = (error: unknown): boolean => {
  if (error instanceof ProducerBug) return false
  const code = String((error as { code?: unknown }).code ?? "")
  if (/^[0-9A-Z]{5}$/.test(code)) return /^(08|57P0[1-3]|53|40001|40P01)/.test(code)
  return true
}

export const aggregateId = (a: number) => `agg-${String(a).padStart(3, "0")}`

const eventSql = (n: number) => {
  const values: Array<string> = []
  for (let i = 0; i < n; i++) {
    const b = i * 5
    values.push(`($${b + 1}::text::uuid, $${b + 2}::text, $${b + 3}::text, $${b + 4}::text, $${b + 5}::text::jsonb)`)
  }
  return `INSERT INTO outbox_events (event_id, topic, event_type, aggregate_id, payload) VALUES ${values.join(", ")}`
}

const ledgerSql = (n: number) => {
  const values: Array<string> = []
  for (let i = 0; i < n; i++) {
    const b = i * 4
    values.push(`($${b + 1}::text::uuid, $${b + 2}::text::int, $${b + 3}::text::int, $${b + 4}::text::int)`)
  }
  return `INSERT INTO chaos_ledger (event_id, aggregate, seq, producer) VALUES ${values.join(", ")}
          ON CONFLICT (event_id) DO NOTHING RETURNING event_id`
}

interface PlannedEvent {
  readonly eventId: string
  readonly aggregate: number
  readonly seq: number
  readonly topic: string
}

export const runProducers = async (options: ProducerOptions): Promise<ProductionResult> => {
  const stats: ProducerStats = {
    committedTx: 0,
    committedEvents: 0,
    rolledBackTx: 0,
    failedAttempts: 0,
    resolvedCommitted: 0,
    resolvedNotCommitted: 0,
    errors: new Map()
  }
  const rolledBack = new Set<string>()
  const noteError = (error: unknown) => {
    const e = error as { code?: string; message?: string }
    const key = `${e.code ?? "?"}: ${(e.message ?? String(error)).slice(0, 80)}`
    const n = (stats.errors.get(key) ?? 0) + 1
    stats.errors.set(key, n)
    if (n === 1) options.log(`producer error (first of its kind): ${key}`)
  }

  const producer = async (p: number) => {
    // One explicit session at a time (node-postgres never reconnects behind our back); after any error
    // it is thrown away and the next attempt opens a new one.
    let client: pg.Client | undefined
    const session = async () => {
      if (client) return client
      const fresh = new pg.Client({
        connectionString: options.url,
        application_name: `chaos-producer-${p}`,
        connectionTimeoutMillis: 3_000,
        query_timeout: 30_000
      })
      fresh.on("error", () => {})
      try {
        await fresh.connect()
      } catch (error) {
        void fresh.end().catch(() => {})
        throw error
      }
      client = fresh
      return fresh
    }
    const discard = () => {
      const old = client
      client = undefined
      void old?.end().catch(() => {})
    }
    /** BEGIN, `body`, then COMMIT or ROLLBACK as it says; any error discards the session. */
    const transaction = async <A>(
      body: (c: pg.Client) => Promise<{ readonly end: "COMMIT" | "ROLLBACK"; readonly value: A }>
    ) => {
      try {
        const c = await session()
        await c.query("BEGIN")
        const { end, value } = await body(c)
        await c.query(end)
        return value
      } catch (error) {
        discard()
        throw error
      }
    }

    const mine = Array.from({ length: options.aggregates }, (_, a) => a).filter((a) => a % options.producers === p)
    const nextSeq = new Map(mine.map((a) => [a, 0]))
    let committed = 0
    const started = Date.now()
    try {
      while (committed < options.eventsPerProducer) {
        if (Date.now() > options.deadline) throw new Error(`producer ${p}: deadline passed at ${committed} events`)
        const rollback = Math.random() < options.rollbackRatio
        const size = Math.min(
          1 + Math.floor(Math.random() * options.maxTxSize),
          rollback ? options.maxTxSize : options.eventsPerProducer - committed
        )
        // Sequence numbers are only consumed by a commit; a rolled-back transaction borrows the next ones.
        const seqs = new Map(nextSeq)
        const events: Array<PlannedEvent> = []
        for (let i = 0; i < size; i++) {
          const aggregate = mine[Math.floor(Math.random() * mine.length)]!
          const seq = seqs.get(aggregate)!
          seqs.set(aggregate, seq + 1)
          events.push({
            eventId: randomUUID(),
            aggregate,
            seq,
            topic: options.topics[Math.floor(Math.random() * options.topics.length)]!
          })
        }
        const outboxParams: Array<string> = []
        const ledgerParams: Array<string> = []
        for (const e of events) {
          outboxParams.push(
            e.eventId,
            e.topic,
            "ChaosEvent",
            aggregateId(e.aggregate),
            JSON.stringify({ aggregate: e.aggregate, seq: e.seq, producer: p })
          )
          ledgerParams.push(e.eventId, String(e.aggregate), String(e.seq), String(p))
        }

        if (rollback) {
          for (const e of events) rolledBack.add(e.eventId)
          try {
            await transaction(async (c) => {
              await c.query(ledgerSql(size), ledgerParams)
              await c.query(eventSql(size), outboxParams)
              return { end: "ROLLBACK", value: undefined }
            })
          } catch (error) {
            // Never committed either way (no COMMIT was sent).
            if (!isTransient(error)) throw error
            stats.failedAttempts++
            noteError(error)
          }
          stats.rolledBackTx++
          continue
        }

        // Commit, retrying until the ledger says it is in (the ledger insert decides, see above).
        let retry = false
        for (let attempt = 0;; attempt++) {
          if (Date.now() > options.deadline) throw new Error(`producer ${p}: deadline passed retrying a transaction`)
          try {
            const outcome = await transaction(async (c) => {
              const inserted = await c.query(ledgerSql(size), ledgerParams)
              if (inserted.rowCount === 0) {
                if (!retry) throw new ProducerBug("fresh event_ids already in the ledger")
                return { end: "ROLLBACK", value: "already" as const }
              }
              if (inserted.rowCount !== size) {
                throw new ProducerBug(
                  `ledger partially present (${inserted.rowCount} of ${size}): transactions are not atomic?`
                )
              }
              await c.query(eventSql(size), outboxParams)
              return { end: "COMMIT", value: "committed" as const }
            })
            if (outcome === "already") stats.resolvedCommitted++
            else if (retry) stats.resolvedNotCommitted++
            break
          } catch (error) {
            if (!isTransient(error)) throw error
            stats.failedAttempts++
            noteError(error)
            retry = true
            await sleep(Math.min(50 * 2 ** attempt, 1_000) * (0.5 + Math.random()))
          }
        }
        for (const [a, s] of seqs) nextSeq.set(a, s)
        committed += size
        stats.committedTx++
        stats.committedEvents += size
        // Pace: stay near committed/quota = elapsed/targetDuration.
        const due = started + (committed / options.eventsPerProducer) * options.targetDurationMs
        const ahead = due - Date.now()
        if (ahead > 0) await sleep(ahead)
      }
    } finally {
      discard()
    }
  }

  await Promise.all(Array.from({ length: options.producers }, (_, p) => producer(p)))
  return { stats, rolledBack }
}
