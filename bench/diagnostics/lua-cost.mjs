/**
 * What the once-into-the-stream markers cost inside Redis: lua/publish.lua against a script that only
 * XADDs the same entries (no dedupe), 100 calls of 1,000 events each, three rounds, on a throwaway
 * Redis. Server time comes from INFO commandstats (usec of EVALSHA), wall time from this process.
 * Also checks that a second call with the same events adds nothing.
 *
 *   node bench/diagnostics/lua-cost.mjs
 */
import Redis from "ioredis"
import { readFileSync } from "node:fs"
import { startRedis } from "../lib/servers.mjs"

const xaddOnly = `
local stream = KEYS[1]
local count = (#ARGV - 3) / 10
local out = {}
for i = 0, count - 1 do
  local b = 4 + i * 10
  out[#out + 1] = redis.call('XADD', stream, '*', 'event_id', ARGV[b], 'event_type', ARGV[b + 1],
    'topic', ARGV[b + 2], 'aggregate_type', ARGV[b + 3], 'aggregate_id', ARGV[b + 4], 'tenant_id', ARGV[b + 5],
    'schema_version', ARGV[b + 6], 'occurred_at', ARGV[b + 7], 'payload', ARGV[b + 8], 'headers', ARGV[b + 9])
end
return out`
const scripts = {
  "xadd only": xaddOnly,
  "lua/publish.lua": readFileSync(new URL("../../lua/publish.lua", import.meta.url), "utf8")
}

const server = await startRedis()
const r = new Redis(server.url)
const pad = "x".repeat(96)
const batch = (n, tag) => {
  const args = ["0", "3600000", "0"]
  for (let i = 0; i < n; i++) {
    args.push(
      `${tag}-${i}-0000-0000-000000000000`,
      "OrderPlaced",
      "orders",
      "",
      `order-${i % 1000}`,
      "",
      "1",
      "2026-11-22T08:00:00.000000Z",
      JSON.stringify({ n: i, total: 10.5, currency: "EUR", pad }),
      "{}"
    )
  }
  return args
}
try {
  for (const round of [1, 2, 3]) {
    for (const [name, lua] of Object.entries(scripts)) {
      const sha = await r.script("LOAD", lua)
      await r.del("s", "{s}:inflight")
      await r.config("RESETSTAT")
      const t = performance.now()
      for (let k = 0; k < 100; k++) await r.evalsha(sha, 2, "s", "{s}:inflight", ...batch(1000, `${round}${k}`))
      const wall = performance.now() - t
      const line = (await r.info("commandstats")).split("\n").find((l) => l.startsWith("cmdstat_evalsha"))
      const usec = Number(/usec=(\d+)/.exec(line)[1])
      const again = await r.evalsha(sha, 2, "s", "{s}:inflight", ...batch(1000, `${round}0`))
      const deduped = again.every((x) => x.startsWith("="))
      console.log(
        `round ${round} ${name.padEnd(16)} server ${(usec / 1e5).toFixed(2)} µs/event, wall ${
          (wall / 100).toFixed(2)
        } µs/event, ` +
          `repeat call added ${deduped ? "nothing" : `${again.filter((x) => !x.startsWith("=")).length} entries`}`
      )
    }
  }
} finally {
  r.disconnect()
  await server.stop()
}
