/**
 * A throwaway Redis Cluster: `masters` redis-server nodes (and `replicas` per master) spawned from the
 * local binary, joined by `redis-cli --cluster create`, ready once every node agrees on all 16384 slots.
 * Helpers move slots (`redis-cli --cluster reshard`) and fail a master over to its replica.
 */
import { Cluster } from "ioredis"
import { execFile } from "node:child_process"
import { readFileSync } from "node:fs"
import { promisify } from "node:util"
import { findBinary } from "./processes.ts"
import { type RedisServerHandle, startRedisServer } from "./redisServer.ts"
import { pollUntil } from "./wait.ts"

const run = promisify(execFile)

export interface ClusterNode {
  readonly id: string
  readonly port: number
  readonly master: boolean
  /** The master's id, for a replica. */
  readonly masterId: string | undefined
  /** Slot ranges served, for a master. */
  readonly slots: ReadonlyArray<readonly [number, number]>
}

export interface RedisClusterHandle {
  /** Seed URL naming every master: `redis://127.0.0.1:p1,127.0.0.1:p2,...`. */
  readonly url: string
  readonly servers: ReadonlyArray<RedisServerHandle>
  /** The cluster as a node sees it now (`CLUSTER NODES`; the first node's view unless `port` names another). */
  readonly nodes: (port?: number) => Promise<ReadonlyArray<ClusterNode>>
  /** A client of the whole cluster for the test's own reads (close it with `disconnect()`). */
  readonly client: () => Cluster
  /**
   * Moves `slots` slots from one master to another with `redis-cli --cluster reshard`; resolves once every
   * node's view agrees with the source's own (the new owners spread by gossip).
   */
  readonly reshard: (fromId: string, toId: string, slots: number) => Promise<void>
  /** `CLUSTER FAILOVER` on a replica of `masterId`; resolves once that replica is a master. */
  readonly failover: (masterId: string) => Promise<ClusterNode>
  readonly dispose: () => Promise<void>
}

/** `redis-cli` on PATH or in the usual places; the cluster tests need it. */
export const redisCli = (): string | undefined => findBinary("redis-cli")

/** redis-cli with `prefix` (its TLS flags for a TLS cluster) before `args`. */
const runCli = (prefix: ReadonlyArray<string>, args: ReadonlyArray<string>) =>
  run(redisCli() ?? "redis-cli", [...prefix, ...args], { timeout: 120_000, maxBuffer: 16 * 1024 * 1024 })

const parseNodes = (text: string): Array<ClusterNode> =>
  text.trim().split("\n").map((line) => {
    const [id, address, flags, masterId, , , , , ...slots] = line.split(" ")
    return {
      id: id!,
      port: Number(address!.split("@")[0]!.split(":")[1]),
      master: flags!.split(",").includes("master"),
      masterId: masterId === "-" ? undefined : masterId,
      slots: slots.filter((s) => !s.startsWith("[")).map((s) => {
        const [from, to] = s.split("-")
        return [Number(from), Number(to ?? from)] as const
      })
    }
  })

