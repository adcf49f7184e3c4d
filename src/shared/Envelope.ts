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

/** An event as the relay holds it: one string per envelope field (a claimed row has them all). */
export type EnvelopeValues = { readonly [F in EnvelopeField]: string | number }

/** Appends `row`'s envelope values to `out`, in field order (no field names: the script adds them). */
export const pushEnvelopeValues = (out: Array<string>, row: EnvelopeValues): void => {
  for (const field of envelopeFields) out.push(String(row[field]))
}

/** `row`'s envelope as `field, value, ...`, ready for XADD. */
export const envelopeEntry = (row: EnvelopeValues): Array<string> => {
  const out: Array<string> = []
  for (const field of envelopeFields) out.push(field, String(row[field]))
  return out
}
