/**
 * A TCP proxy in front of Redis that can turn the connections open now into half-dead ones: they stay
 * open but nothing goes through any more (as when a peer vanishes without a FIN, or a NAT forgets the
 * flow). New connections work normally. Only a watchdog gets a client out of such a connection.
 */
import { connect, createServer, type Server, type Socket } from "node:net"

export interface FreezingProxy {
  readonly url: string
  /** Stops forwarding on every connection open now, without closing them. */
  readonly freeze: () => void
  readonly close: () => Promise<void>
}

export const startFreezingProxy = async (targetPort: number): Promise<FreezingProxy> => {
  const pairs = new Set<{ client: Socket; upstream: Socket; frozen: boolean }>()
  const server: Server = createServer((client) => {
    const upstream = connect({ host: "127.0.0.1", port: targetPort })
    const pair = { client, upstream, frozen: false }
    pairs.add(pair)
    client.on("data", (chunk) => pair.frozen || upstream.write(chunk))
    upstream.on("data", (chunk) => pair.frozen || client.write(chunk))
    const end = () => {
      pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on("close", end).on("error", end)
    upstream.on("close", end).on("error", end)
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as { port: number }).port
  return {
    url: `redis://127.0.0.1:${port}`,
    freeze: () => {
      for (const pair of pairs) pair.frozen = true
    },
    close: async () => {
      for (const pair of pairs) {
        pair.client.destroy()
        pair.upstream.destroy()
      }
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
