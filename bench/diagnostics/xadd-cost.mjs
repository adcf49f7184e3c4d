#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): what Redis spends per event on the entries of a drain, the
 * least-work relay's plain XADDs (its seven fields, and the relay's ten envelope fields) against
 * `lua/publish.lua` and a script doing only the same XADDs. On a throwaway Redis, each variant sends
 * 300 batches of 1,000 events (one pipeline or one script call per batch), three rounds in turn; prints
 * the Redis process's CPU (from /proc: parsing and replies included) and its command time (INFO
 * commandstats), per event.
 *
 *   npm run build && node bench/diagnostics/xadd-cost.mjs
 */
import Redis from "ioredis"
import { publishScript } from "../../dist/relay/4-Publish.js"
import { envelopeFields } from "../../dist/shared/Envelope.js"
import { procSample, startRedis } from "../lib/servers.mjs"
import { median, round } from "../lib/stats.mjs"

const batches = 300
const size = 1000
const pad = "x".repeat(96)
const event = (tag, i) => ({
  event_id: `${tag}-${i}-0000-0000-000000000000`,
  event_type: "OrderPlaced",
  topic: "orders",
  aggregate_type: "",
  aggregate_id: `order-${i % 1000}`,
  tenant_id: "",
  schema_version: "1",
  occurred_at: "2026-11-22T08:00:00.000000Z",
  payload: JSON.stringify({ n: i, total: 10.5, currency: "EUR", pad }),
  headers: "{}"
})
const seven = ["event_id", "event_type", "topic", "aggregate_id", "occurred_at", "payload", "headers"]
const ten = envelopeFields
const xaddOnly = `
local at = 4 + 2 * tonumber(ARGV[3])
at = at + 1 + tonumber(ARGV[at])
local base = at + 1 + tonumber(ARGV[at]) + 2
for b = base, #ARGV, 10 do
  redis.call('XADD', KEYS[1], '*', 'event_id', ARGV[b], 'event_type', ARGV[b + 1],
    'topic', ARGV[b + 2], 'aggregate_type', ARGV[b + 3], 'aggregate_id', ARGV[b + 4], 'tenant_id', ARGV[b + 5],
    'schema_version', ARGV[b + 6], 'occurred_at', ARGV[b + 7], 'payload', ARGV[b + 8], 'headers', ARGV[b + 9])
end
return 0`
const keys = ["s", "{s}:attempts", "{s}:orphans", "{s}:fence", "{s}:inflight"]

/** One script call's arguments as the relay sends them (lua-cost.mjs has the same). */
const scriptArgs = (tag, token, forget) => {
  const events = Array.from({ length: size }, (_, i) => event(tag, i))
  const args = ["0", "3600000", "1", "7", "1", String(forget.length), ...forget, "0"]
  args.push(token, `7:1|${events.map((e) => e.event_id).join(",")}`)
  for (const e of events) for (const f of ten) args.push(e[f])
  return args
}
const plain = (fields) => async (r, k, tag) => {
  const pipeline = r.pipeline()
  for (let i = 0; i < size; i++) {
    const e = event(tag, i)
    const args = []
    for (const f of fields) args.push(f, e[f])
    pipeline.xadd("s", "*", ...args)
  }
  await pipeline.exec()
}
const script = (sha) => async (r, k, tag) => {
  await r.evalsha(sha, 5, ...keys, ...scriptArgs(tag, `t${k}`, k > 0 ? [`t${k - 1}`] : []))
}

const server = await startRedis()
const r = new Redis(server.url)
try {
  const variants = {
    "plain XADD, 7 fields (least-work relay)": plain(seven),
    "plain XADD, 10 fields (the envelope)": plain(ten),
    "script: XADDs only, 10 fields": script(await r.script("LOAD", xaddOnly)),
    "lua/publish.lua": script(await r.script("LOAD", publishScript))
  }
  const results = Object.fromEntries(Object.keys(variants).map((name) => [name, { cpu: [], command: [] }]))
  for (let turn = 1; turn <= 3; turn++) {
    for (const [name, send] of Object.entries(variants)) {
      await r.del(...keys)
      await r.config("RESETSTAT")
      const before = procSample(server.pid).cpuTicks
      for (let k = 0; k < batches; k++) await send(r, k, `${turn}-${k}`)
      const ticks = procSample(server.pid).cpuTicks - before
      const usec = (await r.info("commandstats")).split("\n")
        .filter((l) => /^cmdstat_(xadd|evalsha):/.test(l))
        .reduce((sum, l) => sum + Number(/usec=(\d+)/.exec(l)[1]), 0)
      const events = batches * size
      results[name].cpu.push(round((ticks * 1e4) / events, 2))
      results[name].command.push(round(usec / events, 2))
    }
  }
  console.log(`Redis µs per event, ${batches} batches of ${size}, three rounds in turn (median, then each round)`)
  for (const [name, { command, cpu }] of Object.entries(results)) {
    console.log(
      `  ${name.padEnd(42)} CPU ${median(cpu)} (${cpu.join(", ")})   command time ${median(command)} (${
        command.join(", ")
      })`
    )
  }
} finally {
  r.disconnect()
  await server.stop()
}
