#!/usr/bin/env node
/**
 * Writes docs/benchmarks.md and docs/bench-*.svg from a results file of `npm run bench`
 * (default bench/results/latest.json). Every figure in the generated part comes from that JSON; the
 * page's hand-written rest, below the end-of-report marker line, is kept as it is.
 *
 *   node bench/report.mjs [bench/cited/<file>.json | bench/results/<file>.json]
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { basename, join, relative } from "node:path"
import { root } from "./lib/competitors.mjs"
import { fmtNum } from "./lib/stats.mjs"
import {
  abTable,
  clusterTable,
  consumerTable,
  drainTable,
  latencyTable,
  overheadTable,
  ratios,
  soakTable,
  steadyTable
} from "./lib/summary.mjs"
import { barChart, lineChart, palette } from "./lib/svg.mjs"
import { profileTable } from "./profile.mjs"

/** Everything below this line in docs/benchmarks.md is written by hand and survives regeneration. */
const endMarker = "<!-- end of generated report: bench/report.mjs keeps everything below this line -->"

const file = process.argv[2] ?? join(root, "bench", "results", "latest.json")
const results = JSON.parse(readFileSync(file, "utf8"))
const docs = join(root, "docs")
mkdirSync(docs, { recursive: true })

const order = ["relay", "graphile", "graphile-default", "classic", "floor", "relay-baseline"]
const color = (name) => palette[order.indexOf(name)] ?? "#333"
const label = (name) => results.competitors?.[name]?.label ?? name
const charts = []
const chart = (name, svg, alt) => {
  writeFileSync(join(docs, name), svg)
  charts.push(name)
  return `![${alt}](${name})`
}

// ------------------------------------------------------------------------------------------ charts
const latencyCharts = [...new Set(results.latency.filter((l) => l.rate).map((l) => l.rate))].map((rate) => {
  const rows = results.latency.filter((l) => l.rate === rate && l.cdf)
  const finite = rows.flatMap((l) => l.cdf.map(([, v]) => v)).filter((v) => Number.isFinite(v) && v > 0)
  const min = Math.max(0.1, 10 ** Math.floor(Math.log10(Math.min(...finite))))
  const max = 10 ** Math.ceil(Math.log10(Math.max(...finite)))
  return chart(
    `bench-latency-${rate}.svg`,
    lineChart({
      title: `Latency distribution at ${rate} events/s (producer COMMIT → XREAD receipt)`,
      series: rows.map((l) => ({
        label: `${label(l.competitor)}${l.missing ? " *" : ""}`,
        color: color(l.competitor),
        points: l.cdf.map(([q, v]) => [v, q])
      })),
      x: { label: "latency (ms, log scale)", log: true, min, max },
      y: { label: "percentile of events", min: 0, max: 100 },
      note: `${results.meta.config.latencySec} s per run; * line ends where events were not delivered within ` +
        `${results.meta.config.latencyDrainWaitSec} s after the run; from ${basename(file)}`
    }),
    `latency CDF at ${rate}/s`
  )
})

const drainChart = (() => {
  const rows = results.drain.filter((d) => d.rate)
  if (!rows.length) return ""
  const groupKey = (d) => `${fmtNum(d.backlog)} backlog${d.complete ? "" : ` (${d.capSec} s cap)`}`
  const sizes = [...new Set(rows.map((d) => d.backlog))].sort((a, b) => a - b)
  const groups = sizes.map((n) => ({
    label: `${fmtNum(n)} backlog`,
    bars: rows.filter((d) => d.backlog === n).sort((a, b) => order.indexOf(a.competitor) - order.indexOf(b.competitor))
      .map((d) => ({
        label: label(d.competitor),
        color: color(d.competitor),
        value: d.rate,
        text: `${fmtNum(d.rate)}${d.complete ? "" : "*"}`
      }))
  }))
  void groupKey
  const values = rows.map((d) => d.rate)
  return chart(
    "bench-drain.svg",
    barChart({
      title: "Backlog drain throughput (events/s, log scale)",
      groups,
      y: {
        label: "events/s",
        log: true,
        min: 10 ** Math.floor(Math.log10(Math.min(...values))),
        max: 10 ** Math.ceil(Math.log10(Math.max(...values)) + 0.05)
      },
      note: "* did not finish within its time cap: rate over the events it delivered"
    }),
    "drain throughput by backlog size"
  )
})()

