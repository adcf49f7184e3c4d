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
const { env = {}, node = [], pg } = JSON.parse(spec)
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
await import(${JSON.stringify(join(root, "dist", "main.js"))})
`
)
console.log(`${target}: ${join(root, "dist", "main.js")} with ${spec}`)
