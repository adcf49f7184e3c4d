// Rewrites the settings table in README.md (between the settings markers) from dist/relay/RelayConfig.js.
// Run `npm run build` first; `npm run docs:settings` does both.
import { readFileSync, writeFileSync } from "node:fs"
import { settingsTable } from "../dist/relay/RelayConfig.js"

const path = new URL("../README.md", import.meta.url)
const readme = readFileSync(path, "utf8")
const start = "<!-- settings:start -->"
const end = "<!-- settings:end -->"
const from = readme.indexOf(start)
const to = readme.indexOf(end)
if (from < 0 || to < from) throw new Error("README.md has no settings markers")
writeFileSync(path, `${readme.slice(0, from + start.length)}\n${settingsTable()}\n${readme.slice(to)}`)
