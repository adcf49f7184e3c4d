/**
 * Throwaway Redis servers: one for the whole test run (globalSetup), extra ones for tests that stop,
 * kill and restart Redis under the relay or run it with AOF or a memory limit, and bench/'s. Spawned from the local
 * `redis-server` binary in a temp dir, or, without it, a testcontainers `redis:7-alpine`. Either way
 * the port survives stop/start.
 */
import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { connect } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { connect as connectTls } from "node:tls"
import { startFixedPortContainer } from "./containers.ts"
import { freePort } from "./ports.ts"
import { findBinary, isRunning, superviseServer } from "./processes.ts"
import { pollUntil } from "./wait.ts"

export interface RedisServerOptions {
  /** Turn on the append-only file (data survives stop/kill + start). Default false. */
  readonly appendonly?: boolean
  /** `maxmemory`, e.g. "2mb" (with `maxmemory-policy noeviction`, so writes fail when full). */
  readonly maxmemory?: string
  /** `appendfsync` with the append-only file: "always" loses nothing acknowledged, even on SIGKILL. */
  readonly appendfsync?: "always" | "everysec" | "no"
  /** `maxmemory-policy noeviction` even without a `maxmemory` (set later with CONFIG SET). */
  readonly noeviction?: boolean
  /**
   * Serve TLS only (`--port 0 --tls-port`): the URL is `rediss://`. `authClients` "yes": clients must
   * present a certificate the CA signed. Local redis-server only.
   */
  readonly tls?: {
    readonly cert: string
    readonly key: string
    readonly ca: string
    readonly authClients: "yes" | "no" | "optional"
    /** The client certificate the readiness PING presents (needed when `authClients` is "yes"). */
    readonly client?: { readonly cert: string; readonly key: string }
  }
  /** Start as a replica of the Redis on this local port (`--replicaof 127.0.0.1 <port>`). */
  readonly replicaOf?: number
  /** A Redis Cluster node (`--cluster-enabled yes`, its nodes.conf in its own dir). Local redis-server only. */
  readonly cluster?: boolean
}

export interface RedisServerHandle {
  readonly kind: "spawned" | "container"
  readonly url: string
  readonly port: number
  /** Graceful stop (SIGTERM: no RDB save, AOF flushed); resolves once the server has exited. */
  readonly stop: () => Promise<void>
  /** SIGKILL; resolves once the server has exited. */
  readonly kill: () => Promise<void>
  /** Starts it again on the same port (same dir); resolves once it answers PING. */
  readonly start: () => Promise<void>
  /** Kills it and removes its files. Idempotent. */
  readonly dispose: () => Promise<void>
  /** The server's process id while it runs; undefined in a container. */
  readonly pid: () => number | undefined
}

/** One raw PING over TCP; resolves on +PONG, rejects otherwise (refused, -LOADING, timeout). */
export const pingRedis = (
  host: string,
  port: number,
  timeoutMs = 1_000,
  tls?: RedisServerOptions["tls"]
): Promise<void> =>
  new Promise((resolve, reject) => {
    const socket = tls
      ? connectTls({
        host,
        port,
        ca: readFileSync(tls.ca),
        ...(tls.client ? { cert: readFileSync(tls.client.cert), key: readFileSync(tls.client.key) } : {})
      })
      : connect({ host, port })
    let reply = ""
    const done = (error?: Error) => {
      socket.destroy()
      if (error) reject(error)
      else resolve()
    }
    socket.setTimeout(timeoutMs, () => done(new Error(`no PING reply from ${host}:${port}`)))
    socket.once("error", done)
    socket.once(tls ? "secureConnect" : "connect", () => socket.write("PING\r\n"))
    socket.on("data", (chunk) => {
      reply += chunk.toString("utf8")
      if (!reply.includes("\r\n")) return
      if (reply.startsWith("+PONG")) done()
      else done(new Error(`redis ${host}:${port} answered ${reply.trim()}`))
    })
  })

const configArgs = (options: RedisServerOptions): Array<string> => [
  "--appendonly",
  options.appendonly ? "yes" : "no",
  ...(options.appendfsync ? ["--appendfsync", options.appendfsync] : []),
  ...(options.maxmemory ? ["--maxmemory", options.maxmemory] : []),
  ...(options.maxmemory || options.noeviction ? ["--maxmemory-policy", "noeviction"] : []),
  ...(options.replicaOf === undefined ? [] : ["--replicaof", "127.0.0.1", String(options.replicaOf)]),
  ...(options.cluster
    ? ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"]
    : [])
]

