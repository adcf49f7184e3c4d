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
import postgres from "postgres"

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

class Rollback extends Error {}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export const aggregateId = (a: number) => `agg-${String(a).padStart(3, "0")}`

const eventSql = (n: number) => {
  const values: Array<string> = []
  for (let i = 0; i < n; i++) {
    const b = i * 5
    values.push(`($${b + 1}::uuid, $${b + 2}, $${b + 3}, $${b + 4}, $${b + 5}::jsonb)`)
  }
  return `INSERT INTO outbox_events (event_id, topic, event_type, aggregate_id, payload) VALUES ${values.join(", ")}`
}

const ledgerSql = (n: number) => {
  const values: Array<string> = []
  for (let i = 0; i < n; i++) {
    const b = i * 4
    values.push(`($${b + 1}::uuid, $${b + 2}::int, $${b + 3}::int, $${b + 4}::int)`)
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
    stats.errors.set(key, (stats.errors.get(key) ?? 0) + 1)
  }

  const producer = async (p: number) => {
    const sql = postgres(options.url, {
      max: 1,
      connect_timeout: 3,
      idle_timeout: 0,
      max_lifetime: null,
      fetch_types: false,
      onnotice: () => {},
      connection: { application_name: `chaos-producer-${p}` }
    })
    const mine = Array.from({ length: options.aggregates }, (_, a) => a).filter((a) => a % options.producers === p)
    const nextSeq = new Map(mine.map((a) => [a, 0]))
    let committed = 0
    const started = Date.now()
    try {
      while (committed < options.eventsPerProducer) {
        if (Date.now() > options.deadline) throw new Error(`producer ${p}: deadline passed at ${committed} events`)
        const rollback = Math.random() < options.rollbackRatio
        const size = Math.min(1 + Math.floor(Math.random() * options.maxTxSize), rollback ? options.maxTxSize : options.eventsPerProducer - committed)
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
            await sql.begin(async (tx) => {
              await tx.unsafe(ledgerSql(size), ledgerParams)
              await tx.unsafe(eventSql(size), outboxParams)
              throw new Rollback()
            })
          } catch (error) {
            if (!(error instanceof Rollback)) {
              stats.failedAttempts++
              noteError(error)
            }
          }
          stats.rolledBackTx++
          continue
        }

        // Commit, retrying until the ledger says it is in (the ledger insert decides, see above).
        let retry = false
        for (let attempt = 0;; attempt++) {
          if (Date.now() > options.deadline) throw new Error(`producer ${p}: deadline passed retrying a transaction`)
          try {
            const outcome = await sql.begin(async (tx) => {
              const inserted = await tx.unsafe(ledgerSql(size), ledgerParams)
              if (inserted.length === 0) return "already" as const
              if (inserted.length !== size) {
                throw new Error(`ledger partially present (${inserted.length} of ${size}): transactions are not atomic?`)
              }
              await tx.unsafe(eventSql(size), outboxParams)
              return "committed" as const
            })
            if (outcome === "already") {
              if (!retry) throw new Error("fresh event_ids already in the ledger")
              stats.resolvedCommitted++
            } else if (retry) {
              stats.resolvedNotCommitted++
            }
            break
          } catch (error) {
            if ((error as Error).message.includes("ledger partially present") || (error as Error).message.includes("fresh event_ids")) {
              throw error
            }
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
      await sql.end({ timeout: 2 }).catch(() => {})
    }
  }

  await Promise.all(Array.from({ length: options.producers }, (_, p) => producer(p)))
  return { stats, rolledBack }
}
