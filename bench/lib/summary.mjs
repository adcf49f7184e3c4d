/**
 * The results as Markdown tables plus ratios: printed at the end of `npm run bench` and embedded in
 * docs/benchmarks.md by bench/report.mjs. Everything comes from the results JSON.
 */
import { profileTable } from "../profile.mjs"
import { fmtMs, fmtNum } from "./stats.mjs"

const label = (results, name) => results.competitors?.[name]?.label ?? name
const table = (header, rows) =>
  [
    `| ${header.join(" | ")} |`,
    `|${header.map((h, i) => (i === 0 ? "---" : "---:")).join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`)
  ].join("\n")
const ratio = (a, b) =>
  a === Infinity && Number.isFinite(b)
    ? "∞× (not delivered)"
    : a && b && Number.isFinite(a) && Number.isFinite(b)
    ? `${(a / b).toFixed(a / b >= 10 ? 0 : 2)}×`
    : "n/a"

export const drainTable = (results) => {
  const rows = results.drain.map((d) => [
    label(results, d.competitor),
    fmtNum(d.backlog),
    d.mode === "window" || d.mode === "capped"
      ? `${fmtNum(d.delivered)}${d.complete ? "" : ` (${d.capSec} s cap)`}`
      : fmtNum(d.delivered),
    `**${fmtNum(d.rate)}**`,
    d.rates?.length > 1 ? d.rates.map((r) => fmtNum(r)).join(" / ") : "",
    d.startupSeconds ?? "n/a",
    fmtNum(d.rssMaxMiB, 0),
    fmtNum(d.cpuMicrosPerEvent, 0),
    fmtNum(d.serverCpuMicrosPerEvent, 0),
    d.error ? "ERROR" : d.leftInTable > 0 && d.complete ? `${d.leftInTable} rows left` : ""
  ])
  return table([
    "competitor",
    "backlog",
    "delivered",
    "events/s (median)",
    "runs (events/s)",
    "startup s",
    "RSS max MiB",
    "competitor CPU µs/event",
    "Postgres+Redis CPU µs/event",
    "note"
  ], rows)
}

/** A latency percentile; JSON turns Infinity (not delivered) into null, so undo that when events were missing. */
export const latencyValue = (row, key) =>
  (row[key] === null || row[key] === undefined) && row.missing ? Infinity : row[key]

export const latencyTable = (results) => {
  const rows = results.latency.filter((l) => !l.error).map((l) => [
    label(results, l.competitor),
    `${l.rate}/s`,
    l.fromCommitP50 === undefined ? "n/a" : fmtMs(latencyValue(l, "fromCommitP50")),
    l.fromCommitP99 === undefined ? "n/a" : fmtMs(latencyValue(l, "fromCommitP99")),
    l.relayHistogramP50 === undefined || l.relayHistogramP50 === null
      ? "-"
      : `${fmtMs(l.relayHistogramP50)} / ${fmtMs(l.relayHistogramP99)}`,
    fmtMs(latencyValue(l, "p50")),
    fmtMs(latencyValue(l, "p90")),
    fmtMs(latencyValue(l, "p99")),
    fmtMs(latencyValue(l, "max")),
    `${fmtNum(l.achievedRate)}/s`,
    `${fmtNum(l.delivered)}/${fmtNum(l.sent - l.failed)}${
      l.missing ? ` (${fmtNum(l.missing)} not within ${l.waitAfterSec} s)` : ""
    }`,
    l.commitP50 !== undefined ? `${fmtMs(l.commitP50)} / ${fmtMs(l.commitP99)}` : "n/a"
  ])
  return table([
    "competitor",
    "target rate",
    "p50 from commit",
    "p99 from commit",
    "relay's own estimate p50 / p99",
    "p50",
    "p90",
    "p99",
    "max",
    "producer achieved",
    "delivered",
    "producer's own statement p50 / p99"
  ], rows)
}

