/**
 * Diagnostic preload (not part of `npm run bench`): what the relay allocates, by module and by function.
 * Loaded into the relay with NODE_OPTIONS; from 3 s after start it samples allocations for 10 s (V8's
 * sampling heap profiler, counting objects that minor and major GCs collected since), then writes MB/s
 * to stderr (the relay's log, `.bench/logs/relay.log` under the diagnostics).
 *
 *   STEADY_ENV='{"NODE_OPTIONS":"--import ./bench/diagnostics/alloc-sampler.mjs"}' \
 *     node bench/diagnostics/steady-statements.mjs 1000 15
 *
 * ALLOC_SURVIVORS=1 counts only what survived the minor GCs (promoted to the old generation).
 */
import { Session } from "node:inspector"

const session = new Session()
session.connect()
const post = (method, params = {}) =>
  new Promise((resolve, reject) =>
    session.post(method, params, (error, result) => error ? reject(error) : resolve(result))
  )

const short = (url) => url.replace(/.*node_modules\//, "").replace(/.*\/dist\//, "dist/")
const moduleOf = (url) =>
  url.includes("node_modules/") ? url.replace(/.*node_modules\//, "").split("/")[0] : url ? short(url) : "(native)"

setTimeout(async () => {
  await post("HeapProfiler.enable")
  await post("HeapProfiler.startSampling", {
    samplingInterval: 4096,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: process.env.ALLOC_SURVIVORS !== "1"
  })
  const started = Date.now()
  setTimeout(async () => {
    const { profile } = await post("HeapProfiler.stopSampling")
    const seconds = (Date.now() - started) / 1000
    const byFunction = new Map()
    const byModule = new Map()
    let total = 0
    const walk = (node) => {
      const { callFrame: frame, selfSize } = node
      const key = `${frame.functionName || "(anonymous)"} ${short(frame.url)}:${frame.lineNumber + 1}`
      total += selfSize
      byFunction.set(key, (byFunction.get(key) ?? 0) + selfSize)
      byModule.set(moduleOf(frame.url), (byModule.get(moduleOf(frame.url)) ?? 0) + selfSize)
      node.children.forEach(walk)
    }
    walk(profile.head)
    const top = (map, n) =>
      [...map].sort((a, b) => b[1] - a[1]).slice(0, n).map(([key, bytes]) =>
        `${(bytes / seconds / 1e3).toFixed(0).padStart(8)} KB/s  ${key}`
      )
    process.stderr.write(
      [
        `[alloc-sampler] ${(total / seconds / 1e6).toFixed(1)} MB/s over ${seconds.toFixed(1)} s`,
        ...top(byModule, 10),
        ...top(byFunction, 30)
      ].join("\n") + "\n"
    )
  }, 10_000).unref()
}, 3_000).unref()
