/**
 * Free TCP ports and a polling helper: the throwaway servers of the test suite listen on ports picked
 * here (never on the shared 5432/6379), and "wait until it answers" is the same loop everywhere.
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

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Calls `attempt` until it resolves, every `intervalMs`, for at most `timeoutMs`. `abort` is checked
 * before each attempt: when it returns an error (say, the server process died), polling stops with it.
 */
export const pollUntil = async <A>(
  what: string,
  attempt: () => Promise<A>,
  options: { readonly timeoutMs: number; readonly intervalMs?: number; readonly abort?: () => Error | undefined }
): Promise<A> => {
  const deadline = Date.now() + options.timeoutMs
  let lastError: unknown
  for (;;) {
    const aborted = options.abort?.()
    if (aborted) throw aborted
    try {
      return await attempt()
    } catch (error) {
      lastError = error
    }
    if (Date.now() >= deadline) {
      const reason = lastError instanceof Error ? lastError.message : String(lastError)
      throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${what}: ${reason}`)
    }
    await sleep(options.intervalMs ?? 100)
  }
}
