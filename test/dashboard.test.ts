/**
 * The dashboard on the real daemon (`node dist/main.js`): the page and its live feed answer with the
 * right types and headers, the feed ends when the relay stops, and in headless Chromium (Debian's
 * `chromium` driven by playwright-core) the page follows the relay live — streams, groups, backlog,
 * rates — replays dead letters with the admin token, and shows Redis going down as an error while
 * it keeps updating.
 */
import { Redis } from "ioredis"
import { existsSync, mkdirSync } from "node:fs"
import { join } from "node:path"
import { chromium, type Page } from "playwright-core"
import { afterEach, describe, expect, it } from "vitest"
import { type RedisServerHandle, startRedisServer } from "./support/redisServer.js"
import { insertEvents, makeTestEnv, readStream, type TestEnv } from "./support/relayHarness.js"
import {
  killAllRelayProcesses,
  projectRoot,
  type RelayProcessHandle,
  startRelayProcess
} from "./support/relayProcess.js"
import { eventually } from "./support/wait.js"

const chromiumPath = "/usr/bin/chromium"
const token = "dashboard-token-0123456789"

const startRelay = async (env: Record<string, string>) => {
  const relay = startRelayProcess({ ...env, RELAY_LOG_LEVEL: "info", RELAY_ADMIN_TOKEN: token })
  const listening = await relay.waitForLine(
    (_, parsed) => (parsed as { message?: string } | undefined)?.message === "admin http server listening",
    20_000
  )
  const port = (listening.parsed as { annotations: { port: number } }).annotations.port
  return { relay, base: `http://127.0.0.1:${port}` }
}

/** The first `data:` event of an SSE response, parsed; the rest of the stream is left unread. */
const firstEvent = async (response: Response): Promise<unknown> => {
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  let text = ""
  for (;;) {
    const { done, value } = await reader.read()
    if (done) throw new Error(`stream ended before an event; got ${JSON.stringify(text)}`)
    text += decoder.decode(value, { stream: true })
    const data = text.split("\n\n").find((block) => block.startsWith("data: "))
    if (data !== undefined && text.includes(`${data}\n\n`)) return JSON.parse(data.slice("data: ".length))
  }
}

let t: TestEnv | undefined
let relay: RelayProcessHandle | undefined
afterEach(async () => {
  killAllRelayProcesses()
  await relay?.waitForExit(10_000).catch(() => undefined)
  relay = undefined
  await t?.dispose()
  t = undefined
})

describe("dashboard without a browser", () => {
  it("serves the page and a live feed of JSON snapshots, and SIGTERM ends open feeds at once", async () => {
    t = await makeTestEnv("dashboard_http")
    const started = await startRelay(t.env)
    relay = started.relay
    const page = await fetch(`${started.base}/`)
    expect(page.status).toBe(200)
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8")
    expect(page.headers.get("cache-control")).toBe("no-store")
    expect(page.headers.get("content-security-policy")).toMatch(/script-src 'self'; style-src 'self'/)
    const html = await page.text()
    // Everything the page loads comes from the relay.
    expect([...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1])).toEqual(["/dashboard.css", "/dashboard.js"])
    const script = await fetch(`${started.base}/dashboard.js`)
    expect(script.headers.get("content-type")).toBe("text/javascript; charset=utf-8")
    expect((await fetch(`${started.base}/dashboard.css`)).headers.get("content-type")).toBe("text/css; charset=utf-8")

    await insertEvents(t.sql, [{ topic: "orders" }, { topic: "orders" }])
    const live = await fetch(`${started.base}/api/live`)
    expect(live.status).toBe(200)
    expect(live.headers.get("content-type")).toBe("text/event-stream")
    const snapshot = await firstEvent(live) as Record<string, any>
    expect(snapshot.prefix).toBe(t.prefix)
    expect(snapshot.health).toMatchObject({ ready: true, redis: { ok: true }, postgres: { ok: true } })
    expect(snapshot.outbox.ok).toBe(true)
    expect(snapshot.outbox.value.relays).toHaveLength(1)
    expect(snapshot.streams.ok).toBe(true)
    expect(Array.isArray(snapshot.rates)).toBe(true)
    expect(JSON.stringify(snapshot)).not.toContain("postgres://")

    // One feed left open (the first is still unread too): the relay still stops at once, exit 0.
    const open = await fetch(`${started.base}/api/live`)
    await firstEvent(open)
    const stopping = Date.now()
    relay.kill("SIGTERM")
    expect((await relay.waitForExit(10_000)).code).toBe(0)
    expect(Date.now() - stopping).toBeLessThan(5_000)
  })
})

/** Text of the first element matching `selector`, once `accept` holds for it. */
const waitForText = async (page: Page, selector: string, accept: (text: string) => boolean, timeout = 10_000) => {
  const deadline = Date.now() + timeout
  let text = ""
  while (Date.now() < deadline) {
    text = (await page.locator(selector).first().textContent({ timeout: 1_000 }).catch(() => null)) ?? ""
    if (accept(text)) return text
    await page.waitForTimeout(100)
  }
  throw new Error(`${selector}: still ${JSON.stringify(text)} after ${timeout} ms`)
}