const overheadChart = (() => {
  const rows = results.overhead.filter((o) => o.median)
  if (!rows.length) return ""
  const writers = [...new Set(rows.map((o) => o.writers))].sort((a, b) => a - b)
  const kinds = [
    { key: (o) => o.competitor === "relay" && o.trigger === "on", label: "relay table, trigger on", color: palette[0] },
    {
      key: (o) => o.competitor === "relay" && o.trigger === "off",
      label: "relay table, trigger off",
      color: "#9ecae1"
    },
    {
      key: (o) => o.competitor === "relay" && o.trigger === "off-polling",
      label: "relay table, trigger off, relay polling every 10 ms",
      color: "#6baed6"
    },
    {
      key: (o) => o.competitor === "floor" && o.trigger === "on",
      label: "relay table, NOTIFY on every commit (least-work relay)",
      color: palette[4]
    },
    { key: (o) => o.competitor === "graphile", label: "graphile add_job", color: palette[1] },
    { key: (o) => o.competitor === "classic", label: "classic plain INSERT", color: palette[3] }
  ]
  return chart(
    "bench-overhead.svg",
    barChart({
      title: "Producer commits/s (single-row transactions, relay running)",
      groups: writers.map((w) => ({
        label: `${w} writer${w > 1 ? "s" : ""}`,
        bars: kinds.map((k) => ({
          label: k.label,
          color: k.color,
          value: rows.find((o) => o.writers === w && k.key(o))?.median
        }))
      })),
      y: { label: "commits/s", min: 0, max: Math.max(...rows.map((o) => o.median)) * 1.15 }
    }),
    "producer commits per second"
  )
})()

const soakOnlyNote = (() => {
  const soaked = new Set(results.soak.map((x) => x.competitor))
  const skipped = Object.keys(results.competitors ?? {}).filter((n) => n !== "graphile-default" && !soaked.has(n))
  return results.soak.length && skipped.length
    ? `\n  This run soaked ${[...soaked].map((n) => label(n)).join(", ")} only (\`--soak-only\`).`
    : ""
})()
const soakName = (s) => `${label(s.competitor)}${s.variant ? ` (${s.variant})` : ""}`
const soakColor = (s, i) => (s.variant ? palette[(i + 3) % palette.length] : color(s.competitor))
const soakCharts = (() => {
  const rows = results.soak.filter((s) => s.samples?.length > 1)
  if (!rows.length) return []
  const pts = (s, f) => s.samples.filter((x) => !x.final).map((x) => [x.t, f(x)])
  const maxT = Math.max(...rows.flatMap((s) => s.samples.map((x) => x.t)))
  const size = chart(
    "bench-soak-size.svg",
    lineChart({
      title: `Table + indexes size under ${fmtNum(results.soak[0].rate)} events/s`,
      series: rows.map((s, i) => ({
        label: soakName(s),
        color: soakColor(s, i),
        points: pts(s, (x) => x.totalBytes / 2 ** 20)
      })),
      x: { label: "seconds", min: 0, max: maxT },
      y: {
        label: "MiB (pg_total_relation_size)",
        min: 0,
        max: Math.max(1, ...rows.flatMap((s) => s.samples.map((x) => x.totalBytes / 2 ** 20))) * 1.1
      }
    }),
    "table size over time"
  )
  const claims = rows.flatMap((s) => s.samples.map((x) => x.claimMeanMs)).filter((v) => Number.isFinite(v) && v > 0)
  const claim = claims.length
    ? chart(
      "bench-soak-claim.svg",
      lineChart({
        title: "Claim statement mean execution time (pg_stat_statements, per interval)",
        series: rows.map((s, i) => ({
          label: soakName(s),
          color: soakColor(s, i),
          points: pts(s, (x) => x.claimMeanMs)
        })),
        x: { label: "seconds", min: 0, max: maxT },
        y: {
          label: "ms per call (log)",
          log: true,
          min: 10 ** Math.floor(Math.log10(Math.min(...claims))),
          max: 10 ** Math.ceil(Math.log10(Math.max(...claims)))
        }
      }),
      "claim latency over time"
    )
    : ""
  return [size, claim].filter(Boolean)
})()

