/**
 * The envelope: the flat fields every stream entry carries, in the order the relay writes them. The
 * relay's publish script gets its XADD field list from here (see `lua/publish.lua`), the dead-letter
 * mirror copies them, and the consumer reads them back, so a field is added or renamed in one place.
 * `payload` and `headers` are JSON text.
 */
export const envelopeFields = [
  "event_id",
  "event_type",
  "topic",
  "aggregate_type",
  "aggregate_id",
  "tenant_id",
  "schema_version",
  "occurred_at",
  "payload",
  "headers"
] as const

export type EnvelopeField = (typeof envelopeFields)[number]

/** An event as the relay holds it: a value per envelope field (a claimed row has them all). */
export type EnvelopeValues = { readonly [F in EnvelopeField]: string | number }

/**
 * Appends `row`'s envelope values to `out`, in field order (no names: the publish script adds them).
 * Compiled once from `envelopeFields` into one `push` of plain property reads: on the publish path, a
 * loop reading the fields by computed name costs several times more per row.
 */
export const pushEnvelopeValues = new Function(
  "out",
  "row",
  `out.push(${envelopeFields.map((field) => `row.${field}`).join(", ")})`
) as (out: Array<string | number>, row: EnvelopeValues) => void

/** `row`'s envelope as `field, value, ...`, ready for XADD. */
export const envelopeEntry = (row: EnvelopeValues): Array<string> => {
  const out: Array<string> = []
  for (const field of envelopeFields) out.push(field, String(row[field]))
  return out
}