export const overheadTable = (results) => {
  const groups = new Map()
  for (const o of results.overhead.filter((o) => !o.error)) {
    const key = `${o.competitor}/${o.trigger}`
    if (!groups.has(key)) groups.set(key, { competitor: o.competitor, trigger: o.trigger, byWriters: {} })
    groups.get(key).byWriters[o.writers] = o
  }
  const writers = [...new Set(results.overhead.filter((o) => !o.error).map((o) => o.writers))].sort((a, b) => a - b)
  const rows = [...groups.values()].map((g) => [
    label(results, g.competitor),
    g.competitor.startsWith("relay")
      ? (g.trigger === "off-polling" ? "trigger off, relay polling every 10 ms" : `trigger ${g.trigger}`)
      : g.competitor === "floor"
      ? (g.trigger === "on" ? "trigger on, NOTIFY on every commit" : "trigger off")
      : g.competitor.startsWith("graphile")
      ? "add_job (NOTIFY built in)"
      : "plain INSERT, no trigger",
    ...writers.map((w) => (g.byWriters[w] ? `${fmtNum(g.byWriters[w].median)}` : "n/a"))
  ])
  return table([
    "competitor",
    "producer statement",
    ...writers.map((w) => `${w} writer${w > 1 ? "s" : ""} (commits/s)`)
  ], rows)
}

/** A soak row's name: the competitor, plus the variant (e.g. the relay with RELAY_RETENTION). */
export const soakLabel = (results, s) => `${label(results, s.competitor)}${s.variant ? ` (${s.variant})` : ""}`

export const soakTable = (results) => {
  const rows = results.soak.filter((s) => s.samples?.length).map((s) => {
    const last = s.samples.filter((x) => !x.final).at(-1)
    const fin = s.samples.at(-1)
    const max = (f) => Math.max(...s.samples.map(f).filter((x) => Number.isFinite(x)))
    const claims = s.samples.map((x) => x.claimMeanMs).filter((x) => x !== null && x !== undefined)
    const idx = Object.entries(last.indexes ?? {}).map(([n, b]) =>
      `${n.replace(/^.*\./, "")} ${fmtNum(b / 2 ** 20, 1)}`
    ).join(", ")
    return [
      soakLabel(results, s),
      `${fmtNum(s.producer?.tps)}/s × ${s.seconds} s`,
      `${fmtNum(s.samples[0].totalBytes / 2 ** 20, 2)} → ${fmtNum(last.totalBytes / 2 ** 20, 2)} (max ${
        fmtNum(max((x) => x.totalBytes) / 2 ** 20, 2)
      })`,
      idx,
      fmtNum(max((x) => x.deadTuples)),
      fmtNum(max((x) => x.backlog)),
      claims.length ? `${fmtMs(claims[0])} → ${fmtMs(claims.at(-1))} (max ${fmtMs(Math.max(...claims))})` : "n/a",
      fmtNum(fin.backlog),
      s.cpuSeconds ? `${fmtNum(s.cpuSeconds.relay, 1)} / ${fmtNum(s.cpuSeconds.servers, 1)}` : "n/a"
    ]
  })
  return table([
    "competitor",
    "produced",
    "table+indexes MiB start → end",
    "indexes at end (MiB)",
    "max dead tuples",
    "max backlog",
    "claim statement mean",
    "backlog after",
    "CPU s: relay / Postgres+Redis"
  ], rows)
}

