/**
 * The runnable examples, end to end: the chat notifier prints a chat line per event, and the live
 * notifier's page (in headless Chromium: Debian's `chromium` package driven by playwright-core, no
 * browser download) shows events as they are added to the stream.
 */
import { Redis } from "ioredis"
import { existsSync } from "node:fs"
import { chromium } from "playwright-core"
import { afterAll, describe, expect, inject, it } from "vitest"
import { uniquePrefix } from "../support/db.js"
import { startExample } from "../support/examples.js"
import { addEvents } from "./helpers.js"

const chromiumPath = "/usr/bin/chromium"

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
