/**
 * A real Prometheus (Debian's /usr/bin/prometheus, scraping every second) scrapes a running relay
 * daemon and a consumer's metrics server, and loads deploy/prometheus/alerts.yml: through its HTTP
 * API the relay's and the consumer's series are there with their labels, and every alert rule is
 * loaded and evaluated without error.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest"
import { type ConsumerHandle, startConsumer } from "../src/index.js"
import { freePort } from "./support/ports.js"
import { onProcessExit, waitForChildExit } from "./support/processes.js"
import { makeTestEnv, type TestEnv } from "./support/relayHarness.js"
import { killAllRelayProcesses, startRelayProcess } from "./support/relayProcess.js"
import { eventually } from "./support/wait.js"

const alertsFile = fileURLToPath(new URL("../deploy/prometheus/alerts.yml", import.meta.url))

interface Sample {
  readonly metric: Record<string, string>
  readonly value: [number, string]
}

describe("Prometheus scraping the relay and a consumer", () => {
  let t: TestEnv
  let consumer: ConsumerHandle | undefined
  let prometheus: ChildProcess | undefined
  let unregister: (() => void) | undefined
  let dir: string
  let api: string
  const group = "prom-check"

  beforeAll(async () => {
    t = await makeTestEnv("prom", { RELAY_LOG_LEVEL: "info", RELAY_METRICS_INTERVAL: "1 second" })
    await t.sql`INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
                SELECT 'orders', 'Counted', 'agg-' || (g % 5), jsonb_build_object('seq', g)
                FROM generate_series(1, 50) AS g`
    const relay = startRelayProcess(t.env)
    const listening = await relay.waitForLine(
      (_, parsed) => (parsed as { message?: string } | undefined)?.message === "admin http server listening",
      20_000
    )
    const relayPort = (listening.parsed as { annotations: { port: number } }).annotations.port
    consumer = await startConsumer({
      redisUrl: inject("redisUrl"),
      stream: `${t.prefix}orders`,
      group,
      logLevel: "error",
      metricsPort: 0,
      handler: () => {}
    })
    const consumerTarget = new URL(consumer.metricsUrl!).host

    dir = mkdtempSync(join(tmpdir(), "outbox-prometheus-"))
    const config = join(dir, "prometheus.yml")
    writeFileSync(
      config,
      JSON.stringify({
        global: { scrape_interval: "1s", evaluation_interval: "1s" },
        rule_files: [alertsFile],
        scrape_configs: [
          { job_name: "outbox-relay", static_configs: [{ targets: [`127.0.0.1:${relayPort}`] }] },
          { job_name: "outbox-consumer", static_configs: [{ targets: [consumerTarget] }] }
        ]
      })
    )
    const port = await freePort()
    api = `http://127.0.0.1:${port}/api/v1`
    prometheus = spawn("/usr/bin/prometheus", [
      `--config.file=${config}`,
      `--web.listen-address=127.0.0.1:${port}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      "--log.level=warn"
    ], { stdio: "ignore" })
    const child = prometheus
    unregister = onProcessExit(() => child.kill("SIGKILL"))
  }, 30_000)

  afterAll(async () => {
    if (prometheus) {
      prometheus.kill("SIGTERM")
      await waitForChildExit(prometheus, 5_000)
    }
    unregister?.()
    await consumer?.stop()
    await killAllRelayProcesses("SIGTERM")
    await t?.dispose()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  /** The result of an instant query; an empty list while Prometheus is not up or has no data yet. */
  const query = async (promql: string): Promise<Array<Sample>> => {
    try {
      const response = await fetch(`${api}/query?query=${encodeURIComponent(promql)}`)
      const body = (await response.json()) as { status: string; data: { result: Array<Sample> } }
      return body.status === "success" ? body.data.result : []
    } catch {
      return []
    }
  }

  it("sees the relay's counters, gauges and latency histogram", async () => {
    const relayed = await eventually(() => query("outbox_events_relayed_total > 0"), (r) => r.length > 0, 20_000)
    expect(relayed).toHaveLength(1)
    expect(relayed[0]!.metric).toMatchObject({ job: "outbox-relay" })
    expect(Number(relayed[0]!.value[1])).toBe(50)

    // Every event's latency was recorded, in buckets from 0.5 ms up.
    const latency = await query(`outbox_relay_latency_seconds_bucket{le="+Inf"}`)
    expect(latency.map((s) => Number(s.value[1]))).toEqual([50])
    const buckets = await query("outbox_relay_latency_seconds_bucket")
    expect(buckets.map((s) => s.metric.le)).toContain("0.0005")

    // The alert inputs the relay polls: Redis memory (the test server has no maxmemory), max attempts.
    const memory = await eventually(() => query("outbox_redis_used_memory_bytes > 0"), (r) => r.length > 0, 10_000)
    expect(memory).toHaveLength(1)
    expect((await query("outbox_redis_maxmemory_bytes")).map((s) => s.value[1])).toEqual(["0"])
    expect((await query("outbox_pending_max_attempts")).map((s) => s.value[1])).toEqual(["0"])
  }, 30_000)

  it("sees the consumer's series labelled by stream and group", async () => {
    const processed = await eventually(
      () => query("outbox_consumer_processed_total > 0"),
      (r) => r.length > 0 && Number(r[0]!.value[1]) === 50,
      20_000
    )
    expect(processed).toHaveLength(1)
    expect(processed[0]!.metric).toMatchObject({ job: "outbox-consumer", stream: `${t.prefix}orders`, group })
    expect(Number(processed[0]!.value[1])).toBe(50)
    const handled = await query(`outbox_consumer_handler_seconds_count{group="${group}"}`)
    expect(handled.map((s) => Number(s.value[1]))).toEqual([50])
  }, 30_000)

  it("loads every alert rule and evaluates it without error", async () => {
    const expected = [
      "OutboxBacklogHigh",
      "OutboxConsumerDeadLettering",
      "OutboxConsumerLagHigh",
      "OutboxDeadLettersGrowing",
      "OutboxEventRetriedOften",
      "OutboxListenDown",
      "OutboxOldestPendingHigh",
      "OutboxRedisBackpressure",
      "OutboxRedisMemoryHigh",
      "OutboxRelayDown",
      "OutboxRelayNotReady",
      "OutboxSlotsUnowned"
    ]
    type Rule = { name: string; health: string; state: string }
    const rules = await eventually(
      async () => {
        const response = await fetch(`${api}/rules?type=alert`)
        const body = (await response.json()) as { data: { groups: Array<{ rules: Array<Rule> }> } }
        return body.data.groups.flatMap((g) => g.rules)
      },
      (all) => all.length === expected.length && all.every((rule) => rule.health === "ok"),
      10_000
    )
    expect(rules.map((rule) => rule.name).sort()).toEqual(expected)
    expect(rules.every((rule) => rule.health === "ok")).toBe(true)
    // A healthy relay and consumer: nothing fires (Redis without maxmemory included).
    expect(rules.filter((rule) => rule.state !== "inactive").map((rule) => rule.name)).toEqual([])
  }, 30_000)
})
