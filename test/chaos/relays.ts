/**
 * A tiny supervisor for the chaos suite's relay processes (the real daemon, `node dist/main.js`):
 * a fixed number of seats, each running one relay at a time. The chaos schedule SIGKILLs a seat's
 * relay and restarts it; a relay that exits on its own is recorded (with its last lines) and
 * restarted a second later, the way an orchestrator would.
 */
import { type RelayProcessHandle, startRelayProcess } from "../support/relayProcess.js"
import { sleep } from "../support/wait.js"

export interface UnexpectedExit {
  readonly seat: number
  readonly generation: number
  readonly code: number | null
  readonly signal: string | null
  /** Whether it had logged "relay started" (a relay exiting at start while a server is down is less alarming). */
  readonly started: boolean
  readonly tail: ReadonlyArray<string>
}

interface Seat {
  handle: RelayProcessHandle | undefined
  generation: number
  expectingExit: boolean
}

export interface RelayFleet {
  /** Starts every seat; resolves once each relay logged "relay started" (migrations done). */
  readonly startAll: (timeoutMs: number) => Promise<void>
  /** SIGKILLs the relay of `seat`, waits for its exit; restarts it after `restartAfterMs`. */
  readonly killAndRestart: (seat: number, restartAfterMs: number) => Promise<void>
  /** Sends `signal` to the relay of `seat` (SIGSTOP / SIGCONT to freeze and resume it). */
  readonly signal: (seat: number, signal: NodeJS.Signals) => void
  /** Makes sure every seat has a running relay (restarting any that is down). */
  readonly ensureRunning: () => void
  /** SIGTERMs every relay (no restarts afterwards) and returns their exit codes. */
  readonly stopAll: (timeoutMs: number) => Promise<ReadonlyArray<number | null | string>>
  readonly unexpectedExits: () => ReadonlyArray<UnexpectedExit>
  /** Every log line of every relay generation so far, parsed when JSON. */
  readonly allLines: () => ReadonlyArray<{ readonly seat: number; readonly generation: number; readonly line: string }>
  readonly kills: () => number
  /** Each seat's current relay's /readyz body (or the error), for diagnostics. */
  readonly readiness: () => Promise<
    ReadonlyArray<{ readonly seat: number; readonly pid: number | undefined; readonly body: unknown }>
  >
  readonly size: number
}

const message = (line: string): string | undefined => {
  try {
    return (JSON.parse(line) as { message?: string }).message
  } catch {
    return undefined
  }
}

export const makeRelayFleet = (size: number, env: Record<string, string>): RelayFleet => {
  const seats: Array<Seat> = Array.from(
    { length: size },
    () => ({ handle: undefined, generation: 0, expectingExit: false })
  )
  const finished: Array<{ seat: number; generation: number; lines: ReadonlyArray<string> }> = []
  const unexpected: Array<UnexpectedExit> = []
  let stopping = false
  let kills = 0

  const start = (index: number) => {
    const seat = seats[index]!
    if (stopping) return
    if (seat.handle && seat.handle.exit() === undefined) return
    seat.generation++
    seat.expectingExit = false
    const generation = seat.generation
    const handle = startRelayProcess(env)
    seat.handle = handle
    handle.child.once("close", () => {
      const exit = handle.exit() ?? { code: null, signal: null }
      const lines = handle.lines()
      finished.push({ seat: index, generation, lines })
      if (seat.handle !== handle) return
      if (seat.expectingExit || stopping) return
      unexpected.push({
        seat: index,
        generation,
        code: exit.code,
        signal: exit.signal,
        started: lines.some((l) => message(l) === "relay started"),
        tail: lines.slice(-15)
      })
      setTimeout(() => {
        if (seat.handle === handle) start(index)
      }, 1_000)
    })
    return handle
  }

  const startAll = async (timeoutMs: number) => {
    for (let i = 0; i < size; i++) start(i)
    await Promise.all(
      seats.map((seat) =>
        seat.handle!.waitForLine(
          (_, parsed) => (parsed as { message?: string } | undefined)?.message === "relay started",
          timeoutMs
        )
      )
    )
  }

  const killAndRestart = async (index: number, restartAfterMs: number) => {
    const seat = seats[index]!
    const handle = seat.handle
    if (handle && handle.exit() === undefined) {
      seat.expectingExit = true
      kills++
      handle.kill("SIGKILL")
      await handle.waitForExit(10_000)
    }
    await sleep(restartAfterMs)
    start(index)
  }

  const ensureRunning = () => {
    for (let i = 0; i < size; i++) start(i)
  }

  const stopAll = async (timeoutMs: number) => {
    stopping = true
    return Promise.all(seats.map(async (seat) => {
      const handle = seat.handle
      if (!handle) return "none"
      if (handle.exit() !== undefined) return `already exited (${handle.exit()!.code ?? handle.exit()!.signal})`
      seat.expectingExit = true
      handle.kill("SIGTERM")
      try {
        const exit = await handle.waitForExit(timeoutMs)
        return exit.code ?? exit.signal
      } catch {
        handle.kill("SIGKILL")
        return "timeout"
      }
    }))
  }

  const allLines = () => {
    const out: Array<{ seat: number; generation: number; line: string }> = []
    for (const f of finished) for (const line of f.lines) out.push({ seat: f.seat, generation: f.generation, line })
    seats.forEach((seat, i) => {
      if (seat.handle && seat.handle.exit() === undefined) {
        for (const line of seat.handle.lines()) out.push({ seat: i, generation: seat.generation, line })
      }
    })
    return out
  }

  const readiness = () =>
    Promise.all(seats.map(async (seat, index) => {
      const handle = seat.handle
      if (!handle || handle.exit() !== undefined) return { seat: index, pid: handle?.pid, body: "not running" }
      const line = handle.lines().find((l) => message(l) === "admin http server listening")
      const port = line ? (JSON.parse(line) as { annotations?: { port?: number } }).annotations?.port : undefined
      if (!port) return { seat: index, pid: handle.pid, body: "no admin port logged yet" }
      try {
        const response = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(2_000) })
        return { seat: index, pid: handle.pid, body: await response.json() as unknown }
      } catch (error) {
        return { seat: index, pid: handle.pid, body: `readyz failed: ${(error as Error).message}` }
      }
    }))

  const signal = (index: number, name: NodeJS.Signals) => seats[index]!.handle?.kill(name)

  return {
    readiness,
    signal,
    startAll,
    killAndRestart,
    ensureRunning,
    stopAll,
    unexpectedExits: () => unexpected,
    allLines,
    kills: () => kills,
    size
  }
}
