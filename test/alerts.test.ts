/**
 * The alert rules Prometheus loads: `promtool check rules` accepts deploy/prometheus/alerts.yml,
 * `promtool test rules` runs deploy/prometheus/alerts.test.yml (each rule fires when it should and
 * stays quiet when it should not), and the example scrape config is valid.
 */
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { describe, expect, it } from "vitest"

const run = promisify(execFile)
const dir = fileURLToPath(new URL("../deploy/prometheus/", import.meta.url))

/** Runs promtool in deploy/prometheus; resolves with its output, rejects (with it) when it fails. */
const promtool = async (...args: Array<string>): Promise<string> => {
  const { stderr, stdout } = await run("promtool", args, { cwd: dir })
  return stdout + stderr
}

describe("alert rules", () => {
  it("pass promtool check rules", async () => {
    expect(await promtool("check", "rules", "alerts.yml")).toMatch(/SUCCESS: 12 rules found/)
  })

  it("pass their promtool unit tests", async () => {
    expect(await promtool("test", "rules", "alerts.test.yml")).toMatch(/SUCCESS/)
  })

  it("are loaded by the example prometheus.yml, which passes promtool check config", async () => {
    expect(await promtool("check", "config", "prometheus.yml")).toMatch(/1 rule files found/)
  })
})