const profileChart = (() => {
  const b = results.profile?.breakdown
  if (!b) return ""
  const parts = [
    ["claim", "claim", palette[0]],
    ["publish", "publish (Lua)", palette[1]],
    ["commit", "COMMIT", palette[2]],
    ["runtimeOverhead", "runtime overhead", palette[3]],
    ["wholeBatch", "whole batch", "#555"]
  ]
  return chart(
    "bench-profile.svg",
    barChart({
      title: "outbox-relay: µs per event, batches of 1,000",
      groups: b.map((r) => ({
        label: `${r.streams} stream${r.streams > 1 ? "s" : ""}`,
        bars: parts.map(([k, l, c]) => ({ label: l, color: c, value: r[k], text: String(r[k]) }))
      })),
      y: {
        label: "µs per event",
        min: 0,
        max: Math.max(...b.map((r) => r.wholeBatch ?? r.claim + r.publish + r.commit)) * 1.2
      }
    }),
    "time per event"
  )
})()

// ------------------------------------------------------------------------------------------ document
const m = results.meta
const c = m.config
const competitorsList = Object.entries(results.competitors).map(([name, x]) =>
  `- **${x.label}** (\`${name}\`): ${x.settings}`
).join("\n")
const drainNote = (() => {
  const classic = results.drain.find((d) => d.competitor === "classic")
  const gd = results.drain.find((d) => d.competitor === "graphile-default")
  const lines = []
  if (classic) {
    lines.push(
      `- The classic poller is measured on a ${fmtNum(classic.backlog)} backlog for at most ${classic.capSec} s ` +
        `(it delivered ${fmtNum(classic.delivered)}); at ${fmtNum(classic.rate)} events/s a 1M backlog would take ` +
        `${fmtNum(1e6 / classic.rate / 60, 0)} minutes, so it is not run.`
    )
  }
  if (gd) {
    lines.push(
      `- graphile-worker with its defaults is measured on ${fmtNum(gd.backlog)} events with a ${gd.capSec} s cap ` +
        `(delivered ${fmtNum(gd.delivered)}); at ${fmtNum(gd.rate)} events/s a 1M backlog would take ${
          fmtNum(1e6 / gd.rate / 60, 0)
        } minutes.`
    )
  }
  const repeated = results.drain.filter((d) => d.reps > 1)
  if (repeated.length) {
    lines.push(
      `- Backlogs under 1M are drained ${
        repeated[0].reps
      } times per competitor; the table shows the median rate and every run.`
    )
  }
  return lines.join("\n")
})()

const loadTable = m.scenarioSeconds
  ? [
    "| scenario | took (s) | 1-min load average before → after |",
    "|---|---:|---:|",
    ...Object.entries(m.scenarioSeconds).map(([k, v]) => `| ${k} | ${v} | ${(m.scenarioLoad?.[k] ?? []).join(" → ")} |`)
  ].join("\n")
  : ""

const caveats = (() => {
  const lines = [
    `- One run per scenario and competitor (backlogs under 1M: ${c.drainReps}, ` +
    `overhead: ${c.overheadReps} repetitions, profile: ` +
    `${
      results.profile?.rounds ?? "n/a"
    } rounds). The machine has ${m.machine.nproc} cores shared with other work; compare the load ` +
    "average column above with the numbers, and prefer ratios measured in the same scenario.",
    "- Competitor, Postgres, Redis, pgbench and the bench itself share the same cores: " +
    "a competitor that spends more CPU leaves less for Postgres, which is part of what is measured.",
    "- Latency: the producer and the consumer run in the bench's own Node process, " +
    "so its event loop adds to every figure (equally for all competitors)."
  ]
  const g1000 = results.latency.find((l) => l.competitor === "graphile" && l.rate === Math.max(...c.latencyRates))
  if (g1000?.achievedRate && g1000.achievedRate < g1000.rate * 0.95) {
    lines.push(
      `- graphile-worker's producer (\`add_job\`) reached only ${fmtNum(g1000.achievedRate)} of the ${
        fmtNum(g1000.rate)
      } events/s ` +
        "asked for in the latency run: its latency there is at that lower rate. " +
        "The same limit caps its soak producer (see the overhead table)."
    )
  }
  const cd = results.drain.find((d) => d.competitor === "classic")
  if (cd) {
    lines.push(
      `- The classic poller's drain is a ${cd.capSec} s window on a ${fmtNum(cd.backlog)} backlog, not a full drain.`
    )
  }
  lines.push(
    "- CPU per event is sampled every 200 ms between the first and the last stream entry; " +
      "the Postgres + Redis figure counts the postmaster, its backends and redis-server " +
      "(backends that exit inside the window are missed: a lower bound)."
  )
  lines.push(
    "- graphile-worker is used as an outbox through its public API only (`add_job` per event, a task that XADDs); it " +
      "does not dedupe against Redis, so it promises less than the relay (at-least-once into the stream)."
  )
  return lines.join("\n")
})()

