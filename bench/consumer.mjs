#!/usr/bin/env node
/**
 * The consumer scenario: how fast `startConsumer` empties a stream, against the least work a consumer
 * must do (bench/competitors/least-work-consumer.mjs). A throwaway redis-server of its own holds one
 * stream of relay-shaped entries (the envelope fields in the relay's order, payload and headers as
 * Postgres prints jsonb); every row reads all of it as a fresh group, in a process of its own
 * (bench/lib/consumer-row.mjs), with a no-op handler: a plain function, and in the row "startConsumer
 * async" an async one (a promise per message, as most handlers are). Rounds rotate which row goes first; each row
 * reports the median of its rounds and its per-round ratio to least-work.
 *
 *   npm run bench -- --scenario consumer [--quick] [--rounds n] [--baseline <dir>]
 *   node bench/consumer.mjs [--quick] [--rounds n] [--baseline <dir>] [--messages n]   (after npm run build)
 *
 * With `--baseline <dir>` (another build, see bench/README.md) its startConsumer runs as three more rows
 * (defaults, best, async).
 */
import Redis from "ioredis"
import { execFile } from "node:child_process"
import { randomUUID } from "node:crypto"
import { resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { promisify } from "node:util"
import { root } from "./lib/competitors.mjs"
import { startRedis } from "./lib/servers.mjs"
import { fmtNum, median, round } from "./lib/stats.mjs"

/** The settings docs/consumer.md calls best for throughput: the row "startConsumer best". */
export const bestConsumerOptions = { batchSize: 1000, concurrency: 64 }

const run = promisify(execFile)

/** A relay-shaped payload, as `payload::text` of a jsonb column prints it. */
const payloadText = (i) =>
  `{"items": [{"sku": "sku-${i % 31}", "quantity": ${1 + (i % 3)}}, {"sku": "sku-gift", "quantity": 1}], ` +
  `"total": ${10 + (i % 100) / 4}, "orderId": "order-${i}", "currency": "EUR", "customerId": "customer-${i % 977}"}`

/** Fills `stream` with `count` entries in the relay's field order (src/shared/Envelope.ts). */
const fill = async (redis, stream, count) => {
  const { envelopeFields } = await import(pathToFileURL(`${root}/dist/shared/Envelope.js`).href)
  const occurredAt = new Date().toISOString().replace("Z", "000Z")
  for (let from = 0; from < count; from += 5_000) {
    const pipeline = redis.pipeline()
    for (let i = from; i < Math.min(count, from + 5_000); i++) {
      const values = {
        event_id: randomUUID(),
        event_type: "OrderPlaced",
        topic: "orders",
        aggregate_type: "order",
        aggregate_id: `order-${i % 1000}`,
        tenant_id: "",
        schema_version: "1",
        occurred_at: occurredAt,
        payload: payloadText(i),
        headers: "{}"
      }
      pipeline.xadd(stream, "*", ...envelopeFields.flatMap((field) => [field, values[field]]))
    }
    await pipeline.exec()
  }
}

export const runConsumerBench = async ({ quick, rounds, baselineDir, messages, log = console.log }) => {
  const count = messages ?? (quick ? 20_000 : 100_000)
  const roundCount = rounds ?? (quick ? 3 : 5)
  const rows = [
    { name: "least-work", row: "least-work", settings: "one connection, XREADGROUP COUNT 500, one XACK per read" },
    { name: "startConsumer defaults", row: "startConsumer", dist: `${root}/dist`, options: {} },
    { name: "startConsumer best", row: "startConsumer", dist: `${root}/dist`, options: bestConsumerOptions },
    // What most handlers are: an async function (a promise per message), with the default settings.
    { name: "startConsumer async", row: "startConsumer", dist: `${root}/dist`, options: {}, asyncHandler: true },
    ...(baselineDir
      ? [
        { name: "baseline defaults", row: "startConsumer", dist: `${baselineDir}/dist`, options: {} },
        { name: "baseline best", row: "startConsumer", dist: `${baselineDir}/dist`, options: bestConsumerOptions },
        { name: "baseline async", row: "startConsumer", dist: `${baselineDir}/dist`, options: {}, asyncHandler: true }
      ]
      : [])
  ]
  const server = await startRedis()
  const redis = new Redis(server.url)
  const stream = "outbox:orders"
  try {
    log(`  filling ${stream} with ${fmtNum(count)} relay-shaped entries`)
    await fill(redis, stream, count)
    const runs = Object.fromEntries(rows.map((r) => [r.name, []]))
    for (let round_ = 0; round_ < roundCount; round_++) {
      // Rotate who goes first, so a drifting machine or a warm Redis favours no row.
      const order = [...rows.slice(round_ % rows.length), ...rows.slice(0, round_ % rows.length)]
      for (const r of order) {
        const group = `bench-${round_}-${rows.indexOf(r)}`
        await redis.xgroup("CREATE", stream, group, "0")
        const { stdout } = await run(process.execPath, [`${root}/bench/lib/consumer-row.mjs`], {
          cwd: root,
          timeout: 300_000,
          env: {
            ...process.env,
            BENCH_REDIS_URL: server.url,
            BENCH_STREAM: stream,
            BENCH_GROUP: group,
            BENCH_MESSAGES: String(count),
            BENCH_ROW: r.row,
            BENCH_DIST: r.dist ?? "",
            BENCH_OPTIONS: JSON.stringify(r.options ?? {}),
            BENCH_HANDLER: r.asyncHandler ? "async" : "sync"
          }
        })
        const result = JSON.parse(stdout.trim().split("\n").at(-1))
        // The group's own word that everything was read and acknowledged, not only the row's.
        const info = (await redis.xinfo("GROUPS", stream)).find((g) => g[1] === group)
        const field = (name) => Number(info[info.indexOf(name) + 1])
        if (field("entries-read") !== count || field("pending") !== 0) {
          throw new Error(`${r.name}: group read ${field("entries-read")} of ${count}, ${field("pending")} pending`)
        }
        await redis.xgroup("DESTROY", stream, group)
        runs[r.name].push(result)
      }
      log(
        `  round ${round_ + 1}/${roundCount}: ` +
          rows.map((r) => `${r.name} ${fmtNum(runs[r.name][round_].rate)}`).join(", ") + " messages/s"
      )
    }
    const floor = runs["least-work"].map((x) => x.rate)
    const out = rows.map((r) => {
      const rates = runs[r.name].map((x) => x.rate)
      const ratios = rates.map((rate, i) => round(rate / floor[i], 3))
      return {
        name: r.name,
        settings: r.settings ?? `${JSON.stringify(r.options)}${r.asyncHandler ? ", async handler" : ""}`,
        rates: rates.map((x) => Math.round(x)),
        rate: Math.round(median(rates)),
        ratios,
        medianRatio: round(median(ratios), 3),
        cpuMicrosPerMessage: round(median(runs[r.name].map((x) => x.cpuMicrosPerMessage)), 1),
        gcMillis: Math.round(median(runs[r.name].map((x) => x.gcMillis))),
        maxRssMiB: Math.round(Math.max(...runs[r.name].map((x) => x.maxRssMiB)))
      }
    })
    for (const r of out) {
      log(
        `  ${r.name}: median ${fmtNum(r.rate)} messages/s; per round / least-work ${r.ratios.join(", ")}; ` +
          `median ${r.medianRatio}`
      )
    }
    return { messages: count, rounds: roundCount, best: bestConsumerOptions, rows: out }
  } finally {
    redis.disconnect()
    await server.stop()
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const argv = process.argv.slice(2)
  const option = (name) => {
    const i = argv.indexOf(`--${name}`)
    return i < 0 ? undefined : argv[i + 1]
  }
  const result = await runConsumerBench({
    quick: argv.includes("--quick"),
    rounds: option("rounds") === undefined ? undefined : Number(option("rounds")),
    messages: option("messages") === undefined ? undefined : Number(option("messages")),
    baselineDir: option("baseline") === undefined ? undefined : resolve(option("baseline"))
  })
  console.log(JSON.stringify(result, null, 2))
}
