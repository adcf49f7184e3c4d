#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): makes a directory that `npm run bench -- --baseline <dir>` runs
 * as another build, but that is this checkout's build with other settings: its dist/main.js sets the
 * given environment variables, and adds the given startup parameters to RELAY_DATABASE_URL, then runs
 * this checkout's dist/main.js. For settings the bench does not set per competitor, and for what is
 * not a setting at all (e.g. the relay's sessions committing without the WAL flush: diagnosis only,
 * that gives up the relay's guarantee).
 *
 *   npm run build && node bench/diagnostics/wrap-build.mjs /tmp/async '{"pg":"synchronous_commit=off"}'
 *   npm run bench -- --quick --scenario latency --only relay,floor --baseline /tmp/async --no-build
 *
 *   node bench/diagnostics/wrap-build.mjs /tmp/nopause '{"env":{"RELAY_BUSY_PAUSE":"0"}}'
 *   node bench/diagnostics/wrap-build.mjs /tmp/s16 '{"node":["--max-old-space-size=1024","--max-semi-space-size=16"]}'
 *
 *   node bench/diagnostics/wrap-build.mjs /tmp/nice '{"nice":-10}'
 *   node bench/diagnostics/wrap-build.mjs /tmp/nicepg '{"niceBackends":-10}'
 *
 * "nice": the relay process's scheduling priority, "niceBackends" that of its Postgres backends (same
 * machine; negative needs root; diagnosis only: it takes the cores from producers).
 *
 * "node": flags for Node itself; the wrapper restarts itself with them (`process.execve`), as the relay
 * does with its own heap flags (which it then leaves out). Heap flags in NODE_OPTIONS set from here would
 * not apply: this process has started already.
 */
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"

const [dir, spec = "{}"] = process.argv.slice(2)
if (!dir) {
  console.error(
    "usage: node bench/diagnostics/wrap-build.mjs <dir> '{\"env\":{...},\"pg\":\"param=value&...\",\"node\":[...]}'"
  )
  process.exit(2)
}
const { env = {}, nice, niceBackends, node = [], pg } = JSON.parse(spec)
const root = resolve(import.meta.dirname, "../..")
const target = resolve(dir)
rmSync(target, { recursive: true, force: true })
mkdirSync(join(target, "dist"), { recursive: true })
for (const entry of ["sql", "lua", "node_modules", "package.json"]) symlinkSync(join(root, entry), join(target, entry))
writeFileSync(
  join(target, "dist", "main.js"),
  `// Written by bench/diagnostics/wrap-build.mjs: ${spec}
Object.assign(process.env, ${JSON.stringify(env)})
const nodeFlags = ${JSON.stringify(node)}
if (nodeFlags.length > 0 && !nodeFlags.every((flag) => process.execArgv.includes(flag))) {
  const args = [process.execPath, ...nodeFlags, ...process.execArgv, ...process.argv.slice(1)]
  process.execve(process.execPath, args, process.env)
}
const pg = ${JSON.stringify(pg ?? "")}
const url = process.env.RELAY_DATABASE_URL
// The relay restarts itself once (heap flags) with this environment: add the parameters once.
if (pg && url && !url.includes(pg)) process.env.RELAY_DATABASE_URL = url + (url.includes("?") ? "&" : "?") + pg
${nice === undefined ? "" : `(await import("node:os")).setPriority(${Number(nice)})\n`}${
    niceBackends === undefined ? "" : backendsReniced(Number(niceBackends))
  }await import(${JSON.stringify(join(root, "dist", "main.js"))})
`
)
/**
 * Code that gives the relay's Postgres backends priority `nice` (when it runs the relay, not a
 * subcommand): checked a few times at start and every 5 s, each time on a connection of its own.
 */
function backendsReniced(nice) {
  return `if (process.argv.slice(2).every((arg) => arg === "run")) {
  const { setPriority } = await import("node:os")
  const { default: postgres } = await import(${JSON.stringify(join(root, "node_modules/postgres/src/index.js"))})
  const renice = () => {
    const sql = postgres(process.env.RELAY_DATABASE_URL, { max: 1, onnotice: () => {} })
    sql\`SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'outbox-relay%'\`
      .then((rows) => rows.forEach(({ pid }) => { try { setPriority(pid, ${nice}) } catch {} }), () => {})
      .finally(() => sql.end({ timeout: 1 }))
  }
  for (const ms of [500, 1000, 2000, 3000]) setTimeout(renice, ms).unref()
  setInterval(renice, 5000).unref()
}
`
}
console.log(`${target}: ${join(root, "dist", "main.js")} with ${spec}`)
