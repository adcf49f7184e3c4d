/**
 * The competitors, each behind the same small interface: how to lay out its database, how a producer
 * writes one event (from Node and from pgbench), how to bulk-insert a backlog, how to start its process,
 * and how many events are still waiting. `relayBaseline(dir)` adds another build of outbox-relay as a
 * competitor of its own, for A/B runs (`npm run bench -- --baseline <dir>`).
 */
import { Logger, runMigrations } from "graphile-worker"
import { execFile, spawn } from "node:child_process"
import { createWriteStream, mkdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { promisify } from "node:util"
import postgres from "postgres"

export const root = new URL("../..", import.meta.url).pathname.replace(/\/$/, "")
export const logDir = join(root, ".bench", "logs")
mkdirSync(logDir, { recursive: true })

/** The common event: ~150 bytes of JSON payload, one topic. */
export const PAD = "x".repeat(96)
export const TOPIC = "orders"
/** SQL expression of the backlog payload (jsonb) for generate_series row `g`. */
const payloadSql = `jsonb_build_object('n', g, 'total', 10.5, 'currency', 'EUR', 'pad', '${PAD}')`

const quietLogger = new Logger(() => (level, message) => {
  if (level === "error") process.stderr.write(`[graphile ${level}] ${message}\n`)
})

/** Spawns a competitor process (in `cwd`, by default the project root), its output in .bench/logs/<name>.log. */
const spawnLogged = (name, command, args, env, cwd = root) => {
  const file = join(logDir, `${name}.log`)
  const out = createWriteStream(file, { flags: "a" })
  out.write(`\n==== ${new Date().toISOString()} ${command} ${args.join(" ")}\n`)
  const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
  child.stdout.pipe(out, { end: false })
  child.stderr.pipe(out, { end: false })
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })))
  const isRunning = () => child.exitCode === null && child.signalCode === null
  return {
    pid: child.pid,
    isRunning,
    exited,
    logFile: file,
    logTail: () => {
      try {
        return readFileSync(file, "utf8").split("\n").slice(-15).join("\n")
      } catch {
        return ""
      }
    },
    stop: async (timeoutMs = 15_000) => {
      if (!isRunning()) return exited
      child.kill("SIGTERM")
      const t = setTimeout(() => child.kill("SIGKILL"), timeoutMs)
      const r = await exited
      clearTimeout(t)
      out.end()
      return r
    }
  }
}

const relayEnv = (dbUrl, redisUrl, streamPrefix, extra = {}) => ({
  RELAY_DATABASE_URL: dbUrl,
  RELAY_REDIS_URL: redisUrl,
  RELAY_HTTP_PORT: "0",
  RELAY_LOG_LEVEL: "warn",
  RELAY_STREAM_PREFIX: streamPrefix,
  ...extra
})

/** How producers write to the relay's table (this build's and the baseline's, the least-work relay's too). */
const relayTable = {
  backlogSql: (from, to) =>
    `INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
     SELECT '${TOPIC}', 'OrderPlaced', 'order-' || (g % 1000), ${payloadSql} FROM generate_series(${from}, ${to}) g`,
  insertOne: {
    text: `INSERT INTO outbox_events (topic, event_type, aggregate_id, payload)
           VALUES ('${TOPIC}', 'OrderPlaced', $1, $2::text::jsonb)`
  },
  // One line per command: kept byte for byte as pgbench reads it.
  pgbenchScript: `\\set a random(1, 1000)
INSERT INTO outbox_events (topic, event_type, aggregate_id, payload) ` +
    `VALUES ('${TOPIC}', 'OrderPlaced', 'order-' || :a, '{"total": 10.5, "currency": "EUR", "pad": "${PAD}"}');
`,
  pendingSql: `SELECT count(*)::int AS n FROM outbox_events WHERE dead_at IS NULL AND published_at IS NULL`
}

