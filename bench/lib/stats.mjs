/** Small statistics helpers shared by the bench, the profile and the report. */
export const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return null
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** Nearest-rank percentile of an ascending array (Infinity allowed: undelivered events). */
export const percentile = (sorted, q) => {
  if (sorted.length === 0) return null
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((q / 100) * sorted.length) - 1))
  return sorted[rank]
}

/** The quantiles the report draws the latency CDF from. */
export const cdfPoints = [
  0,
  1,
  2,
  5,
  10,
  15,
  20,
  25,
  30,
  35,
  40,
  45,
  50,
  55,
  60,
  65,
  70,
  75,
  80,
  85,
  90,
  92,
  94,
  95,
  96,
  97,
  98,
  99,
  99.5,
  99.9,
  100
]

export const round = (
  x,
  digits = 2
) => (x === null || x === undefined || !Number.isFinite(x) ? x : Number(x.toFixed(digits)))

export const fmtNum = (x, digits = 0) => {
  if (x === null || x === undefined) return "n/a"
  if (x === Infinity) return "∞"
  if (!Number.isFinite(x)) return String(x)
  return x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })
}

export const fmtMs = (x) => {
  if (x === null || x === undefined) return "n/a"
  if (x === Infinity) return "not delivered"
  if (x >= 1000) return `${(x / 1000).toFixed(2)} s`
  if (x >= 100) return `${x.toFixed(0)} ms`
  if (x >= 10) return `${x.toFixed(1)} ms`
  return `${x.toFixed(2)} ms`
}

/**
 * A Prometheus histogram's cumulative bucket counts, `[[le, count], ...]` in order, read from `/metrics`
 * text; null when the metric is not there (an older build).
 */
export const parseHistogram = (text, name) => {
  const buckets = [...text.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} ([0-9.eE+-]+)$`, "gm"))]
    .map(([, le, count]) => [le === "+Inf" ? Infinity : Number(le), Number(count)])
  return buckets.length ? buckets : null
}

/**
 * Quantile `q` (0-100) in ms of what a histogram observed between two readings, interpolated linearly
 * inside its bucket as Prometheus' histogram_quantile does; null when nothing was observed.
 */
export const histogramQuantile = (before, after, q) => {
  if (!before || !after) return null
  const counts = after.map(([le, count], i) => [le, count - (before[i]?.[1] ?? 0)])
  const total = counts.at(-1)[1]
  if (total <= 0) return null
  const rank = (q / 100) * total
  const i = counts.findIndex(([, count]) => count >= rank)
  const [upper, count] = counts[i]
  const [lower, below] = i > 0 ? counts[i - 1] : [0, 0]
  // Past the last finite bucket: its bound is all that is known.
  if (upper === Infinity) return lower * 1000
  return (lower + ((upper - lower) * (rank - below)) / Math.max(1, count - below)) * 1000
}

/** Per-round ratios a / b (null where either is missing) and their median. */
export const pairedRatios = (as, bs) => {
  const ok = (x) => x !== null && x !== undefined && x > 0 && Number.isFinite(x)
  const perRound = as.map((a, i) => (ok(a) && ok(bs[i]) ? round(a / bs[i], 3) : null))
  return { perRound, median: round(median(perRound.filter((x) => x !== null)), 3) }
}
