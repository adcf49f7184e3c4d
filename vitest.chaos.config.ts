/**
 * The chaos suite (`npm run test:chaos`): test/chaos/**. Each file starts its own Postgres, Redis and
 * relay processes (no globalSetup): chaos.test.ts (about 80 s: 50,000 events through kills and
 * restarts), lease-loss.test.ts (about 15 s) and freeze.test.ts (about 40 s: relays frozen with
 * SIGSTOP). One worker, one file at a time: the 2-core CI machine is busy enough with three relays
 * and two servers.
 */
import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/chaos/**/*.test.ts"],
    testTimeout: 360_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    pool: "forks",
    maxWorkers: 1,
    fileParallelism: false
  }
})