describe("dashboard in a browser", () => {
  let redisServer: RedisServerHandle | undefined
  afterEach(async () => {
    await redisServer?.dispose()
    redisServer = undefined
  })

  it("follows the relay live, replays dead letters with the token, and shows Redis down as an error", async () => {
    if (!existsSync(chromiumPath)) {
      throw new Error(`${chromiumPath} is missing: install Debian's chromium (apt-get install -y chromium)`)
    }
    // A Redis of its own, to stop it under the relay (its append-only file keeps the streams).
    redisServer = await startRedisServer({ appendonly: true })
    t = await makeTestEnv("dashboard_ui", { RELAY_REDIS_URL: redisServer.url })
    const redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 })
    redis.on("error", () => {}) // while the server is stopped on purpose
    const started = await startRelay(t.env)
    relay = started.relay
    const stream = `${t.prefix}orders`
    const row = `tr[data-stream="${stream}"]`

    const browser = await chromium.launch({
      executablePath: chromiumPath,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    })
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 900 } })
      const pageErrors: Array<string> = []
      page.on("pageerror", (error) => pageErrors.push(error.message))
      page.on("console", (message) => {
        if (message.type() === "error") pageErrors.push(message.text())
      })
      // The replay asks for the token with a prompt; the answer is whatever `nextToken` holds.
      const dialogs: Array<string> = []
      let nextToken = ""
      page.on("dialog", (dialog) => {
        dialogs.push(dialog.type())
        void dialog.accept(nextToken)
      })
      await page.goto(`${started.base}/`)
      await waitForText(page, "#feed", (text) => text === "live")
      await waitForText(page, "[data-health='redis'] .value", (text) => text === "ok")

      // Events in, stream length and rates on the page.
      await insertEvents(t.sql, Array.from({ length: 5 }, (_, i) => ({ topic: "orders", aggregate_id: `o-${i}` })))
      await insertEvents(t.sql, [{ topic: "payments" }])
      await waitForText(page, `${row} .length`, (text) => text === "5")
      await waitForText(page, "[data-field='relayed-peak']", (text) => /^peak [1-9]/.test(text))
      await waitForText(page, "[data-field='latency']", (text) => /\d.* \/ \d/.test(text))
      expect(await page.locator("#relays tr").count()).toBe(1)

      // A group (its name is markup, shown as text) with two pending entries and three not delivered.
      const groupName = "<img src=x onerror=alert(1)>"
      await redis.xgroup("CREATE", stream, groupName, "0")
      await redis.xreadgroup("GROUP", groupName, "worker-1", "COUNT", 2, "STREAMS", stream, ">")
      const group = `${row} [data-group="${groupName}"]`
      await waitForText(page, `${group} .pending`, (text) => text === "2")
      expect(await page.locator(`${group} .lag`).textContent()).toBe("3")
      expect(await page.locator(`${group} b`).textContent()).toBe(groupName)
      expect(await page.locator("img").count()).toBe(0)

      // A consumer's dead letter: the envelope of an entry plus what the consumer adds.
      const [entry] = await readStream(redis, stream)
      const envelope = Object.entries(entry!.fields).flat()
      await redis.xadd(
        `{${stream}}:dlq`,
        "*",
        ...envelope,
        ...["reason", "handler failed", "delivery_count", "5", "dead_at", new Date().toISOString()],
        ...["group", groupName, "consumer", "worker-1", "entry_id", entry!.id]
      )
      await waitForText(page, `${row} .dead`, (text) => text === "1")
      mkdirSync(join(projectRoot, "test-results"), { recursive: true })
      await page.screenshot({ path: join(projectRoot, "test-results", "dashboard.png"), fullPage: true })

      // A wrong token: refused, shown on the page, nothing moved.
      nextToken = "not-the-token-at-all"
      await page.locator(`${row} button.replay`).click()
      await waitForText(page, "#notice", (text) => text.startsWith("Replay refused (401)"))
      expect(await redis.xlen(`{${stream}}:dlq`)).toBe(1)

      // The right one: the dead letter is back in the stream and gone from the dead-letter stream.
      nextToken = token
      await page.locator(`${row} button.replay`).click()
      await waitForText(page, "#notice", (text) => text.startsWith("Replayed 1 dead letter"))
      expect(await redis.xlen(`{${stream}}:dlq`)).toBe(0)
      const replayed = (await readStream(redis, stream)).filter((e) => e.fields.event_id === entry!.fields.event_id)
      expect(replayed).toHaveLength(2)
      await waitForText(page, `${row} .dead`, (text) => text === "0")
      await waitForText(page, `${row} .length`, (text) => text === "6")
      expect(dialogs).toEqual(["prompt", "prompt"])

      // Redis down: the page says so and goes on updating from Postgres (the backlog grows).
      await redisServer.stop()
      await waitForText(page, "#streams-error", (text) => text.includes("Redis"))
      await waitForText(page, "[data-health='redis'] .value", (text) => text === "down")
      await insertEvents(t.sql, Array.from({ length: 3 }, () => ({ topic: "orders" })))
      await waitForText(page, "[data-field='backlog']", (text) => text === "3")
      expect(await page.locator("#feed").textContent()).toBe("live")

      // Redis back: the relay drains and the page recovers.
      await redisServer.start()
      await waitForText(page, "[data-field='backlog']", (text) => text === "0", 20_000)
      await waitForText(page, `${row} .length`, (text) => text === "9")
      expect(await page.locator("#streams-error").isHidden()).toBe(true)
      // The refused replay is logged by Chromium as a failed resource load; nothing else may fail.
      expect(pageErrors.filter((e) => !e.startsWith("Failed to load resource"))).toEqual([])

      // Page closed: its feed stops, and with it the snapshot queries on the admin connection.
      await page.close()
      const adminIdle = async () => {
        const clients = String(await redis.client("LIST")).split("\n")
        const admin = clients.find((line) => / name=outbox-relay-admin /.test(line))
        return Number(admin?.match(/ idle=(\d+)/)?.[1] ?? -1)
      }
      expect(await eventually(adminIdle, (idle) => idle >= 3, 8_000, 250)).toBeGreaterThanOrEqual(3)
    } finally {
      await browser.close()
      redis.disconnect()
    }
  })
})
