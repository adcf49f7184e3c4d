/**
 * The chaos suite's final accounting: the ledger (what committed) against the streams (what was
 * published) and the outbox (what is left or dead).
 */
import type { Redis } from "ioredis"

export interface LedgerRow {
  readonly event_id: string
  readonly aggregate: number
  readonly seq: number
}

export interface StreamEntry {
  readonly stream: string
  readonly id: string
  readonly fields: Record<string, string>
}

/** Every entry of `key`, oldest first, read in pages. */
export const readWholeStream = async (redis: Redis, key: string, page = 5_000): Promise<Array<StreamEntry>> => {
  const out: Array<StreamEntry> = []
  let start = "-"
  for (;;) {
    const chunk = await redis.xrange(key, start, "+", "COUNT", page)
    for (const [id, flat] of chunk) {
      const fields: Record<string, string> = {}
      for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!
      out.push({ stream: key, id, fields })
    }
    if (chunk.length < page) return out
    start = `(${chunk[chunk.length - 1]![0]}`
  }
}

/** Keys matching `pattern` (SCAN, never KEYS). */
export const scanKeys = async (redis: Redis, pattern: string): Promise<Array<string>> => {
  const keys = new Set<string>()
  let cursor = "0"
  do {
    const [next, batch] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000)
    cursor = next
    for (const k of batch) keys.add(k)
  } while (cursor !== "0")
  return [...keys].sort()
}

export interface Accounting {
  /** Committed (ledger) events missing from every stream. */
  readonly lost: number
  /** Stream entries beyond the first per event_id. */
  readonly duplicates: number
  /** Entries whose per-aggregate sequence is not above the previous one of that aggregate in that stream. */
  readonly outOfOrder: number
  /** Entries of deliberately rolled-back transactions. */
  readonly rolledBackPublished: number
  /** Entries whose event_id is in neither the ledger nor the rolled-back set. */
  readonly unknown: number
  /** Entries whose payload, topic or aggregate disagree with the ledger. */
  readonly mismatched: number
  readonly entries: number
  readonly committed: number
  /** A few examples per kind of problem, for the report. */
  readonly examples: Record<string, Array<string>>
}

export const account = (
  ledger: ReadonlyArray<LedgerRow>,
  rolledBack: ReadonlySet<string>,
  entries: ReadonlyArray<StreamEntry>,
  prefix: string,
  aggregateIdOf: (aggregate: number) => string,
  /** Stream entry ids are Redis clock milliseconds: examples show them relative to this. */
  t0 = 0
): Accounting => {
  const at = (entry: StreamEntry) =>
    `${entry.stream} ${entry.id} (+${((Number(entry.id.split("-")[0]) - t0) / 1000).toFixed(1)}s)`
  const byId = new Map(ledger.map((row) => [row.event_id, row]))
  const seen = new Map<string, number>()
  const lastSeq = new Map<string, number>()
  const examples: Record<string, Array<string>> = {}
  const example = (kind: string, text: string) => {
    const list = (examples[kind] ??= [])
    if (list.length < 5) list.push(text)
  }
  let duplicates = 0
  let outOfOrder = 0
  let rolledBackPublished = 0
  let unknown = 0
  let mismatched = 0
  for (const entry of entries) {
    const eventId = entry.fields.event_id ?? ""
    const count = (seen.get(eventId) ?? 0) + 1
    seen.set(eventId, count)
    if (count > 1) {
      duplicates++
      example("duplicate", `${at(entry)} event_id=${eventId} (copy ${count})`)
    }
    const row = byId.get(eventId)
    if (!row) {
      if (rolledBack.has(eventId)) {
        rolledBackPublished++
        example("rolledBack", `${at(entry)} event_id=${eventId}`)
      } else {
        unknown++
        example("unknown", `${at(entry)} event_id=${eventId}`)
      }
      continue
    }
    let payload: { aggregate?: number; seq?: number } = {}
    try {
      payload = JSON.parse(entry.fields.payload ?? "") as typeof payload
    } catch {
      // counted below
    }
    if (
      payload.aggregate !== row.aggregate || payload.seq !== row.seq ||
      entry.fields.aggregate_id !== aggregateIdOf(row.aggregate) ||
      entry.stream !== `${prefix}${entry.fields.topic ?? ""}`
    ) {
      mismatched++
      example("mismatch", `${at(entry)} event_id=${eventId} payload=${entry.fields.payload}`)
    }
    if (count > 1) continue
    const key = `${entry.stream}\u0000${row.aggregate}`
    const previous = lastSeq.get(key)
    if (previous !== undefined && row.seq <= previous) {
      outOfOrder++
      example("outOfOrder", `${at(entry)} aggregate=${row.aggregate} seq=${row.seq} after seq=${previous}`)
    }
    lastSeq.set(key, Math.max(previous ?? -1, row.seq))
  }
  let lost = 0
  for (const row of ledger) {
    if (!seen.has(row.event_id)) {
      lost++
      example("lost", `event_id=${row.event_id} aggregate=${row.aggregate} seq=${row.seq}`)
    }
  }
  return {
    lost,
    duplicates,
    outOfOrder,
    rolledBackPublished,
    unknown,
    mismatched,
    entries: entries.length,
    committed: ledger.length,
    examples
  }
}