export const ratios = (results) => {
  const lines = []
  const drain = (c, n) => results.drain.find((d) => d.competitor === c && d.backlog === n && !d.error)
  const relayDrains = results.drain.filter((d) => d.competitor === "relay" && d.rate)
  for (const r of relayDrains) {
    for (const other of ["graphile", "graphile-default"]) {
      const o = drain(other, r.backlog)
      if (o?.rate) {
        lines.push(
          `- Drain ${fmtNum(r.backlog)}: relay ${ratio(r.rate, o.rate)} the rate of ${label(results, other)}${
            o.complete ? "" : " (capped run)"
          }`
        )
      }
    }
  }
  for (const r of relayDrains) {
    const f = drain("floor", r.backlog)
    if (f?.rate) {
      lines.push(
        `- Drain ${fmtNum(r.backlog)}: relay ${ratio(r.rate, f.rate)} the rate of the least-work relay (yardstick)`
      )
    }
  }
  const classic = results.drain.find((d) => d.competitor === "classic" && d.rate)
  if (classic && relayDrains.length) {
    lines.push(
      `- Drain: relay (${fmtNum(relayDrains[0].backlog)} backlog) ${
        ratio(relayDrains[0].rate, classic.rate)
      } the rate of the classic poller (measured on a ${fmtNum(classic.backlog)} backlog, ${classic.capSec} s window)`
    )
  }
  for (const c of ["relay", "graphile"]) {
    const small = results.drain.filter((d) => d.competitor === c && d.rate && d.complete).sort((a, b) =>
      a.backlog - b.backlog
    )
    if (small.length >= 2) {
      lines.push(
        `- ${label(results, c)}: drain rate at ${fmtNum(small.at(-1).backlog)} is ${
          ratio(small.at(-1).rate, small[0].rate)
        } the rate at ${fmtNum(small[0].backlog)}`
      )
    }
  }
  const lat = (c, rate) => results.latency.find((l) => l.competitor === c && l.rate === rate && !l.error)
  for (const rate of [...new Set(results.latency.filter((l) => l.rate).map((l) => l.rate))]) {
    const r = lat("relay", rate)
    if (!r) continue
    for (const other of ["graphile", "graphile-default", "classic", "floor"]) {
      const o = lat(other, rate)
      if (o) {
        const fromCommit = o.fromCommitP50 === undefined || r.fromCommitP50 === undefined
          ? ""
          : `; from commit, relay / ${label(results, other)}: p50 ${
            ratio(latencyValue(r, "fromCommitP50"), latencyValue(o, "fromCommitP50"))
          }, p99 ${ratio(latencyValue(r, "fromCommitP99"), latencyValue(o, "fromCommitP99"))}`
        lines.push(
          `- Latency @${rate}/s: ${label(results, other)} p50 ${
            ratio(latencyValue(o, "p50"), latencyValue(r, "p50"))
          },` +
            ` p99 ${ratio(latencyValue(o, "p99"), latencyValue(r, "p99"))} the relay's${fromCommit}`
        )
      }
    }
  }
  const overhead = (c, w, t) => results.overhead.find((o) => o.competitor === c && o.writers === w && o.trigger === t)
  const ov = (c, w, t) => overhead(c, w, t)?.median
  for (const w of [...new Set(results.overhead.filter((o) => o.writers).map((o) => o.writers))]) {
    const on = ov("relay", w, "on")
    const off = ov("relay", w, "off")
    const parts = []
    if (on && off) parts.push(`trigger on/off ${ratio(on, off)}`)
    const offPolling = ov("relay", w, "off-polling")
    if (on && offPolling) {
      // The rounds ran in turn (on, off, off-polling for each writer count), so each round's ratio
      // compares runs a few seconds apart; their median is less exposed to a drifting machine.
      const [a, b] = [overhead("relay", w, "on")?.tps ?? [], overhead("relay", w, "off-polling")?.tps ?? []]
      const paired = a.length === b.length && a.length > 1
        ? a.map((x, i) => x / b[i]).sort((x, y) => x - y)
        : []
      const perRound = paired.length
        ? ` (per round ${paired.map((x) => x.toFixed(2)).join(", ")}; median ${
          paired[Math.floor(paired.length / 2)].toFixed(2)
        }×)`
        : ""
      parts.push(`trigger on / trigger off with the relay polling every 10 ms ${ratio(on, offPolling)}${perRound}`)
    }
    const g = ov("graphile", w, "n/a")
    if (on && g) parts.push(`relay-table INSERT vs graphile add_job ${ratio(on, g)}`)
    const f = ov("floor", w, "on")
    if (on && f) parts.push(`vs NOTIFY on every commit ${ratio(on, f)}`)
    const cl = ov("classic", w, "n/a")
    if (on && cl) parts.push(`vs classic plain INSERT ${ratio(on, cl)}`)
    if (parts.length) lines.push(`- Producer commits/s at ${w} writer${w > 1 ? "s" : ""}: ${parts.join("; ")}`)
  }
  return lines.join("\n")
}

/**
 * A/B runs (--baseline): each round's ratio this build / the baseline, for the drain rate (above 1:
 * this build drains faster) and the latency percentiles (below 1: this build is quicker), and the median.
 */
