/**
 * The admin API's implementation: handlers over `Operations`, the token check of mutations, the
 * OpenAPI document at `/api/openapi.json`, the docs page at `/api/docs` (served by the relay, no CDN),
 * and 400 answers that name the field a request got wrong.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import { HttpApiBuilder, HttpApiError, HttpApiScalar } from "effect/http-api"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as SchemaIssue from "effect/SchemaIssue"
import { createHash, timingSafeEqual } from "node:crypto"
import { RelayConfig } from "../relay/RelayConfig.js"
import { AdminApi, AdminToken } from "./Api.js"
import { Forbidden, Unauthorized } from "./Errors.js"
import { Operations } from "./Operations.js"

const digest = (text: string) => createHash("sha256").update(text).digest()

/** Compares in time independent of where the two differ (both hashed first: equal lengths). */
export const tokenMatches = (expected: string, given: string): boolean =>
  timingSafeEqual(digest(expected), digest(given))

const AdminTokenLive = Layer.effect(
  AdminToken,
  Effect.gen(function*() {
    const config = yield* RelayConfig
    const expected = config.adminToken === undefined ? undefined : Redacted.value(config.adminToken)
    return AdminToken.of({
      bearer: (httpEffect, { credential }) => {
        if (expected === undefined) {
          return Effect.fail(
            new Forbidden({
              error: "mutating endpoints are disabled: set RELAY_ADMIN_TOKEN (at least 16 characters) on the relay " +
                "and send it as `Authorization: Bearer <token>`"
            })
          )
        }
        const given = Redacted.value(credential)
        if (given === "" || !tokenMatches(expected, given)) {
          return Effect.fail(new Unauthorized({ error: "missing or wrong bearer token (RELAY_ADMIN_TOKEN)" }))
        }
        return httpEffect
      }
    })
  })
)

const defaultCount = 50

const StreamsLive = HttpApiBuilder.group(
  AdminApi,
  "streams",
  Effect.fn(function*(handlers) {
    const ops = yield* Operations
    return handlers.handleAll({
      list: () => ops.streams,
      get: ({ params }) => ops.stream(params.stream),
      entries: ({ params, query }) =>
        ops.entries(params.stream, {
          ...(query.start === undefined ? {} : { start: query.start }),
          ...(query.end === undefined ? {} : { end: query.end }),
          count: query.count ?? defaultCount,
          reverse: query.reverse ?? false
        }),
      pending: ({ params, query }) =>
        ops.pending(params.stream, {
          group: query.group,
          ...(query.consumer === undefined ? {} : { consumer: query.consumer }),
          count: query.count ?? 100,
          ...(query.minIdleMs === undefined ? {} : { minIdleMs: query.minIdleMs })
        }),
      deadLetters: ({ params }) => ops.deadLetterSummary(params.stream),
      deadLetterMessages: ({ params, query }) =>
        ops.deadLetters(params.stream, {
          ...(query.start === undefined ? {} : { start: query.start }),
          count: query.count ?? defaultCount
        }),
      replayDeadLetters: ({ params, payload }) => ops.replayDeadLetters(params.stream, payload),
      purgeDeadLetters: ({ params, payload }) => ops.purgeDeadLetters(params.stream, payload)
    })
  })
)

const OutboxLive = HttpApiBuilder.group(
  AdminApi,
  "outbox",
  Effect.fn(function*(handlers) {
    const ops = yield* Operations
    return handlers.handleAll({
      overview: () => ops.outbox,
      dead: ({ query }) => ops.deadRows({ topic: query.topic, count: query.count ?? defaultCount }),
      replayDead: ({ payload }) => ops.replayDeadRows(payload)
    })
  })
)

const formatIssue = SchemaIssue.makeFormatterStandardSchemaV1()

const kindField: Record<string, string> = { Params: "path", Query: "query", Payload: "body", Headers: "headers" }

/** A request the API's Schemas refused, as `{"error": ..., "field": ...}` instead of an empty 400. */
export const describeSchemaError = (error: HttpApiError.HttpApiSchemaError) => {
  const [first] = formatIssue(error.cause.issue).issues
  const path = (first?.path ?? []).map((segment) =>
    typeof segment === "object" && segment !== null && "key" in segment ? String(segment.key) : String(segment)
  )
  const field = path.length === 0 ? kindField[error.kind] ?? error.kind : path.join(".")
  const expected = first?.message ?? "invalid"
  return { error: `${field}: ${expected}`, field }
}

const schemaErrorsAsJson = HttpRouter.middleware(
  (httpEffect) =>
    Effect.catchCause(httpEffect, (cause) => {
      const defect = cause.reasons.find(Cause.isDieReason)?.defect
      return HttpApiError.HttpApiSchemaError.is(defect) && defect.kind !== "Body" && defect.kind !== "ResponseHeaders"
        ? Effect.succeed(HttpServerResponse.jsonUnsafe(describeSchemaError(defect), { status: 400 }))
        : Effect.failCause(cause)
    }),
  { global: true }
)

/**
 * The docs page, built on its first request: its bundled script is about 3 MB, which the relay would
 * otherwise load (and hold, some 17 MiB of heap) at every start for a page rarely opened.
 */
const docsPage = HttpRouter.use(Effect.fn(function*(router) {
  const page = yield* Effect.cached(Effect.promise(async () => {
    const { dispose, handler } = HttpRouter.toWebHandler(
      HttpApiScalar.layer(AdminApi, { path: "/api/docs" }).pipe(Layer.provide(HttpServer.layerServices))
    )
    try {
      return await (await handler(new Request("http://relay/api/docs"))).text()
    } finally {
      await dispose()
    }
  }))
  yield* router.add("GET", "/api/docs", Effect.map(page, (html) => HttpServerResponse.html(html)))
}))

/** Every `/api` route: the endpoints, the OpenAPI document and the docs page. */
export const ApiRoutes = Layer.mergeAll(
  HttpApiBuilder.layer(AdminApi, { openapiPath: "/api/openapi.json" }),
  docsPage,
  schemaErrorsAsJson
).pipe(Layer.provide([StreamsLive, OutboxLive]), Layer.provide(AdminTokenLive))
