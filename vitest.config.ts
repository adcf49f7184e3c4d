/**
 * Test runner config: unit and integration tests under test/ (the chaos suite has its own config),
 * one Postgres + Redis for the run from test/support/globalSetup.ts, and at most two forked workers
 * (the tests start real servers and relay processes; CI machines are small).
 */
import { configDefaults, defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    exclude: [...configDefaults.exclude, "test/chaos/**"],
    globalSetup: ["test/support/globalSetup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    pool: "forks",
    maxWorkers: 2
  }
})