const errors = results.errors?.length
  ? `\n## Errors during this run\n\n${
    results.errors.map((e) => `- **${e.where}**: ${e.message.split("\n")[0]}`).join("\n")
  }\n`
  : ""

/** The consumer scenario, when the run has it (older cited runs do not). */
const consumerSection = results.consumer
  ? `### Consumer throughput (${fmtNum(results.consumer.messages)} messages, no-op handler)

One throwaway redis-server holds one stream of relay-shaped entries; each row reads all of it as a fresh group in
a process of its own (\`bench/consumer.mjs\`), with rounds rotating which row goes first. least-work is one
connection, \`XREADGROUP COUNT 500\`, \`JSON.parse\` of each payload and one pipelined XACK per read
(\`bench/competitors/least-work-consumer.mjs\`); "best" is ${JSON.stringify(results.consumer.best)}.

${consumerTable(results.consumer)}

`
  : ""

/** The cluster scenario, when the run has it (older cited runs do not). */
const clusterSection = results.cluster
  ? `### Redis Cluster (drain of ${fmtNum(results.cluster.events)} events over ${results.cluster.topics} topics)

The relay drains the same backlog into one Redis and into a Redis Cluster of ${results.cluster.masters} masters on this
machine (\`RELAY_REDIS_CLUSTER=true\`, \`bench/cluster.mjs\`), rounds alternating which goes first; the rate is
the drain window's, first to last stream entry.

${clusterTable(results.cluster)}

`
  : ""

/** The steady scenario, when the run has it (older cited runs do not). */
const steadySection = results.steady?.rates.length
  ? `### CPU per event at a steady rate (pgbench -R, ${results.steady.clients} clients, ${results.steady.seconds} s)

Each turn's competitor CPU and Postgres + Redis CPU over the producing window, per event relayed, per round
(competitors taking turns, the order rotating) and the median; the ratio rows divide the relay's figure by the
other's in the same round. "(prof)": under \`--cpu-prof\`, left out of the median.

${steadyTable(results)}

`
  : ""

const abSection = results.ab && (results.ab.drain.length || results.ab.latency.length)
  ? `
### A/B: this build and the baseline, taking turns

The baseline (\`${m.baseline?.dir}\`, build hash ${m.baseline?.buildHash}) ran as its own competitor; in drain and
latency it and this build took turns round by round, so a drifting machine hits both. Each round's ratio this
build / baseline and their median: for the drain rate above 1 means this build is faster, for latency below 1.

${abTable(results)}
`
  : ""

const intro = `# Benchmarks

<!-- Generated by bench/report.mjs from ${relative(root, file)} down to the end marker: edit the script, not this. -->

The fastest outbox relay on this machine, measured side by side. Every generated number and chart on this page
comes from one run of \`${m.command}\` (started ${m.startedAt}, took ${fmtNum(m.durationSeconds / 60, 1)} minutes),
written as JSON (new runs to the git-ignored \`bench/results/\`, the runs this page cites kept in \`bench/cited/\`)
and turned into this page by \`node bench/report.mjs\`.
`

