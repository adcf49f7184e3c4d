/**
 * The chaos suite's Redis: AOF on with `appendfsync always` from the first command on (so an
 * acknowledged write survives SIGTERM and SIGKILL alike) and `maxmemory-policy noeviction` (so a
 * memory limit makes writes fail with OOM instead of dropping keys). test/support/redisServer.ts has
 * no appendfsync option; rather than edit it, this spawns `redis-server` itself, and only without a
 * local binary falls back to that helper's container and sets appendfsync at runtime after each start.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Redis } from "ioredis"
import { freePort, pollUntil } from "../support/ports.js"
import { findBinary, isRunning, onProcessExit, waitForChildExit } from "../support/processes.js"
import { pingRedis, startRedisServer } from "../support/redisServer.js"

export interface AofRedisHandle {
  readonly url: string
  readonly port: number
  /** SIGTERM (AOF flushed) and wait for the exit. */
  readonly stop: () => Promise<void>
  /** SIGKILL and wait for the exit (with appendfsync always nothing acknowledged is lost). */
  readonly kill: () => Promise<void>
  /** Start again on the same port and directory; resolves once it answers PING (AOF loaded). */
  readonly start: () => Promise<void>
  readonly dispose: () => Promise<void>
}

/** Runs one command on a short-lived connection (never queued while Redis is away). */
export const redisCommand = async <A>(url: string, run: (redis: Redis) => Promise<A>): Promise<A> => {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, connectTimeout: 2_000 })
  redis.on("error", () => {})
  try {
    await redis.connect()
    return await run(redis)
  } finally {
    redis.disconnect()
  }
}

export const startAofRedis = async (): Promise<AofRedisHandle> => {
  const binary = findBinary("redis-server")
  if (!binary) {
    const server = await startRedisServer({ appendonly: true })
    const always = () => redisCommand(server.url, (r) => r.config("SET", "appendfsync", "always", "maxmemory-policy", "noeviction"))
    await always()
    return {
      url: server.url,
      port: server.port,
      stop: server.stop,
      kill: server.kill,
      start: async () => {
        await server.start()
        await always()
      },
      dispose: server.dispose
    }
  }

  const dir = mkdtempSync(join(tmpdir(), "outbox-chaos-redis-"))
  const removeDir = () => rmSync(dir, { recursive: true, force: true, maxRetries: 3 })
  const unregisterDir = onProcessExit(removeDir)
  const port = await freePort()
  const args = [
    "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir, "--daemonize", "no",
    "--logfile", "", "--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction"
  ]
  let child: ChildProcess | undefined
  let output = ""

  const start = async () => {
    if (child && isRunning(child)) return
    const current = spawn(binary, args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] })
    child = current
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString("utf8")).slice(-4_000)
    }
    current.stdout?.on("data", collect)
    current.stderr?.on("data", collect)
    const unregister = onProcessExit(() => current.kill("SIGKILL"))
    current.once("exit", unregister)
    await pollUntil(`redis-server on port ${port}`, () => pingRedis("127.0.0.1", port), {
      timeoutMs: 60_000,
      intervalMs: 50,
      abort: () =>
        isRunning(current)
          ? undefined
          : new Error(`redis-server exited (${current.exitCode ?? current.signalCode}) on port ${port}:\n${output}`)
    })
  }

  const signal = async (sig: NodeJS.Signals) => {
    const current = child
    if (!current || !isRunning(current)) return
    current.kill(sig)
    await waitForChildExit(current, 30_000)
  }

  let disposed = false
  const dispose = async () => {
    if (disposed) return
    disposed = true
    await signal("SIGKILL")
    removeDir()
    unregisterDir()
  }

  try {
    await start()
  } catch (error) {
    await dispose()
    throw error
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop: () => signal("SIGTERM"),
    kill: () => signal("SIGKILL"),
    start,
    dispose
  }
}