/** outbox-relay as built in `dir` (dist/, sql/, lua/, node_modules): `node <dir>/dist/main.js [migrate]`. */
const relayBuild = ({ name, label, dir, settings }) => {
  const streamPrefix = `bench:${name}:`
  const main = join(dir, "dist", "main.js")
  return {
    name,
    label,
    /** Both builds of the relay share its scenario rules (trigger modes, the polling variant). */
    kind: "relay",
    dir,
    settings,
    streamPrefix,
    table: "outbox_events",
    setup: async (dbUrl, redisUrl) => {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, [main, "migrate"], {
        cwd: dir,
        env: { ...process.env, ...relayEnv(dbUrl, redisUrl, streamPrefix) },
        timeout: 60_000
      }).catch((e) => {
        throw new Error(`node ${main} migrate failed: ${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}`)
      })
      return { stdout, stderr }
    },
    backlogSql: relayTable.backlogSql,
    insertOne: relayTable.insertOne,
    pgbenchScript: relayTable.pgbenchScript,
    pendingSql: relayTable.pendingSql,
    // `nodeArgs` (e.g. --cpu-prof) survive the heap-tuning restart: main.js passes process.execArgv on.
    start: (dbUrl, redisUrl, extraEnv = {}, nodeArgs = []) =>
      spawnLogged(name, process.execPath, [...nodeArgs, main], relayEnv(dbUrl, redisUrl, streamPrefix, extraEnv), dir),
    hasTriggers: true
  }
}

const relaySettings = "defaults (RELAY_BATCH_SIZE etc. unset), RELAY_HTTP_PORT=0, RELAY_LOG_LEVEL=warn"
const relay = relayBuild({ name: "relay", label: "outbox-relay", dir: root, settings: relaySettings })

/** Another build of outbox-relay (a directory like /tmp/before), run beside this one in A/B runs. */
export const relayBaseline = (dir) =>
  relayBuild({
    name: "relay-baseline",
    label: "outbox-relay (baseline)",
    dir,
    settings: `the build in ${dir}, ${relaySettings}`
  })

const graphile = (mode) => ({
  name: mode === "best" ? "graphile" : "graphile-default",
  label: mode === "best" ? "graphile-worker (tuned)" : "graphile-worker (defaults)",
  settings: mode === "best"
    ? "concurrency 24, maxPoolSize 25, localQueue {size: 500}, completeJobBatchDelay 0, failJobBatchDelay 0"
    : "library defaults: concurrency 1, maxPoolSize 10, pollInterval 2000, no local queue, no batching",
  streamPrefix: `bench:${mode === "best" ? "graphile" : "graphile-default"}:`,
  table: "graphile_worker._private_jobs",
  setup: async (dbUrl) => {
    await runMigrations({ connectionString: dbUrl, logger: quietLogger })
  },
  backlogSql: (from, to) =>
    `SELECT graphile_worker.add_jobs(ARRAY(
       SELECT ROW('publish', json_build_object('topic', '${TOPIC}', 'event_type', 'OrderPlaced',
                  'aggregate_id', 'order-' || (g % 1000), 'payload', ${payloadSql}),
                  NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec
       FROM generate_series(${from}, ${to}) g))`,
  insertOne: {
    text: `SELECT 1 FROM graphile_worker.add_job('publish', json_build_object('topic', '${TOPIC}',
           'event_type', 'OrderPlaced', 'aggregate_id', $1::text, 'payload', $2::text::json))`
  },
  // One line per command: kept byte for byte as pgbench reads it.
  pgbenchScript: `\\set a random(1, 1000)
SELECT 1 FROM graphile_worker.add_job('publish', json_build_object('topic', '${TOPIC}', 'event_type', 'OrderPlaced', ` +
    `'aggregate_id', 'order-' || :a, 'payload', '{"total": 10.5, "currency": "EUR", "pad": "${PAD}"}'::json));
`,
  pendingSql: `SELECT count(*)::int AS n FROM graphile_worker._private_jobs`,
  start: (dbUrl, redisUrl) =>
    spawnLogged(mode === "best" ? "graphile" : "graphile-default", process.execPath, [
      "bench/competitors/graphile-worker.mjs"
    ], {
      BENCH_DATABASE_URL: dbUrl,
      BENCH_REDIS_URL: redisUrl,
      BENCH_STREAM_PREFIX: `bench:${mode === "best" ? "graphile" : "graphile-default"}:`,
      BENCH_MODE: mode
    }),
  hasTriggers: false
})