const body = `## Machine

| | |
|---|---|
| CPU | ${m.machine.cpuModel} |
| cores (nproc) | ${m.machine.nproc} |
| memory | ${fmtNum(m.machine.memoryMiB / 1024, 1)} GiB |
| load average at start / end | ${m.machine.loadavgAtStart.join(", ")} / ${
  (m.loadavgAtEnd ?? m.machine.loadavgAtEnd ?? []).join(", ")
} |

The machine is shared and noisy: the load average above includes other work. Read ratios and medians, not
the last digit.

## Versions

| | |
|---|---|
| Node.js | ${m.versions.node} |
| Postgres | ${m.versions.postgres} |
| Redis | ${m.versions.redis} |
| graphile-worker | ${m.versions.graphileWorker} |
| effect | ${m.versions.effect} |
| postgres.js / ioredis | ${m.versions.postgresJs} / ${m.versions.ioredis} |
| pgbench | ${m.versions.pgbench ?? "n/a"} |
| outbox-relay source | git ${m.relaySource.gitHead}${
  m.relaySource.dirtyFiles ? ` + ${m.relaySource.dirtyFiles} uncommitted file(s) in src/sql/lua` : ""
} (content hash ${m.relaySource.sourceHash}) |

## How it is measured

\`\`\`sh
${Object.entries(m.relayEnv ?? {}).map(([k, v]) => `${k}=${v} `).join("")}${m.command}
\`\`\`

One throwaway Postgres and one throwaway Redis, started by the bench on free ports and removed at the end.
Postgres runs with ${Object.entries(m.postgresSettings).map(([k, v]) => `\`${k}=${v}\``).join(", ")}, otherwise
defaults (pg_stat_statements tracking is off except during the soak). Redis runs with \`--save "" --appendonly no\`.
Every competitor gets its own freshly created database per scenario and its own stream; each runs as its own
process, started and stopped by the bench.

${competitorsList}

- **Drain**: the backlog is inserted with \`generate_series\` while the competitor is stopped, then
  \`VACUUM ANALYZE\` and \`CHECKPOINT\`, then the competitor starts. The rate is counted from the first to the last
  stream entry (Redis entry ids); "startup" is process start to the first entry; RSS is the maximum of VmRSS
  sampled every 200 ms; CPU is the competitor process's CPU time between the first and last entry, per event.
  The relay, tuned graphile-worker, the least-work relay and a \`--baseline\` build drain in turns, round by
  round (odd rounds in reverse order), so a drifting machine hits each of them.
- **Latency**: an open-loop producer (8 connections, one schedule) writes single-statement transactions
  (\`INSERT\` into the outbox table, or \`SELECT graphile_worker.add_job(...)\`) at a fixed rate; the payload carries
  the producer's clock (\`performance.timeOrigin + performance.now()\`) read just before the statement and its COMMIT
  are sent. A separate Redis connection in the same process reads the stream with \`XREAD BLOCK\`; latency is the
  receipt time minus that stamp (one process, one clock). Runs last ${c.latencySec} s after a warm-up; events not
  delivered within ${c.latencyDrainWaitSec} s after the last one count as infinitely late. The last column is the
  producer's own statement (INSERT + COMMIT, from the same stamp to its reply): no relay can see an event
  before its commit, so that is the floor under every latency here; the least-work relay shows what is left
  after that on this machine (one claim and one XADD round trip). "From commit" is each event's latency minus
  its own statement's time (what the relay adds after the producer's COMMIT was acknowledged; 0 when the entry
  reached the stream first).
- **Producer overhead**: pgbench (\`-M prepared\`, ${c.overheadSec} s per run, ` +
  `${c.overheadReps} repetition(s), median) runs
  single-row transactions at 1, 8 and 32 clients while the competitor runs. For the relay, with its table's triggers
  enabled and disabled (\`ALTER TABLE outbox_events DISABLE TRIGGER ...\`). With the trigger off the relay gets no
  NOTIFY and sleeps until its 5 s poll, leaving both cores to the producers, so "on / off" is the cost of the trigger
  plus the cost of relaying concurrently on the same two cores; a third relay row, trigger off with the relay
  restarted with \`RELAY_POLL_INTERVAL=10\` (it relays during the run as well), separates the two: "on /
  off-polling" is the trigger's own cost. The least-work relay never marks itself awake, so its "trigger on" row
  is a NOTIFY on every commit. Between runs the backlog is drained (or, for the classic poller, which cannot keep
  up, truncated).
- **Soak**: pgbench produces ${
    fmtNum(c.soakRate)
  } events/s (\`-R\`, 8 clients) for ${c.soakSec} s; every few seconds the bench
  samples \`pg_total_relation_size\`, each index's \`pg_relation_size\`, live/dead tuples, the backlog, and the mean
  execution time of the claim statement (pg_stat_statements: statements with \`SKIP LOCKED\`, or the classic poll).
  The relay soaks twice: with its defaults (rows deleted as they are published) and with \`RELAY_RETENTION\` set to a
  fifth of the soak (rows kept, marked \`published_at\`, purged when older), which is what retention costs: the
  claim becomes an UPDATE, the table holds rate × retention rows, and the purge deletes them again. "CPU s" is the
  relay process and the Postgres + Redis process trees (producers' backends included) over the producing window.` +
  `${soakOnlyNote}
- **Steady rate** (\`npm run bench -- --scenario steady --only relay,floor\`, \`bench/steady.mjs\`): at 1,000 and
  4,000 events/s, the relay, the least-work relay and, with \`--baseline\`, the baseline build take turns, 3
  rounds (\`--rounds\`), the order rotating, each turn on a fresh database. The least-work relay polls every 10 ms
  with the wake-up trigger disabled: it never marks itself awake, so the trigger would NOTIFY on every commit,
  and the producers' commits, queueing on the notify lock, fell short of 4,000/s. pgbench produces at the rate
  (\`-R\`, 8 clients, single-row INSERT transactions) for a warm-up of 3 s, a 30 s window and 1 s more, so the
  producers' backends are still alive when the window closes. Over the window: the competitor process's CPU
  and the Postgres + Redis process trees' CPU (the producers' own work included, the same for every
  competitor), each per event relayed; the producers' achieved rate (the outbox id sequence); and, after the
  run, every committed event must be in the stream. \`--cpu-prof\` runs the relay's 4,000/s turn of the first
  round under \`node --cpu-prof\` (left out of medians) and writes its top functions by self time over the
  window to \`bench/results/steady-profile-4000.txt\`.

## Results

### Backlog drain

${drainTable(results)}

${drainNote}

${drainChart}

### Latency (producer COMMIT → consumer XREAD receipt)

${latencyTable(results)}

${latencyCharts.join("\n\n")}

### Producer overhead (commits/s of single-row transactions, competitor running)

${overheadTable(results)}

${overheadChart}

### Table health under ${fmtNum(c.soakRate)} events/s

${results.soak.length ? soakTable(results) : "Not run (`npm run bench -- --scenario soak --soak 600`)."}

${soakCharts.join("\n\n")}

${consumerSection}${clusterSection}${steadySection}### Ratios

${ratios(results)}
${abSection}
## Where the relay's time per event goes

\`bench/profile.mjs\` (run as part of \`npm run bench\`, or alone: \`node bench/profile.mjs\`) times the relay's own
claim statement (from \`dist/relay/Statements.js\`), \`lua/publish.lua\` via EVALSHA and the COMMIT, ` +
  `called directly, and
compares them with the whole batch as the relay daemon reports it in its metrics while draining
${fmtNum(results.profile?.daemon?.[0]?.backlog)} events.

${results.profile?.breakdown ? profileTable(results.profile) : "Not run."}

${profileChart}

## Noise and caveats

${loadTable}

${caveats}
${errors}
## Reproduce

\`\`\`sh
npm run bench                    # full run; rewrites this page above the hand-written section
npm run bench -- --quick         # smoke run (does not rewrite this page)
npm run bench -- --baseline /tmp/before --scenario drain,latency --only relay   # A/B against another build
node bench/report.mjs bench/cited/<file>.json     # this page from a cited run (or bench/results/<file>.json)
\`\`\`
`

