/**
 * What every child-process helper of the suite needs: finding server binaries, waiting for a child
 * to exit, and killing leftover children when the test process goes away (a failed test must not
 * leave a relay or a throwaway server running).
 */
import type { ChildProcess } from "node:child_process"
import { execFileSync } from "node:child_process"
import { existsSync, readdirSync } from "node:fs"
import { delimiter, join } from "node:path"

const exitCleanups = new Set<() => void>()
let hooksInstalled = false

const runExitCleanups = () => {
  for (const cleanup of [...exitCleanups]) {
    exitCleanups.delete(cleanup)
    try {
      cleanup()
    } catch {
      // Best effort: the process is going away.
    }
  }
}

const installHooks = () => {
  if (hooksInstalled) return
  hooksInstalled = true
  process.on("exit", runExitCleanups)
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const onSignal = () => {
      runExitCleanups()
      process.removeListener(signal, onSignal)
      // Keep the default behaviour (terminate) unless someone else handles the signal.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
    }
    process.on(signal, onSignal)
  }
}

/**
 * Registers a synchronous cleanup run when this process exits or gets SIGINT/SIGTERM/SIGHUP.
 * Returns the function that unregisters it (call it once the resource is released normally).
 */
export const onProcessExit = (cleanup: () => void): () => void => {
  installHooks()
  exitCleanups.add(cleanup)
  return () => {
    exitCleanups.delete(cleanup)
  }
}

/** True while the child has neither exited nor been killed by a signal. */
export const isRunning = (child: ChildProcess): boolean => child.exitCode === null && child.signalCode === null

/** Resolves when the child has exited; SIGKILLs it if it is still running after `timeoutMs`. */
export const waitForChildExit = (child: ChildProcess, timeoutMs: number): Promise<void> =>
  new Promise((resolve) => {
    if (!isRunning(child)) return resolve()
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs)
    child.once("exit", () => {
      clearTimeout(timer)
      resolve()
    })
  })

/** A server child the tests can stop, kill and start again; see `superviseServer`. */
export interface SupervisedServer {
  /** Starts it (again) unless it runs; resolves once `ready` does. */
  readonly start: () => Promise<void>
  /** Sends a signal and waits for the exit (no-op when it is not running). */
  readonly signal: (signal: NodeJS.Signals) => Promise<void>
  /** Stops it for good and removes its files. Idempotent. */
  readonly dispose: () => Promise<void>
  /** Process id of the running server, undefined while it is stopped (bench/ samples its CPU). */
  readonly pid: () => number | undefined
}

/**
 * Runs a throwaway server process: `spawn` starts it, `ready` resolves once it answers (and rejects
 * when it died), `exitSignal` is sent if the test process exits while it runs, `disposeSignal` at
 * dispose, after which `removeFiles` runs. The first start happens here; if it fails, everything is
 * cleaned up and the error is thrown.
 */
export const superviseServer = async (options: {
  readonly spawn: () => ChildProcess
  readonly ready: (child: ChildProcess) => Promise<void>
  readonly exitSignal: NodeJS.Signals
  readonly disposeSignal: NodeJS.Signals
  readonly removeFiles: () => void
}): Promise<SupervisedServer> => {
  const unregisterFiles = onProcessExit(options.removeFiles)
  let child: ChildProcess | undefined

  const start = async () => {
    if (child && isRunning(child)) return
    const current = options.spawn()
    child = current
    const unregister = onProcessExit(() => current.kill(options.exitSignal))
    current.once("exit", unregister)
    await options.ready(current)
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
    await signal(options.disposeSignal)
    options.removeFiles()
    unregisterFiles()
  }

  try {
    await start()
  } catch (error) {
    await dispose()
    throw error
  }
  const pid = () => (child && isRunning(child) ? child.pid : undefined)
  return { start, signal, dispose, pid }
}

const postgresBinDirs = (): Array<string> => {
  const root = "/usr/lib/postgresql"
  if (!existsSync(root)) return []
  return readdirSync(root)
    .filter((version) => /^\d+(\.\d+)?$/.test(version))
    .sort((a, b) => Number(b) - Number(a))
    .map((version) => join(root, version, "bin"))
}

/**
 * Absolute path of a server binary: first on PATH, then in /usr/lib/postgresql/<highest>/bin
 * (Debian installs the Postgres server binaries there, off PATH). Undefined when not found.
 */
export const findBinary = (name: string): string | undefined => {
  const pathDirs = (process.env.PATH ?? "").split(delimiter).filter((dir) => dir !== "")
  for (const dir of [...pathDirs, ...postgresBinDirs()]) {
    const candidate = join(dir, name)
    if (existsSync(candidate)) return candidate
  }
  return undefined
}

/** uid/gid of a system user (via `id`), or undefined when there is no such user. */
export const lookupUser = (user: string): { readonly uid: number; readonly gid: number } | undefined => {
  try {
    const uid = Number(execFileSync("id", ["-u", user], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }))
    const gid = Number(execFileSync("id", ["-g", user], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }))
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined
  } catch {
    return undefined
  }
}