const spawnLocal = async (binary: string, options: RedisServerOptions): Promise<RedisServerHandle> => {
  const dir = mkdtempSync(join(tmpdir(), "outbox-redis-"))
  const port = await freePort()
  // A cluster node's bus port is its own: the default (port + 10000) may be taken, or above 65535, or,
  // serving TLS only (port 0), the same 10000 for every node.
  const busPort = options.cluster ? await freePort() : undefined
  const args = [
    ...(options.tls
      ? [
        "--port",
        "0",
        "--tls-port",
        String(port),
        "--tls-cert-file",
        options.tls.cert,
        "--tls-key-file",
        options.tls.key,
        "--tls-ca-cert-file",
        options.tls.ca,
        "--tls-auth-clients",
        options.tls.authClients,
        // A TLS cluster node speaks TLS to its peers and replicas too, as a client with the client
        // certificate (the cluster bus wants one).
        ...(options.cluster ? ["--tls-cluster", "yes", "--tls-replication", "yes"] : []),
        ...(options.cluster && options.tls.client
          ? ["--tls-client-cert-file", options.tls.client.cert, "--tls-client-key-file", options.tls.client.key]
          : [])
      ]
      : ["--port", String(port)]),
    ...(busPort === undefined ? [] : ["--cluster-port", String(busPort)]),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--dir",
    dir,
    "--daemonize",
    "no",
    "--logfile",
    "",
    ...configArgs(options)
  ]
  let output = ""
  const server = await superviseServer({
    spawn: () => {
      const child = spawn(binary, args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] })
      const collect = (chunk: Buffer) => {
        output = (output + chunk.toString("utf8")).slice(-4_000)
      }
      child.stdout?.on("data", collect)
      child.stderr?.on("data", collect)
      return child
    },
    ready: (child) =>
      pollUntil(`redis-server on port ${port}`, () => pingRedis("127.0.0.1", port, 1_000, options.tls), {
        timeoutMs: 30_000,
        intervalMs: 50,
        abort: () =>
          isRunning(child)
            ? undefined
            : new Error(`redis-server exited (${child.exitCode ?? child.signalCode}) on port ${port}:\n${output}`)
      }),
    exitSignal: "SIGKILL",
    disposeSignal: "SIGKILL",
    removeFiles: () => rmSync(dir, { recursive: true, force: true, maxRetries: 3 })
  })
  return {
    kind: "spawned",
    url: `${options.tls ? "rediss" : "redis"}://127.0.0.1:${port}`,
    port,
    stop: () => server.signal("SIGTERM"),
    kill: () => server.signal("SIGKILL"),
    start: server.start,
    dispose: server.dispose,
    pid: server.pid
  }
}

const startContainer = async (options: RedisServerOptions): Promise<RedisServerHandle> => {
  if (options.tls || options.cluster) {
    throw new Error("a TLS or cluster redis-server needs the local binary (apt-get install redis-server)")
  }
  const container = await startFixedPortContainer({
    image: "redis:7-alpine",
    containerPort: 6379,
    command: ["redis-server", "--save", "", ...configArgs(options)],
    readyLog: /Ready to accept connections/
  })
  const ready = () =>
    pollUntil(`redis container on port ${container.port}`, () => pingRedis(container.host, container.port), {
      timeoutMs: 60_000
    })
  try {
    await ready()
  } catch (error) {
    await container.dispose()
    throw error
  }
  return {
    kind: "container",
    url: `redis://${container.host}:${container.port}`,
    port: container.port,
    stop: () => container.signal("SIGTERM"),
    kill: () => container.signal("SIGKILL"),
    start: async () => {
      await container.start()
      await ready()
    },
    dispose: container.dispose,
    pid: () => undefined
  }
}

/** A throwaway Redis, from the local `redis-server` when there is one, else from Docker. */
export const startRedisServer = async (options: RedisServerOptions = {}): Promise<RedisServerHandle> => {
  const binary = findBinary("redis-server")
  return binary ? spawnLocal(binary, options) : startContainer(options)
}
