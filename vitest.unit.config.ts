/**
 * The fast tier: parsers, settings, hashing and option rules under test/unit/, with no Postgres, no
 * Redis and no build (no globalSetup), so `npm run test:unit` answers in seconds. `npm test` runs
 * these too, with everything else.
 */
import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/unit/**/*.test.ts"],
    testTimeout: 10_000,
    maxWorkers: 2
  }
})