export const abTable = (results) => {
  if (!results.ab) return ""
  const rows = []
  const cells = (ratios) => ratios.map((x) => (x === null ? "n/a" : x.toFixed(3)))
  const median = (x) => (x === null ? "n/a" : `**${x.toFixed(3)}**`)
  for (const d of results.ab.drain) {
    rows.push([`drain ${fmtNum(d.backlog)}: events/s`, ...cells(d.ratio), median(d.medianRatio)])
  }
  for (const l of results.ab.latency) {
    for (const key of ["p50", "p99"]) {
      rows.push([`latency @${l.rate}/s: ${key}`, ...cells(l[key].ratio), median(l[key].medianRatio)])
    }
  }
  const rounds = Math.max(0, ...rows.map((r) => r.length - 2))
  const header = ["this build / baseline", ...Array.from({ length: rounds }, (_, i) => `round ${i + 1}`), "median"]
  return table(header, rows.map((r) => [...r.slice(0, -1), ...Array(rounds - (r.length - 2)).fill(""), r.at(-1)]))
}

/** enqueueMany against a hand-written multi-row INSERT, per round and the medians. */
const enqueueTable = (e) =>
  [
    "| | enqueueMany | hand-written INSERT | ratio |",
    "|---|---:|---:|---:|",
    ...e.rounds.map((r, i) =>
      `| round ${i + 1} | ${fmtNum(r.enqueueMany)} | ${fmtNum(r.handWritten)} | ${
        (r.enqueueMany / r.handWritten).toFixed(2)
      } |`
    ),
    `| median of ${e.rounds.length} (${fmtNum(e.events)} events each) | ${fmtNum(e.enqueueManyPerSecond)} | ` +
    `${fmtNum(e.handWrittenPerSecond)} | ${e.ratio.toFixed(2)} |`
  ].join("\n")

/** The consumer scenario: each row's messages/s per round, its median, and its per-round ratio to least-work. */
export const consumerTable = (c) => {
  const rounds = c.rows[0]?.rates.length ?? 0
  const header = [
    "consumer",
    "settings",
    ...Array.from({ length: rounds }, (_, i) => `round ${i + 1}`),
    "median msg/s",
    "/ least-work per round",
    "median ratio",
    "CPU µs/msg",
    "GC ms"
  ]
  return table(
    header,
    c.rows.map((r) => [
      r.name,
      r.settings,
      ...r.rates.map((x) => fmtNum(x)),
      `**${fmtNum(r.rate)}**`,
      r.ratios.map((x) => x.toFixed(2)).join(" / "),
      `**${r.medianRatio.toFixed(2)}×**`,
      fmtNum(r.cpuMicrosPerMessage, 1),
      fmtNum(r.gcMillis)
    ])
  )
}

/** The cluster scenario: drain rates on one Redis and on the cluster per round, and their ratio. */
export const clusterTable = (c) =>
  table(
    ["Redis", ...c.single.rates.map((_, i) => `round ${i + 1}`), "median ev/s"],
    [
      ["one Redis", ...c.single.rates.map((x) => fmtNum(x)), `**${fmtNum(c.single.median)}**`],
      [`cluster, ${c.masters} masters`, ...c.cluster.rates.map((x) => fmtNum(x)), `**${fmtNum(c.cluster.median)}**`],
      ["cluster / one", ...c.ratios.map((x) => (x === null ? "-" : x.toFixed(2))), `**${c.medianRatio.toFixed(2)}×**`]
    ]
  )

/**
 * The steady scenario: per rate, each competitor's CPU µs per event relayed (its process, and Postgres +
 * Redis) per round and the median, then the relay's per-round ratios to the least-work relay and the baseline.
 */
