/** Hand-written SVG charts (no chart library): line charts and grouped bar charts, log or linear axes. */

const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
export const palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]

const niceLinearTicks = (min, max, count = 5) => {
  const span = max - min || 1
  const step0 = span / count
  const mag = 10 ** Math.floor(Math.log10(step0))
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= count) ?? 10 * mag
  const ticks = []
  for (let t = Math.ceil(min / step) * step; t <= max + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)))
  return ticks
}
const logTicks = (min, max) => {
  const ticks = []
  for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) {
    for (const m of [1, 2, 5]) {
      const t = m * 10 ** e
      if (t >= min * 0.999 && t <= max * 1.001) ticks.push(t)
    }
  }
  return ticks
}
const fmtTick = (t, unit = "") => {
  const a = Math.abs(t)
  const s = a >= 1e6
    ? `${t / 1e6}M`
    : a >= 1e3
    ? `${t / 1e3}k`
    : a < 1 && a > 0
    ? String(Number(t.toPrecision(2)))
    : String(t)
  return s + unit
}

const axis = ({ min, max, log }) => {
  const lmin = log ? Math.log10(min) : min
  const lmax = log ? Math.log10(max) : max
  return {
    min,
    max,
    log,
    pos: (v, a, b) => {
      const x = log ? Math.log10(Math.max(v, min)) : v
      return a + ((Math.min(Math.max(x, lmin), lmax) - lmin) / (lmax - lmin || 1)) * (b - a)
    },
    ticks: () => (log ? logTicks(min, max) : niceLinearTicks(min, max))
  }
}

const frame = (width, height, title, body) =>
  `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
  `font-family="Helvetica, Arial, sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="${width / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>
${body}
</svg>
`

const legend = (items, x, y) =>
  items.map((it, i) =>
    `<rect x="${x}" y="${y + i * 18 - 9}" width="14" height="10" fill="${it.color}"/><text x="${x + 20}" y="${
      y + i * 18
    }">${esc(it.label)}</text>`
  ).join("\n")

/**
 * series: [{ label, color, points: [[x, y], ...] }]; x/y: { label, log, min, max, unit }.
 */
export const lineChart = ({ title, series, x, y, width = 760, height = 420, note }) => {
  const m = { l: 70, r: 230, t: 40, b: 55 }
  const X = axis(x)
  const Y = axis(y)
  const px = (v) => X.pos(v, m.l, width - m.r)
  const py = (v) => Y.pos(v, height - m.b, m.t)
  const grid = [
    ...X.ticks().map((t) =>
      `<line x1="${px(t)}" x2="${px(t)}" y1="${m.t}" y2="${height - m.b}" stroke="#eee"/><text x="${px(t)}" y="${
        height - m.b + 16
      }" text-anchor="middle">${fmtTick(t, x.unit)}</text>`
    ),
    ...Y.ticks().map((t) =>
      `<line x1="${m.l}" x2="${width - m.r}" y1="${py(t)}" y2="${py(t)}" stroke="#eee"/><text x="${m.l - 6}" y="${
        py(t) + 4
      }" text-anchor="end">${fmtTick(t, y.unit)}</text>`
    )
  ].join("\n")
  const lines = series.map((s) => {
    const d = s.points.filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b)).map(([a, b], i) =>
      `${i ? "L" : "M"}${px(a).toFixed(1)},${py(b).toFixed(1)}`
    ).join(" ")
    return `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${
      s.dash ? ` stroke-dasharray="${s.dash}"` : ""
    }/>`
  }).join("\n")
  const body = `${grid}
<rect x="${m.l}" y="${m.t}" width="${width - m.l - m.r}" height="${height - m.t - m.b}" fill="none" stroke="#999"/>
${lines}
<text x="${(m.l + width - m.r) / 2}" y="${height - 18}" text-anchor="middle">${esc(x.label)}</text>
<text transform="translate(16 ${(m.t + height - m.b) / 2}) rotate(-90)" text-anchor="middle">${esc(y.label)}</text>
${legend(series.map((s) => ({ label: s.label, color: s.color })), width - m.r + 14, m.t + 12)}
${note ? `<text x="${m.l}" y="${height - 2}" font-size="10" fill="#555">${esc(note)}</text>` : ""}`
  return frame(width, height, title, body)
}

/**
 * groups: [{ label, bars: [{ label, color, value, text }] }]; y: { label, log, min, max, unit }.
 */
export const barChart = ({ title, groups, y, width = 760, height = 420, note }) => {
  const m = { l: 70, r: 230, t: 40, b: 60 }
  const Y = axis(y)
  const py = (v) => Y.pos(v, height - m.b, m.t)
  const plotW = width - m.l - m.r
  const gw = plotW / Math.max(1, groups.length)
  const grid = Y.ticks().map((t) =>
    `<line x1="${m.l}" x2="${width - m.r}" y1="${py(t)}" y2="${py(t)}" stroke="#eee"/><text x="${m.l - 6}" y="${
      py(t) + 4
    }" text-anchor="end">${fmtTick(t, y.unit)}</text>`
  ).join("\n")
  const legendItems = new Map()
  const bars = groups.map((g, gi) => {
    const n = g.bars.length
    const bw = Math.min(48, (gw * 0.8) / Math.max(1, n))
    const x0 = m.l + gi * gw + (gw - bw * n) / 2
    const rects = g.bars.map((b, bi) => {
      legendItems.set(b.label, b.color)
      if (!Number.isFinite(b.value) || b.value <= 0) return ""
      const top = py(b.value)
      return `<rect x="${x0 + bi * bw + 1}" y="${top}" width="${bw - 2}" height="${
        height - m.b - top
      }" fill="${b.color}"/>` +
        `<text x="${x0 + bi * bw + bw / 2}" y="${top - 4}" text-anchor="middle" font-size="10">${
          esc(b.text ?? fmtTick(Math.round(b.value)))
        }</text>`
    }).join("\n")
    return `${rects}\n<text x="${m.l + gi * gw + gw / 2}" y="${height - m.b + 16}" text-anchor="middle">${
      esc(g.label)
    }</text>`
  }).join("\n")
  const body = `${grid}
<rect x="${m.l}" y="${m.t}" width="${plotW}" height="${height - m.t - m.b}" fill="none" stroke="#999"/>
${bars}
<text transform="translate(16 ${(m.t + height - m.b) / 2}) rotate(-90)" text-anchor="middle">${esc(y.label)}</text>
${legend([...legendItems].map(([label, color]) => ({ label, color })), width - m.r + 14, m.t + 12)}
${note ? `<text x="${m.l}" y="${height - 6}" font-size="10" fill="#555">${esc(note)}</text>` : ""}`
  return frame(width, height, title, body)
}