// ------------------------------------------------------------------------------------------ page
/** The hand-written rest of the current page: below the marker, or (a page from before the marker) below Reproduce. */
const handWritten = (() => {
  const target = join(docs, "benchmarks.md")
  if (!existsSync(target)) return ""
  const page = readFileSync(target, "utf8")
  const at = page.indexOf(endMarker)
  if (at >= 0) return page.slice(at + endMarker.length).replace(/^\n+/, "")
  const reproduce = /^## Reproduce\n\n```sh\n[\s\S]*?\n```\n/m.exec(page)
  return reproduce ? page.slice(reproduce.index + reproduce[0].length).replace(/^\n+/, "") : ""
})()

/** GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
const anchors = new Map()
const anchor = (heading) => {
  const base = heading.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, "").replace(/\s/g, "-")
  const seen = anchors.get(base) ?? 0
  anchors.set(base, seen + 1)
  return seen ? `${base}-${seen}` : base
}

/** Contents: every ## heading of the page (generated and hand-written), with the ### ones under Results. */
const contents = (() => {
  const lines = []
  let inResults = false
  let inFence = false
  // Every heading counts for GitHub's numbering of repeated anchors, listed or not.
  for (const line of ["# Benchmarks", "## Contents", ...`${body}\n${handWritten}`.split("\n")]) {
    if (line.startsWith("```")) inFence = !inFence
    const heading = inFence ? null : /^(#{1,6}) (.+)$/.exec(line)
    if (!heading) continue
    const [, level, text] = heading
    const id = anchor(text)
    if (level === "##" && text !== "Contents") {
      inResults = text === "Results"
      lines.push(`- [${text}](#${id})`)
    } else if (level === "###" && inResults) {
      lines.push(`  - [${text}](#${id})`)
    }
  }
  return `## Contents\n\n${lines.join("\n")}\n`
})()

const page = `${intro}\n${contents}\n${body}\n${endMarker}\n${handWritten ? `\n${handWritten}` : ""}`
writeFileSync(join(docs, "benchmarks.md"), page)
console.log(
  `wrote docs/benchmarks.md and ${charts.map((n) => `docs/${n}`).join(", ")}` +
    (handWritten ? "; kept the hand-written section below the end marker" : "")
)