/** Starts `masters` masters with `replicas` replicas each and waits until the cluster is ok everywhere. */
export const startRedisCluster = async (
  options: {
    readonly masters?: number
    readonly replicas?: number
    /**
     * TLS only, on every port (clients, cluster bus, replication); the nodes present `client` to each
     * other, clients of the cluster need no certificate.
     */
    readonly tls?: {
      readonly cert: string
      readonly key: string
      readonly ca: string
      readonly client: { readonly cert: string; readonly key: string }
    }
  } = {}
): Promise<RedisClusterHandle> => {
  const masters = options.masters ?? 3
  const replicas = options.replicas ?? 0
  const tls = options.tls && { ...options.tls, authClients: "no" as const }
  const cli = (args: ReadonlyArray<string>) => runCli(tls ? ["--tls", "--cacert", tls.ca] : [], args)
  /** Whether the replica on `port` has its link to the master up (synced). */
  const linkUp = async (port: number) =>
    /master_link_status:up/.test((await cli(["-p", String(port), "info", "replication"])).stdout)
  const servers: Array<RedisServerHandle> = []
  const dispose = () => Promise.all(servers.map((s) => s.dispose())).then(() => undefined)
  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      servers.push(await startRedisServer({ cluster: true, ...(tls ? { tls } : {}) }))
    }
    const addresses = servers.map((s) => `127.0.0.1:${s.port}`)
    await cli(["--cluster", "create", ...addresses, "--cluster-replicas", String(replicas), "--cluster-yes"])
    const nodesOf = async (port: number) => (await cli(["-p", String(port), "cluster", "nodes"])).stdout
    // Ready: every node says ok and sees all the masters with their slots.
    await pollUntil("redis cluster ok on every node", async () => {
      for (const server of servers) {
        const info = (await cli(["-p", String(server.port), "cluster", "info"])).stdout
        if (!/cluster_state:ok/.test(info) || !/cluster_slots_ok:16384/.test(info)) throw new Error(info)
        const known = parseNodes(await nodesOf(server.port))
        if (known.filter((n) => n.master).length !== masters) throw new Error("masters not known yet")
        const self = known.find((n) => n.port === server.port)
        if (self && !self.master && !(await linkUp(server.port))) throw new Error(`replica ${server.port} syncing`)
      }
    }, { timeoutMs: 60_000, intervalMs: 200 })
    const nodes = async (port = servers[0]!.port) => parseNodes(await nodesOf(port))
    const masterPorts = (await nodes()).filter((n) => n.master).map((n) => n.port)
    const handle: RedisClusterHandle = {
      url: `${tls ? "rediss" : "redis"}://${masterPorts.map((p) => `127.0.0.1:${p}`).join(",")}`,
      servers,
      nodes,
      client: () => {
        const client = new Cluster(masterPorts.map((port) => ({ host: "127.0.0.1", port })), {
          redisOptions: { maxRetriesPerRequest: 2, ...(tls ? { tls: { ca: readFileSync(tls.ca) } } : {}) }
        })
        client.on("error", () => {})
        return client
      },
      reshard: async (fromId, toId, slots) => {
        await cli([
          "--cluster",
          "reshard",
          `127.0.0.1:${servers[0]!.port}`,
          "--cluster-from",
          fromId,
          "--cluster-to",
          toId,
          "--cluster-slots",
          String(slots),
          "--cluster-yes"
        ])
        const owned = async (port: number) =>
          JSON.stringify((await nodes(port)).filter((n) => n.master).map((n) => [n.id, n.slots]).sort())
        const source = (await nodes()).find((n) => n.id === fromId)!
        await pollUntil("every node's view of the moved slots", async () => {
          const truth = await owned(source.port)
          for (const server of servers) if ((await owned(server.port)) !== truth) throw new Error("views differ")
        }, { timeoutMs: 30_000, intervalMs: 100 })
      },
      failover: async (masterId) => {
        // A replica in sync with the master: a manual failover waits for it to catch up (5 s at most).
        const promoted = await pollUntil(`a replica of ${masterId} in sync`, async () => {
          for (const candidate of (await nodes()).filter((n) => n.masterId === masterId)) {
            if (await linkUp(candidate.port)) return candidate
          }
          throw new Error("none in sync yet")
        }, { timeoutMs: 30_000, intervalMs: 200 })
        let asked = 0
        return pollUntil(`replica ${promoted.port} promoted`, async () => {
          // Ask again when a manual failover timed out (the master did not pause in time).
          if (Date.now() - asked > 6_000) {
            asked = Date.now()
            await cli(["-p", String(promoted.port), "cluster", "failover"])
          }
          const now = parseNodes(await nodesOf(promoted.port)).find((n) => n.id === promoted.id)
          if (!now?.master || now.slots.length === 0) throw new Error("not a master yet")
          return now
        }, { timeoutMs: 40_000, intervalMs: 100 })
      },
      dispose
    }
    return handle
  } catch (error) {
    await dispose()
    throw error
  }
}
