#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): where the relay process spends its CPU while producers
 * write at a steady rate (pgbench -R, 8 clients, single-row INSERTs), i.e. with small batches. Runs
 * `node dist/main.js` with `--cpu-prof` on throwaway servers and prints self time by module and by
 * function.
 *
 *   npm run build && node bench/diagnostics/cpu-profile.mjs [rate|max] [seconds]     (default 5000 15)
 *
 * "max": pgbench without a rate limit (the producer-overhead situation). The .cpuprofile file's path is
 * printed (open it in Chrome DevTools for the call tree). `PROFILE_OF=floor` profiles the least-work relay
 * instead, for a side-by-side.
 */
import { execFileSync } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import postgres from "postgres"
import { competitors } from "../lib/competitors.mjs"
import { findBinary, pgbenchArgs, sleep, startPostgres, startRedis } from "../lib/servers.mjs"

const rate = process.argv[2] ?? "5000"
const seconds = process.argv[3] ?? "15"
const c = competitors[process.env.PROFILE_OF ?? "relay"]
const pg = await startPostgres()
const rs = await startRedis()
const admin = postgres(pg.url, { max: 1, onnotice: () => {} })
const dir = mkdtempSync(join(tmpdir(), "relay-prof-"))
let relay
try {
  await admin.unsafe("CREATE DATABASE prof")
  const url = pg.urlFor("prof")
  await c.setup(url, rs.url)
  const script = join(dir, "insert.sql")
  writeFileSync(script, c.pgbenchScript)
  relay = c.start(url, rs.url, { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${dir}` })
  await sleep(1500)
  const out = execFileSync(
    findBinary("pgbench"),
    pgbenchArgs(pg, { clients: 8, db: "prof", extra: rate === "max" ? [] : ["-R", rate], file: script, seconds }),
    { encoding: "utf8" }
  )
  console.log(`pgbench: ${/tps = [\d.]+/.exec(out)?.[0]} (asked ${rate}/s for ${seconds} s)`)
} finally {
  await relay?.stop()
  await admin.end()
  await pg.stop()
  await rs.stop()
}
const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile"))
console.log(`profile file: ${join(dir, file)}`)
const profile = JSON.parse(readFileSync(join(dir, file), "utf8"))
const nodes = new Map(profile.nodes.map((n) => [n.id, n]))
const self = new Map()
let total = 0
profile.samples.forEach((id, i) => {
  const d = profile.timeDeltas[i] ?? 0
  total += d
  self.set(id, (self.get(id) ?? 0) + d)
})
const byModule = new Map()
const byFunction = new Map()
for (const [id, t] of self) {
  const { functionName, lineNumber, url } = nodes.get(id).callFrame
  const module = url.includes("node_modules/")
    ? url.replace(/^.*node_modules\//, "").split("/").slice(0, url.includes("node_modules/@") ? 2 : 1).join("/")
    : url
    ? url.replace(/^file:\/\/.*?\/(dist|src)\//, "$1/")
    : functionName
  byModule.set(module, (byModule.get(module) ?? 0) + t)
  const key = `${functionName || "(anonymous)"} ${
    url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*?\/dist\//, "dist/")
  }:${lineNumber}`
  byFunction.set(key, (byFunction.get(key) ?? 0) + t)
}
const top = (m, n) =>
  [...m].sort((a, b) => b[1] - a[1]).slice(0, n)
    .map(([k, v]) => `${(v / 1000).toFixed(0).padStart(7)} ms ${(100 * v / total).toFixed(1).padStart(5)}%  ${k}`).join(
      "\n"
    )
console.log(
  `profile: ${(total / 1000).toFixed(0)} ms sampled\n\nby module (self time)\n${
    top(byModule, 12)
  }\n\nby function (self time)\n${top(byFunction, 15)}`
)
