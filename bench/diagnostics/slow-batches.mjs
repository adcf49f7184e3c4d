#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): what the relay's slow batches were doing during the bench's
 * latency scenario, and whether a garbage-collection pause overlapped them. Builds this commit (HEAD)
 * in a temporary worktree with `slow-batches.patch` applied (each batch whose slowest event waited
 * more than 4 ms since its estimated commit logs its claim and script round trips and how the lane got
 * there: `loop` claiming on while rows come, `rest` / `idle` the first claim after a wake-up,
 * `handover` / `last` going back to sleep), runs `bench/run.mjs --quick --scenario latency --only relay`
 * there with a preload that logs every GC pause over 1 ms, and prints both side by side. The lane path is
 * one global, so the figures are for lane 0 alone (the only lane below a backlog).
 *
 *   node bench/diagnostics/slow-batches.mjs
 */
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"

const root = resolve(import.meta.dirname, "../..")
const dir = mkdtempSync(join(tmpdir(), "slow-batches-"))
const tree = join(dir, "tree")
const run = (command, args, options = {}) =>
  execFileSync(command, args, { cwd: tree, stdio: ["ignore", "pipe", "inherit"], ...options }).toString()

const preload = join(dir, "gc-pauses.mjs")
writeFileSync(
  preload,
  `import { PerformanceObserver } from "node:perf_hooks"
if ((process.argv[1] ?? "").endsWith("dist/main.js")) {
  const kinds = { 1: "minor", 2: "major", 4: "incremental", 8: "weak callbacks" }
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if (e.duration > 1) {
        const at = Math.round((performance.timeOrigin + e.startTime) * 100) / 100
        const d = Math.round(e.duration * 100) / 100
        process.stderr.write("[gc] " + JSON.stringify({ at, d, kind: kinds[e.detail?.kind] ?? "other" }) + "\\n")
      }
    }
  }).observe({ entryTypes: ["gc"] })
}
`
)

try {
  execFileSync("git", ["worktree", "add", "--detach", tree, "HEAD"], { cwd: root, stdio: "ignore" })
  symlinkSync(join(root, "node_modules"), join(tree, "node_modules"))
  run("git", ["apply", join(root, "bench/diagnostics/slow-batches.patch")])
  run(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"])
  const out = run(process.execPath, [
    "bench/run.mjs",
    "--quick",
    "--scenario",
    "latency",
    "--only",
    "relay",
    "--no-build",
    "--no-report"
  ], { env: { ...process.env, NODE_OPTIONS: `--import ${preload}` } })
  for (const line of out.split("\n")) if (/relay @\d+\/s:/.test(line)) console.log(line.trim())

  const gcs = []
  const slow = []
  for (const line of readFileSync(join(tree, ".bench/logs/relay.log"), "utf8").split("\n")) {
    if (line.startsWith("[gc] ")) gcs.push(JSON.parse(line.slice(5)))
    if (line.startsWith("[trace] ")) slow.push(JSON.parse(line.slice(8)))
  }
  const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b)
    return s.length === 0 ? NaN : s[Math.floor(s.length / 2)]
  }
  // A pause overlapping the batch, or the wait since its rows' commit bound.
  const pausedIn = (t) => {
    const from = t.at - (t.bound ?? 0)
    const to = t.at + t.claimRtt + t.pubRtt
    return gcs.some((g) => g.at < to && g.at + g.d > from)
  }
  console.log(
    `GC pauses over 1 ms: ${gcs.length}, ${gcs.reduce((sum, g) => sum + g.d, 0).toFixed(0)} ms in all, ` +
      `median ${median(gcs.map((g) => g.d))} ms, longest ${Math.max(0, ...gcs.map((g) => g.d))} ms`
  )
  for (const [label, min] of [["over 4 ms", 4], ["over 8 ms", 8]]) {
    const set = slow.filter((t) => t.maxLat > min)
    const byPath = {}
    for (const t of set) byPath[t.path] = (byPath[t.path] ?? 0) + 1
    console.log(
      `batches with an event ${label} from its commit: ${set.length} (${
        Object.entries(byPath).map(([path, n]) => `${path} ${n}`).join(", ")
      }); a GC pause in ${set.filter(pausedIn).length}; median claim round trip ${
        median(set.map((t) => t.claimRtt))
      } ms, script call ${median(set.map((t) => t.pubRtt))} ms, waited before the claim ${
        median(set.map((t) => t.bound ?? 0))
      } ms`
    )
  }
} finally {
  execFileSync("git", ["worktree", "remove", "--force", tree], { cwd: root, stdio: "ignore" })
  rmSync(dir, { recursive: true, force: true })
}