const classic = {
  name: "classic",
  label: "classic polling relay",
  settings: "poll every 300 ms, SELECT 100 unpublished rows ORDER BY id, per event one XADD + one UPDATE published_at",
  streamPrefix: "bench:classic:",
  table: "outbox_events",
  setup: async (_dbUrl, _redisUrl, sql) => {
    await sql.unsafe(`
      CREATE TABLE outbox_events (
        id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id     uuid        NOT NULL DEFAULT gen_random_uuid() UNIQUE,
        topic        text        NOT NULL,
        event_type   text        NOT NULL,
        aggregate_id text        NOT NULL DEFAULT '',
        payload      jsonb       NOT NULL DEFAULT '{}'::jsonb,
        headers      jsonb       NOT NULL DEFAULT '{}'::jsonb,
        occurred_at  timestamptz NOT NULL DEFAULT now(),
        created_at   timestamptz NOT NULL DEFAULT now(),
        published_at timestamptz
      );
      CREATE INDEX outbox_events_unpublished ON outbox_events (id) WHERE published_at IS NULL;`)
  },
  backlogSql: relay.backlogSql,
  insertOne: relay.insertOne,
  pgbenchScript: relay.pgbenchScript,
  pendingSql: `SELECT count(*)::int AS n FROM outbox_events WHERE published_at IS NULL`,
  start: (dbUrl, redisUrl) =>
    spawnLogged("classic", process.execPath, ["bench/competitors/classic.mjs"], {
      BENCH_DATABASE_URL: dbUrl,
      BENCH_REDIS_URL: redisUrl,
      BENCH_STREAM_PREFIX: "bench:classic:"
    }),
  hasTriggers: false
}

const floor = {
  name: "floor",
  label: "least-work relay (yardstick)",
  settings: "bench/competitors/floor.mjs: two workers, each DELETE 1,000 RETURNING + one pipelined XADD round " +
    "trip + COMMIT, again at once while rows come back, else after 1 ms; no slots, dedupe, order or retry",
  streamPrefix: "bench:floor:",
  table: "outbox_events",
  setup: relay.setup,
  backlogSql: relay.backlogSql,
  insertOne: relay.insertOne,
  pgbenchScript: relay.pgbenchScript,
  pendingSql: relay.pendingSql,
  start: (dbUrl, redisUrl, extraEnv = {}) =>
    spawnLogged("floor", process.execPath, ["bench/competitors/floor.mjs"], {
      BENCH_DATABASE_URL: dbUrl,
      BENCH_REDIS_URL: redisUrl,
      BENCH_STREAM_PREFIX: "bench:floor:",
      ...extraEnv
    }),
  hasTriggers: true
}

export const competitors = {
  relay,
  graphile: graphile("best"),
  "graphile-default": graphile("default"),
  classic,
  floor
}
export const streamOf = (c) => c.streamPrefix + TOPIC

/**
 * A new database `db` on `pg` (a server from `startPostgres`, `admin` a connection to it) laid out for
 * competitor `c`, holding a backlog of `events` rows (analyzed), with `c`'s stream emptied on `redis`
 * (an ioredis client of the server at `redisUrl`). Returns the database's URL.
 */
export const backlogDatabase = async ({ admin, c, db, events, pg, redis, redisUrl }) => {
  await admin.unsafe(`CREATE DATABASE ${db}`)
  const url = pg.urlFor(db)
  await c.setup(url, redisUrl)
  const sql = postgres(url, { max: 1, onnotice: () => {} })
  try {
    await redis.unlink(streamOf(c))
    await sql.unsafe(c.backlogSql(1, events))
    await sql.unsafe("VACUUM ANALYZE outbox_events")
  } finally {
    await sql.end()
  }
  return url
}
