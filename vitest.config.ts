/**
 * Test runner config for `npm test`: everything under test/ (the chaos suite has its own config), the
 * server-free unit tier in test/unit/ (also alone: vitest.unit.config.ts) and the integration tests,
 * one Postgres + Redis for the run from test/support/globalSetup.ts, and at most two forked workers
 * (the tests start real servers and relay processes; CI machines are small).
 */
import { configDefaults, defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/unit/**/*.test.ts", "test/**/*.test.ts"],
    exclude: [...configDefaults.exclude, "test/chaos/**"],
    globalSetup: ["test/support/globalSetup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    pool: "forks",
    maxWorkers: 2
  }
})
