/**
 * Waiting, said once for the tests, the chaos suite and bench/: a pause, "poll until a value looks
 * right" and "retry until it stops throwing". Plain TypeScript with `.ts` imports only, so bench/
 * scripts load it with Node's type stripping.
 */

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Reads until `done` holds or `timeoutMs` passes, every `intervalMs`; returns the last value read either
 * way, so the caller's assertion shows what was there instead of a bare timeout.
 */
export const eventually = async <A>(
  read: () => A | Promise<A>,
  done: (value: A) => boolean,
  timeoutMs = 10_000,
  intervalMs = 20
): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  let value = await read()
  while (!done(value) && Date.now() < deadline) {
    await sleep(intervalMs)
    value = await read()
  }
  return value
}

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
