/**
 * The chaos suite (`npm run test:chaos`): test/chaos/**, one test that starts its own Postgres, Redis
 * and relay processes (no globalSetup), about 2–3 minutes on a small machine; one worker, nothing in
 * parallel with it.
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
