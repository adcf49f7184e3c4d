#!/usr/bin/env node
/**
 * Diagnostic (not part of `npm run bench`): what one SMALL batch costs, which is what a relay pays under
 * a steady trickle of events (at 1,000-5,000 events/s its batches hold a handful of rows). On throwaway
 * servers, a backlog is drained with RELAY_BATCH_SIZE=<batch> by outbox-relay (`node dist/main.js`,
 * default settings otherwise) and by the least-work relay (bench/competitors/floor.mjs) with the same
 * batch size; prints the process's CPU time (user + system, from /proc) and wall time per batch, from
 * the first claimed row to an empty table. Two rounds each, interleaved.
 *
 *   npm run build && node bench/diagnostics/batch-cost.mjs [batch=10] [rows=30000]
 */
import postgres from "postgres"
import { competitors } from "../lib/competitors.mjs"
import { procSample, sleep, startPostgres, startRedis } from "../lib/servers.mjs"

const batch = Number(process.argv[2] ?? 10)
const rows = Number(process.argv[3] ?? 30000)
const pg = await startPostgres()
const rs = await startRedis()
const admin = postgres(pg.url, { max: 1, onnotice: () => {} })
let n = 0
try {
  for (let round = 1; round <= 2; round++) {
    for (const name of ["relay", "floor"]) {
      const c = competitors[name]
      const db = `batchcost${n++}`
      await admin.unsafe(`CREATE DATABASE ${db}`)
      const url = pg.urlFor(db)
      await c.setup(url, rs.url)
      const sql = postgres(url, { max: 1, onnotice: () => {} })
      await sql.unsafe(c.backlogSql(1, rows))
      await sql.unsafe("VACUUM ANALYZE outbox_events")
      const p = c.start(
        url,
        rs.url,
        name === "relay" ? { RELAY_BATCH_SIZE: String(batch) } : { BENCH_BATCH_SIZE: String(batch) }
      )
      let start
      while (true) {
        const [{ n: left }] = await sql.unsafe(c.pendingSql)
        if (start === undefined && left < rows) start = { cpu: procSample(p.pid), at: performance.now() }
        if (left === 0) break
        if (!p.isRunning()) throw new Error(`${name} exited:\n${p.logTail()}`)
        await sleep(20)
      }
      const end = { cpu: procSample(p.pid), at: performance.now() }
      const batches = rows / batch
      const perBatch = (ticks) => ((ticks * 10_000) / batches).toFixed(0)
      console.log(
        `round ${round} ${c.label.padEnd(30)} batch ${batch}: CPU ${
          perBatch(end.cpu.cpuTicks - start.cpu.cpuTicks)
        } µs/batch ` +
          `(system ${perBatch(end.cpu.sysTicks - start.cpu.sysTicks)}), wall ${
            ((end.at - start.at) * 1000 / batches).toFixed(0)
          } µs/batch`
      )
      await p.stop()
      await sql.end()
      await admin.unsafe(`DROP DATABASE ${db} WITH (FORCE)`)
    }
  }
} finally {
  await admin.end()
  await pg.stop()
  await rs.stop()
}
