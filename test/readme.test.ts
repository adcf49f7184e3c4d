/** The README's settings table is the one generated from the code, so documentation cannot drift. */
import { readFileSync } from "node:fs"
import { expect, it } from "vitest"
import { settingsTable } from "../src/relay/RelayConfig.js"

it("README lists every RELAY_* setting with its default, as the code defines them", () => {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8")
  expect(readme).toContain(settingsTable())
})
