#!/usr/bin/env node
/**
 * The daemon's entry point: `node dist/main.js [run|migrate|dlq|help]` (the commands are in cli.ts).
 *
 * Heap tuning: with V8's defaults on a machine with plenty of memory, a relay draining a large
 * backlog lets its heap grow far beyond what it holds live. A bounded old space (1 GiB, far above what
 * a relay holds) and 16 MiB semi-spaces (room for two lanes' batches in flight) keep its
 * memory flat at the same rate (docs/design.md, Memory).
 * Those flags only work from process start, so `run` replaces itself once with them (`process.execve`:
 * same pid, same signals, same stdio) — unless RELAY_HEAP_TUNING=false, the operator already chose heap
 * flags, or this Node has no `execve` (before 22.15), in which case it runs as it was started.
 *
 * This module imports nothing heavy, so the restart costs only a bare Node start.
 */
import { falseWords } from "./relay/BooleanWords.js"

const heapFlags = ["--max-old-space-size=1024", "--max-semi-space-size=16"] as const

const heapFlagPattern = /--max-(old|semi)-space-size|--max-heap-size/

const command = process.argv[2] ?? "run"
const execve = (process as { execve?: (file: string, args: Array<string>, env: NodeJS.ProcessEnv) => never }).execve
if (
  command === "run" &&
  typeof execve === "function" &&
  !falseWords.includes((process.env.RELAY_HEAP_TUNING ?? "").trim().toLowerCase()) &&
  ![...process.execArgv, process.env.NODE_OPTIONS ?? ""].some((arg) => heapFlagPattern.test(arg))
) {
  execve.call(process, process.execPath, [
    process.execPath,
    ...heapFlags,
    ...process.execArgv,
    ...process.argv.slice(1)
  ], process.env)
}

const { main } = await import("./cli.js")
main(process.argv.slice(2))
