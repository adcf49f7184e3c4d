/**
 * One row of one round of the bench's consumer scenario, in a process of its own (so no row inherits
 * another's JIT warm-up or heap): reads a filled stream to its end as a fresh group with a no-op handler
 * and prints one JSON line with the rate. Started by bench/consumer.mjs; settings in the environment:
 *
 * BENCH_REDIS_URL, BENCH_STREAM, BENCH_GROUP (exists, at "0"), BENCH_MESSAGES (entries in the stream),
 * BENCH_ROW ("least-work" or "startConsumer"), BENCH_DIST (the build's dist/ for startConsumer),
 * BENCH_OPTIONS (JSON: startConsumer's options beyond the connection and the handler), BENCH_HANDLER
 * ("sync", the default, or "async").
 *
 * The clock runs from just before the consumer is created (its connections and start-up included)
 * until every entry was handled and the group has nothing pending (every XACK arrived).
 */
import Redis from "ioredis"
import { PerformanceObserver } from "node:perf_hooks"
import { pathToFileURL } from "node:url"
import { leastWorkConsumer } from "../competitors/least-work-consumer.mjs"

const env = process.env
const redisUrl = env.BENCH_REDIS_URL
const stream = env.BENCH_STREAM
const group = env.BENCH_GROUP
const count = Number(env.BENCH_MESSAGES)
const row = env.BENCH_ROW
const options = JSON.parse(env.BENCH_OPTIONS ?? "{}")
const { startConsumer } = row === "startConsumer"
  ? await import(pathToFileURL(`${env.BENCH_DIST}/index.js`).href)
  : {}

// Watches the group from outside the consumer, connected before the clock starts.
const watcher = new Redis(redisUrl)
await watcher.ping()

let handled = 0
let allHandled
const handledAll = new Promise((resolve) => (allHandled = resolve))
const syncHandler = () => {
  if (++handled === count) allHandled()
}
// BENCH_HANDLER=async: an async function, a promise per message, as most handlers are.
const handler = env.BENCH_HANDLER === "async"
  ? async () => {
    if (++handled === count) allHandled()
  }
  : syncHandler

let gcMillis = 0
let started = Infinity
let ended = Infinity
const gc = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    if (entry.startTime >= started && entry.startTime < ended) gcMillis += entry.duration
  }
})
gc.observe({ entryTypes: ["gc"] })

const cpuBefore = process.cpuUsage()
started = performance.now()
let stop = async () => {}
if (row === "least-work") {
  await leastWorkConsumer({ redisUrl, stream, group, consumer: "least-work", count, handler })
} else {
  const consumer = await startConsumer({ ...options, redisUrl, stream, group, logLevel: "warn", handler })
  stop = consumer.stop
}
await handledAll
while (Number((await watcher.xpending(stream, group))[0]) > 0) await new Promise((r) => setTimeout(r, 1))
ended = performance.now()
const seconds = (ended - started) / 1000
const cpu = process.cpuUsage(cpuBefore)
// GC entries arrive asynchronously: let the observer see the last ones of the window.
await new Promise((r) => setTimeout(r, 20))
gc.disconnect()
await stop()
watcher.disconnect()
console.log(JSON.stringify({
  handled,
  seconds,
  rate: count / seconds,
  cpuMicrosPerMessage: (cpu.user + cpu.system) / count,
  gcMillis,
  maxRssMiB: process.resourceUsage().maxRSS / 1024
}))
process.exit(0)
