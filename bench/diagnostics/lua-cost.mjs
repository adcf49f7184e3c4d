/**
 * What the once-into-the-stream bookkeeping costs inside Redis: lua/publish.lua against a script that only
 * XADDs the same entries (no dedupe), 100 calls of 1,000 events each, three rounds, on a throwaway
 * Redis. Server time comes from INFO commandstats (usec of EVALSHA), wall time from this process.
 * Also checks that a second call with the same events adds nothing.
 *
 *   node bench/diagnostics/lua-cost.mjs
 */
import Redis from "ioredis"
import { publishScript } from "../../dist/relay/4-Publish.js"
import { startRedis } from "../lib/servers.mjs"

const xaddOnly = `
local stream = KEYS[1]
local at = 4 + 2 * tonumber(ARGV[3])
at = at + 1 + tonumber(ARGV[at])
local base = at + 1 + tonumber(ARGV[at]) + 2
local count = (#ARGV - base + 1) / 10
local out = {}
for i = 0, count - 1 do
  local b = base + i * 10
  out[#out + 1] = redis.call('XADD', stream, '*', 'event_id', ARGV[b], 'event_type', ARGV[b + 1],
    'topic', ARGV[b + 2], 'aggregate_type', ARGV[b + 3], 'aggregate_id', ARGV[b + 4], 'tenant_id', ARGV[b + 5],
    'schema_version', ARGV[b + 6], 'occurred_at', ARGV[b + 7], 'payload', ARGV[b + 8], 'headers', ARGV[b + 9])
end
return out`
const scripts = {
  "xadd only": xaddOnly,
  "lua/publish.lua": publishScript
}

const server = await startRedis()
const r = new Redis(server.url)
const pad = "x".repeat(96)
/**
 * One call's arguments as the relay sends them: no trimming, one fenced slot, the attempts to drop and to
 * abandon, this call's token and record, the events.
 */
const batch = (n, tag, token, forget = [], abandon = []) => {
  const ids = Array.from({ length: n }, (_, i) => `${tag}-${i}-0000-0000-000000000000`)
  const args = ["0", "3600000", "1", "7", "1", String(forget.length), ...forget, String(abandon.length), ...abandon]
  args.push(token, `7:1|${ids.join(",")}`)
  for (let i = 0; i < n; i++) {
    args.push(
      ids[i],
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
const keys = ["s", "{s}:attempts", "{s}:orphans", "{s}:fence", "{s}:inflight"]
try {
  for (const round of [1, 2, 3]) {
    for (const [name, lua] of Object.entries(scripts)) {
      const sha = await r.script("LOAD", lua)
      await r.del(...keys)
      await r.config("RESETSTAT")
      const t = performance.now()
      // Each call drops the previous call's attempt, as the relay's next call for a stream does.
      for (let k = 0; k < 100; k++) {
        await r.evalsha(sha, 5, ...keys, ...batch(1000, `${round}-${k}`, `t${k}`, k > 0 ? [`t${k - 1}`] : []))
      }
      const wall = performance.now() - t
      const line = (await r.info("commandstats")).split("\n").find((l) => l.startsWith("cmdstat_evalsha"))
      const usec = Number(/usec=(\d+)/.exec(line)[1])
      // The last call's transaction "failed": the same events again, abandoning its attempt first.
      const again = await r.evalsha(sha, 5, ...keys, ...batch(1000, `${round}-99`, "retry", [], ["t99"]))
      const addedAgain = Array.isArray(again) ? again.filter((x) => x !== "=").length : again
      console.log(
        `round ${round} ${name.padEnd(16)} server ${(usec / 1e5).toFixed(2)} µs/event, wall ${
          (wall / 100).toFixed(2)
        } µs/event, repeat call added ${addedAgain === 0 ? "nothing" : `${addedAgain} entries`}`
      )
    }
  }
} finally {
  r.disconnect()
  await server.stop()
}
