/**
 * Runs a script of examples/ as a child process from the repository root, for the example tests:
 * its output collected, a wait for a line matching a pattern, and a graceful stop.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { onProcessExit, waitForChildExit } from "./processes.ts"

export const root = fileURLToPath(new URL("../..", import.meta.url))

/** Starts `node <script>` from the repository root; `waitFor` resolves with the first matching stdout line. */
export const startExample = (script: string, env: Record<string, string>) => {
  const child: ChildProcess = spawn(process.execPath, [script], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const unregister = onProcessExit(() => child.kill("SIGKILL"))
  child.once("exit", unregister)
  let output = ""
  const listeners = new Set<() => void>()
  const collect = (chunk: Buffer) => {
    output += chunk.toString("utf8")
    for (const listener of listeners) listener()
  }
  child.stdout?.on("data", collect)
  child.stderr?.on("data", collect)
  const waitFor = (pattern: RegExp, timeoutMs = 15_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const match = output.match(pattern)
        if (match) {
          listeners.delete(check)
          clearTimeout(timer)
          resolve(match)
        }
      }
      const timer = setTimeout(() => {
        listeners.delete(check)
        reject(new Error(`${script}: no ${pattern} within ${timeoutMs} ms; output:\n${output}`))
      }, timeoutMs)
      listeners.add(check)
      check()
    })
  const stop = async () => {
    child.kill("SIGTERM")
    await waitForChildExit(child, 10_000)
    return child.exitCode
  }
  return { child, waitFor, stop, output: () => output }
}
