/**
 * Free TCP ports: the throwaway servers of the tests and of bench/ listen on ports picked here (never
 * on the shared 5432/6379).
 */
import { createServer } from "node:net"

/** A TCP port that is free on 127.0.0.1 right now (the OS picks it; the socket is closed again). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close((error) => (error || port === 0 ? reject(error ?? new Error("no port")) : resolve(port)))
    })
  })
