#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): where the relay process spends its time draining a backlog.
 * On throwaway servers, inserts 300,000 events, starts `node dist/main.js` with `--cpu-prof` (one lane
 * unless LANES is set; extra Node flags in EXTRA_NODE), waits until the outbox is empty, and prints the
 * drain time and the self time by function (the top 30).
 *
 *   npm run build && node bench/diagnostics/drain-profile.mjs
 */
import { mkdtempSync, readdirSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import postgres from "postgres"
import { competitors } from "../lib/competitors.mjs"
import { sleep, startPostgres, startRedis } from "../lib/servers.mjs"

const c = competitors.relay
const pg = await startPostgres()
const rs = await startRedis()
const admin = postgres(pg.url, { max: 1, onnotice: () => {} })
const dir = mkdtempSync(join(tmpdir(), "drain-profile-"))
try {
  await admin.unsafe("CREATE DATABASE d")
  const url = pg.urlFor("d")
  await c.setup(url, rs.url)
  const db = postgres(url, { max: 1, onnotice: () => {} })
  await db.unsafe(c.backlogSql(1, 300_000))
  await db.unsafe("VACUUM ANALYZE outbox_events")
  const started = Date.now()
  const relay = c.start(url, rs.url, {
    RELAY_CONCURRENCY: process.env.LANES ?? "1",
    NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${dir} ${process.env.EXTRA_NODE ?? ""}`
  })
  for (;;) {
    const [{ n }] = await db.unsafe(c.pendingSql)
    if (n === 0) break
    await sleep(100)
  }
  console.log(`drained 300,000 events in ${((Date.now() - started) / 1000).toFixed(1)} s (including start-up)`)
  await relay.stop()
  await db.end()
} finally {
  await admin.end()
  await pg.stop()
  await rs.stop()
}
const file = join(dir, readdirSync(dir).find((f) => f.endsWith(".cpuprofile")))
const profile = JSON.parse(readFileSync(file, "utf8"))
const nodes = new Map(profile.nodes.map((n) => [n.id, n]))
const self = new Map()
let total = 0
profile.samples.forEach((id, i) => {
  const d = profile.timeDeltas[i] ?? 0
  total += d
  const { functionName, lineNumber, url } = nodes.get(id).callFrame
  const key = `${functionName || "(anonymous)"} ${
    url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*?\/dist\//, "dist/")
  }:${lineNumber}`
  self.set(key, (self.get(key) ?? 0) + d)
})
console.log(`profile: ${file}, ${(total / 1000).toFixed(0)} ms sampled\n`)
for (const [key, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 30)) {
  console.log(`${(t / 1000).toFixed(0).padStart(7)} ms ${(100 * t / total).toFixed(1).padStart(5)}%  ${key}`)
}
