/**
 * Stops `npm install`, `npm ci`, `npm test` and `npm run bench` on a Node.js older than `engines.node`
 * in package.json, with one line saying what to install, instead of a crash deep inside a dependency.
 *
 * Written in old syntax (no `?.`, `??`, top-level await) so that even an old Node parses it.
 */
import { readFileSync } from "fs"

var packageJson = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))
var wanted = /(\d+)/.exec(String(packageJson.engines && packageJson.engines.node))
var needed = wanted ? Number(wanted[1]) : 22
var found = process.versions.node
if (Number(found.split(".")[0]) < needed) {
  process.stderr.write(
    "outbox-relay needs Node.js >= " + needed + ", found " + found + " (" + process.execPath + "); get one with " +
      "nvm (nvm install 24) or into this folder (npm install --no-save --prefix .tools node@24, " +
      "then PATH=$PWD/.tools/node_modules/node/bin:$PATH)\n"
  )
  process.exit(1)
}
