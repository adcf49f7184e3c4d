/**
 * Runs the real daemon (`node dist/main.js`) as a child process, the way operators run it, for
 * end-to-end tests: env in, log lines out, exit code and signals observable. Every process started
 * here is SIGKILLed when the test process exits; call `killAllRelayProcesses()` in afterEach/afterAll
 * to stop them as soon as a test is over (failed or not).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { isRunning, onProcessExit } from "./processes.ts"

export const projectRoot = fileURLToPath(new URL("../..", import.meta.url))

/** `dist/main.js` under `root`; throws the "run npm run build" hint when it is missing. */
export const relayMainPath = (root: string = projectRoot): string => {
  const main = join(root, "dist", "main.js")
  if (!existsSync(main)) throw new Error("dist/main.js missing: run npm run build")
  return main
}

/** `process.env` without the relay's own variables (RELAY_*, DATABASE_URL, REDIS_URL), then `env`. */
export const relayEnv = (env: Record<string, string>): NodeJS.ProcessEnv => {
  const base: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("RELAY_") || key === "DATABASE_URL" || key === "REDIS_URL") continue
    base[key] = value
  }
  return { ...base, ...env }
}

export interface RelayLine {
  readonly stream: "stdout" | "stderr"
  readonly line: string
  /** The line parsed as JSON when it is a JSON object or array, else undefined. */
  readonly parsed: unknown
  /** Position in `lines()`. */
  readonly index: number
}

export interface RelayExit {
  readonly code: number | null
  readonly signal: string | null
}

export type LinePredicate = (line: string, parsed: unknown | undefined) => boolean

export interface RelayProcessHandle {
  readonly pid: number | undefined
  readonly child: ChildProcess
  /**
   * Resolves with the first line (from index `since`, default 0: lines already seen count) matching
   * `predicate`; rejects on timeout or when the process ends first, with the output's tail.
   */
  readonly waitForLine: (predicate: LinePredicate, timeoutMs: number, since?: number) => Promise<RelayLine>
  /** Resolves once the process has exited and its output is fully read; rejects on timeout. */
  readonly waitForExit: (timeoutMs: number) => Promise<RelayExit>
  readonly kill: (signal?: NodeJS.Signals) => void
  /** The exit, once it happened. */
  readonly exit: () => RelayExit | undefined
  /** stdout and stderr lines so far, in arrival order. */
  readonly lines: () => ReadonlyArray<string>
  readonly stdout: () => ReadonlyArray<string>
  readonly stderr: () => ReadonlyArray<string>
}

const running = new Set<RelayProcessHandle>()

const parseJson = (line: string): unknown => {
  const start = line.trimStart()[0]
  if (start !== "{" && start !== "[") return undefined
  try {
    return JSON.parse(line)
  } catch {
    return undefined
  }
}

/** Starts `node dist/main.js ...args` in the project root with `relayEnv(env)`. */
export const startRelayProcess = (
  env: Record<string, string>,
  args: ReadonlyArray<string> = []
): RelayProcessHandle => {
  const child = spawn(process.execPath, [relayMainPath(), ...args], {
    cwd: projectRoot,
    env: relayEnv(env),
    stdio: ["ignore", "pipe", "pipe"]
  })
  const all: Array<RelayLine> = []
  const waiters = new Set<{ readonly check: (line: RelayLine) => void; readonly closed: () => void }>()
  let exit: RelayExit | undefined
  const closeWaiters = new Set<() => void>()
  const describeTail = () =>
    `pid ${child.pid}, ${exit ? `exited ${exit.code ?? exit.signal}` : "running"}; last output:\n` +
    all.slice(-30).map((l) => l.line).join("\n")

  const onLine = (stream: RelayLine["stream"]) => (line: string) => {
    const entry: RelayLine = { stream, line, parsed: parseJson(line), index: all.length }
    all.push(entry)
    for (const waiter of [...waiters]) waiter.check(entry)
  }
  child.on("error", (error) => onLine("stderr")(`[relayProcess] ${error.message}`))
  createInterface({ input: child.stdout! }).on("line", onLine("stdout"))
  createInterface({ input: child.stderr! }).on("line", onLine("stderr"))

  const unregister = onProcessExit(() => {
    if (isRunning(child)) child.kill("SIGKILL")
  })
  // "close" comes after "exit" once stdout/stderr are drained: every line is in by then.
  child.once("close", (code, signal) => {
    exit = { code, signal }
    unregister()
    running.delete(handle)
    for (const waiter of [...waiters]) waiter.closed()
    for (const notify of [...closeWaiters]) notify()
  })

  const waitForLine = (predicate: LinePredicate, timeoutMs: number, since = 0) =>
    new Promise<RelayLine>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const waiter = {
        check: (entry: RelayLine) => {
          let matched: boolean
          try {
            matched = entry.index >= since && predicate(entry.line, entry.parsed)
          } catch (error) {
            return finish(() => reject(error))
          }
          if (matched) finish(() => resolve(entry))
        },
        closed: () => finish(() => reject(new Error(`relay ended before the expected line (${describeTail()})`)))
      }
      const finish = (settle: () => void) => {
        clearTimeout(timer)
        waiters.delete(waiter)
        settle()
      }
      waiters.add(waiter)
      for (const entry of all.slice(since)) {
        if (!waiters.has(waiter)) return
        waiter.check(entry)
      }
      if (!waiters.has(waiter)) return
      if (exit) return waiter.closed()
      timer = setTimeout(
        () => finish(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for a line (${describeTail()})`))),
        timeoutMs
      )
    })

  const waitForExit = (timeoutMs: number) =>
    new Promise<RelayExit>((resolve, reject) => {
      if (exit) return resolve(exit)
      const notify = () => {
        clearTimeout(timer)
        resolve(exit!)
      }
      const timer = setTimeout(() => {
        closeWaiters.delete(notify)
        reject(new Error(`timed out after ${timeoutMs} ms waiting for the relay to exit (${describeTail()})`))
      }, timeoutMs)
      closeWaiters.add(notify)
    })

  const handle: RelayProcessHandle = {
    pid: child.pid,
    child,
    waitForLine,
    waitForExit,
    kill: (signal = "SIGTERM") => {
      if (isRunning(child)) child.kill(signal)
    },
    exit: () => exit,
    lines: () => all.map((l) => l.line),
    stdout: () => all.filter((l) => l.stream === "stdout").map((l) => l.line),
    stderr: () => all.filter((l) => l.stream === "stderr").map((l) => l.line)
  }
  running.add(handle)
  return handle
}

/** Kills every relay process still running (SIGKILL by default) and waits for them to exit. */
export const killAllRelayProcesses = async (signal: NodeJS.Signals = "SIGKILL"): Promise<void> => {
  const handles = [...running]
  for (const handle of handles) handle.kill(signal)
  await Promise.all(handles.map((handle) => handle.waitForExit(10_000).catch(() => undefined)))
}