export const steadyTable = (results) => {
  const s = results.steady
  const perRound = (turns, key) =>
    turns.map((t) => (t.error ? "err" : `${fmtNum(t[key], 0)}${t.profiled ? " (prof)" : ""}`)).join(" / ")
  const ratioCells = (r) => r.perRound.map((x) => (x === null ? "-" : x.toFixed(2))).join(" / ")
  const rows = s.rates.flatMap((r) => [
    ...s.group.map((n) => {
      const turns = r.turns[n]
      const committed = turns.reduce((a, t) => a + (t.committed || 0), 0)
      const delivered = turns.reduce((a, t) => a + (t.delivered || 0), 0)
      return [
        `${fmtNum(r.rate)}/s`,
        label(results, n),
        perRound(turns, "cpuMicrosPerEvent"),
        `**${fmtNum(r.medians[n].cpuMicrosPerEvent, 0)}**`,
        perRound(turns, "serverCpuMicrosPerEvent"),
        `**${fmtNum(r.medians[n].serverCpuMicrosPerEvent, 0)}**`,
        fmtNum(r.medians[n].achievedRate),
        `${fmtNum(delivered)}/${fmtNum(committed)}${r.medians[n].allDelivered ? "" : " NOT ALL"}`
      ]
    }),
    ...r.ratios.map((x) => [
      `${fmtNum(r.rate)}/s`,
      `relay / ${label(results, x.to)}`,
      ratioCells(x.cpu),
      `**${x.cpu.median?.toFixed(2) ?? "n/a"}×**`,
      ratioCells(x.server),
      `**${x.server.median?.toFixed(2) ?? "n/a"}×**`,
      "",
      ""
    ])
  ])
  return table([
    "rate",
    "competitor",
    "CPU µs/event per round",
    "median",
    "Postgres+Redis µs/event per round",
    "median",
    "producers ev/s",
    "delivered/committed"
  ], rows)
}

/** The relay against the least-work relay, taking turns round by round: per-round ratios and medians. */
export const yardstickTable = (y) => {
  const rows = [
    ...y.drain.map((d) => [`drain ${fmtNum(d.backlog)} (events/s)`, d.ratio.join(" / "), `**${d.medianRatio}×**`]),
    ...y.latency.flatMap((l) =>
      ["fromCommitP50", "fromCommitP99"].map((key) => [
        `${key === "fromCommitP50" ? "p50" : "p99"} from commit @${l.rate}/s`,
        l[key].ratio.join(" / "),
        `**${l[key].medianRatio}×**`
      ])
    )
  ]
  return table(["relay / least-work relay", "per round", "median"], rows)
}

export const summaryTable = (results) => {
  const parts = []
  if (results.drain.length) parts.push(`### Backlog drain\n\n${drainTable(results)}`)
  if (results.latency.length) parts.push(`### Latency (producer COMMIT → consumer XREAD)\n\n${latencyTable(results)}`)
  if (results.overhead.length) {
    parts.push(`### Producer overhead (pgbench, single-row transactions, relay running)\n\n${overheadTable(results)}`)
  }
  if (results.soak.length) parts.push(`### Table health (soak)\n\n${soakTable(results)}`)
  if (results.profile?.breakdown) parts.push(`### Relay time per event (µs)\n\n${profileTable(results.profile)}`)
  if (results.enqueue) parts.push(`### Producer helper (events/s, batches of 100)\n\n${enqueueTable(results.enqueue)}`)
  if (results.consumer) {
    parts.push(
      `### Consumer (${fmtNum(results.consumer.messages)} messages, no-op handler)\n\n${
        consumerTable(results.consumer)
      }`
    )
  }
  if (results.cluster) {
    parts.push(
      `### Redis Cluster (drain of ${fmtNum(results.cluster.events)} events over ${results.cluster.topics} topics)\n\n${
        clusterTable(results.cluster)
      }`
    )
  }
  if (results.steady?.rates.length) {
    const { clients, seconds } = results.steady
    parts.push(
      `### Steady rate: CPU per event relayed (pgbench -R, ${clients} clients, ${seconds} s per turn;` +
        ` (prof): under --cpu-prof, not in the median)\n\n${steadyTable(results)}`
    )
  }
  if (results.yardstick && (results.yardstick.drain.length || results.yardstick.latency.length)) {
    parts.push(`### Relay / least-work relay, taking turns round by round\n\n${yardstickTable(results.yardstick)}`)
  }
  const r = ratios(results)
  if (r) parts.push(`### Ratios\n\n${r}`)
  if (results.ab && (results.ab.drain.length || results.ab.latency.length)) {
    const title = `${label(results, "relay")} / ${label(results, "relay-baseline")}, taking turns round by round`
    parts.push(
      `### A/B: ${title}\n\nBaseline: ${results.meta.baseline?.dir ?? "n/a"}. ` +
        `Drain: above 1 this build is faster; latency: below 1 it is quicker.\n\n${abTable(results)}`
    )
  }
  if (results.errors?.length) {
    parts.push(`### Errors\n\n${results.errors.map((e) => `- ${e.where}: ${e.message.split("\n")[0]}`).join("\n")}`)
  }
  return parts.join("\n\n")
}
