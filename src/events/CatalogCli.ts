/**
 * What `outbox-relay catalog <module> [--json]` does once its arguments are parsed: imports the
 * application's catalog module and lists its events (type, topic, version, the older versions still
 * read, and with `--json` the JSON Schema of each payload), for docs and for other languages' producers.
 *
 * The module's catalog is its `catalog` export, else its default export, else its only export that is
 * an event catalog. Returns the exit code: 0 listed, 1 the module could not be loaded or has no catalog.
 */
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import { resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { describe } from "../shared/Errors.js"
import type { EventCatalog } from "./Catalog.js"

export interface CatalogListOptions {
  /** Path of the module (relative to the working directory), e.g. dist/events.js. */
  readonly module: string
  readonly json: boolean
}

const isCatalog = (value: unknown): value is EventCatalog =>
  typeof value === "object" && value !== null && typeof (value as EventCatalog).list === "function" &&
  Array.isArray((value as EventCatalog).events)

/** The catalog a module exports (see the module doc), or why there is none. */
export const findCatalog = (exports: Record<string, unknown>): EventCatalog | string => {
  if (isCatalog(exports.catalog)) return exports.catalog
  if (isCatalog(exports.default)) return exports.default
  const found = Object.values(exports).filter(isCatalog)
  if (found.length === 1) return found[0]!
  return found.length === 0
    ? "it exports no event catalog (eventCatalog(...))"
    : `it exports ${found.length} catalogs: name the one to list \`catalog\``
}

export const list = (options: CatalogListOptions): Effect.Effect<number> =>
  Effect.gen(function*() {
    const loaded = yield* Effect.tryPromise(() => import(pathToFileURL(resolve(options.module)).href)).pipe(
      Effect.map((exports: Record<string, unknown>) => findCatalog(exports)),
      Effect.catch((error) => Effect.succeed(`it could not be loaded: ${describe(error.cause ?? error)}`))
    )
    if (typeof loaded === "string") {
      yield* Console.error(`${options.module}: ${loaded}`)
      return 1
    }
    const entries = loaded.list()
    if (options.json) {
      yield* Console.log(JSON.stringify(entries, null, 2))
      return 0
    }
    for (const entry of entries) {
      const older = entry.upgradesFrom.length > 0 ? ` (reads v${entry.upgradesFrom.join(", v")})` : ""
      yield* Console.log(`${entry.topic}\t${entry.type}\tv${entry.version}${older}`)
    }
    return 0
  })
