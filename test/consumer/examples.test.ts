/**
 * The runnable examples, end to end: the chat notifier prints a chat line per event, and the live
 * notifier's page (in headless Chromium: Debian's `chromium` package driven by playwright-core, no
 * browser download) shows events as they are added to the stream.
 */
import { Redis } from "ioredis"
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { chromium } from "playwright-core"
import { afterAll, describe, expect, inject, it } from "vitest"
import { uniquePrefix } from "../support/db.js"
import { onProcessExit, waitForChildExit } from "../support/processes.js"
import { addEvents } from "./helpers.js"

const root = fileURLToPath(new URL("../..", import.meta.url))
const chromiumPath = "/usr/bin/chromium"

/** Starts `node <script>` from the repository root; `waitFor` resolves with the first matching stdout line. */
const startExample = (script: string, env: Record<string, string>) => {
  const child: ChildProcess = spawn(process.execPath, [script], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const unregister = onProcessExit(() => child.kill("SIGKILL"))
  child.once("exit", unregister)
  let output = ""
  const listeners = new Set<() => void>()
  const collect = (chunk: Buffer) => {
    output += chunk.toString("utf8")
    for (const listener of listeners) listener()
  }
  child.stdout?.on("data", collect)
  child.stderr?.on("data", collect)
  const waitFor = (pattern: RegExp, timeoutMs = 15_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const match = output.match(pattern)
        if (match) {
          listeners.delete(check)
          clearTimeout(timer)
          resolve(match)
        }
      }
      const timer = setTimeout(() => {
        listeners.delete(check)
        reject(new Error(`${script}: no ${pattern} within ${timeoutMs} ms; output:\n${output}`))
      }, timeoutMs)
      listeners.add(check)
      check()
    })
  const stop = async () => {
    child.kill("SIGTERM")
    await waitForChildExit(child, 10_000)
    return child.exitCode
  }
  return { child, waitFor, stop, output: () => output }
}

describe("examples", () => {
  const redisUrl = inject("redisUrl")
  const redis = new Redis(redisUrl)
  const prefix = uniquePrefix("examples")
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}*`)
    if (keys.length > 0) await redis.del(...keys)
    redis.disconnect()
  })

  it("chat-notifier prints one chat message per event", async () => {
    const stream = `${prefix}orders`
    const notifier = startExample("examples/chat-notifier.mjs", { REDIS_URL: redisUrl, NOTIFY_STREAMS: stream })
    try {
      await notifier.waitFor(/ready: group chat-notifier/)
      await addEvents(redis, stream, [
        {
          event_type: "OrderPlaced",
          aggregate_id: "order-42",
          payload: { customerId: "c-7", items: [{ quantity: 2 }], total: 10, currency: "EUR" }
        },
        {
          event_type: "PaymentCaptured",
          aggregate_id: "order-42",
          payload: { paymentId: "p-1", amount: 10, currency: "EUR" }
        }
      ])
      await notifier.waitFor(/#orders\s+🛒 Order order-42 placed by c-7: 2 item\(s\), 10\.00 EUR/)
      await notifier.waitFor(/#payments\s+💶 Payment p-1 captured for order-42: 10\.00 EUR/)
    } finally {
      expect(await notifier.stop()).toBe(0)
    }
  })

  it("live-notifier streams events to a browser page with Server-Sent Events", async () => {
    if (!existsSync(chromiumPath)) {
      throw new Error(`${chromiumPath} is missing: install Debian's chromium (apt-get install -y chromium)`)
    }
    const stream = `${prefix}live`
    const server = startExample("examples/live-notifier/server.mjs", {
      REDIS_URL: redisUrl,
      LIVE_STREAMS: stream,
      PORT: "0"
    })
    const browser = await chromium.launch({
      executablePath: chromiumPath,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-quic",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync"
      ]
    })
    try {
      const [, url] = await server.waitFor(/listening on (http:\/\/\S+)/)
      const page = await browser.newPage()
      await page.goto(url!)
      await page.waitForSelector("#status.live", { timeout: 10_000 })
      const [first] = await addEvents(redis, stream, [{
        event_type: "OrderPlaced",
        aggregate_id: "order-7",
        payload: { total: 12.5 }
      }])
      const item = await page.waitForSelector(`li[data-entry-id="${first}"]`, { timeout: 10_000 })
      expect(await item.textContent()).toContain("OrderPlaced")
      expect(await item.textContent()).toContain("order-7")
      expect(await item.textContent()).toContain("{\"total\":12.5}")
      // More arrive while the page is open, newest on top.
      const more = await addEvents(redis, stream, [{ event_type: "PaymentCaptured", aggregate_id: "order-7" }, {
        event_type: "OrderShipped",
        aggregate_id: "order-7"
      }])
      await page.waitForSelector(`li[data-entry-id="${more[1]}"]`, { timeout: 10_000 })
      const types = await page.$$eval("li .type", (nodes) => nodes.map((node) => node.textContent))
      expect(types).toEqual(["OrderShipped", "PaymentCaptured", "OrderPlaced"])
    } finally {
      await browser.close()
      expect(await server.stop()).toBe(0)
    }
  })
})
