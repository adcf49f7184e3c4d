/**
 * `outbox-relay catalog <module>`'s listing: the catalog a module exports, as text or JSON.
 */
import { Effect } from "effect"
import { describe, expect, it, vi } from "vitest"
import { findCatalog, list } from "../../src/events/CatalogCli.js"
import { catalog, OrderPlaced } from "../events/catalog.js"

const capture = async (run: Effect.Effect<number>) => {
  const out: Array<string> = []
  const err: Array<string> = []
  const log = vi.spyOn(console, "log").mockImplementation((line) => void out.push(String(line)))
  const error = vi.spyOn(console, "error").mockImplementation((line) => void err.push(String(line)))
  try {
    return { code: await Effect.runPromise(run), out, err }
  } finally {
    log.mockRestore()
    error.mockRestore()
  }
}

describe("catalog CLI", () => {
  it("lists the events of a module's catalog, as lines or JSON", async () => {
    const text = await capture(list({ module: "test/events/catalog.ts", json: false }))
    expect(text).toEqual({
      code: 0,
      out: ["orders\tOrderPlaced\tv2 (reads v1)", "orders\tOrderShipped\tv1"],
      err: []
    })
    const json = await capture(list({ module: "test/events/catalog.ts", json: true }))
    expect(json.code).toBe(0)
    expect(JSON.parse(json.out.join("\n"))).toEqual(catalog.list())
  })

  it("says why when a module has no catalog or cannot be loaded", async () => {
    expect(findCatalog({ OrderPlaced })).toMatch(/exports no event catalog/)
    expect(findCatalog({ a: catalog, b: catalog })).toMatch(/2 catalogs/)
    expect(findCatalog({ default: catalog })).toBe(catalog)
    const missing = await capture(list({ module: "test/events/nope.ts", json: false }))
    expect(missing.code).toBe(1)
    expect(missing.err[0]).toMatch(/^test\/events\/nope.ts: it could not be loaded/)
  })
})
