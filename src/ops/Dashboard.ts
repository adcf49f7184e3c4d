/**
 * The dashboard's routes on the admin server: the page (`GET /`, its script and stylesheet) and
 * its live feed (`GET /api/live`). Every answer says `Cache-Control: no-store`; the page's
 * Content-Security-Policy lets it load and connect to this server only, and run no inline code.
 */
import * as Effect from "effect/Effect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Layer from "effect/Layer"
import { pageCss, pageHtml, pageScript } from "./DashboardPage.js"
import { LiveFeed } from "./LiveFeed.js"

/** Only this server: no inline script or style, no framing, no form posts elsewhere. */
export const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
  "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const headers = {
  "cache-control": "no-store",
  "content-security-policy": contentSecurityPolicy,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer"
}

const asset = (body: string, contentType: string) =>
  Effect.succeed(HttpServerResponse.text(body, { contentType, headers }))

/** The dashboard routes; need `LiveFeed` and the router. */
export const DashboardRoutes = HttpRouter.use(Effect.fn(function*(router) {
  const feed = yield* LiveFeed
  yield* router.add("GET", "/", asset(pageHtml, "text/html; charset=utf-8"))
  yield* router.add("GET", "/dashboard.js", asset(pageScript, "text/javascript; charset=utf-8"))
  yield* router.add("GET", "/dashboard.css", asset(pageCss, "text/css; charset=utf-8"))
  yield* router.add(
    "GET",
    "/api/live",
    Effect.succeed(
      HttpServerResponse.stream(feed.events, {
        contentType: "text/event-stream",
        // no-transform: proxies must not buffer or compress the stream.
        headers: { ...headers, "cache-control": "no-store, no-transform", "x-accel-buffering": "no" }
      })
    )
  )
}))

/**
 * Ends the open feeds when the admin server starts shutting down. Built after the server, so its
 * finalizer runs before the server's, which waits for open responses to finish.
 */
export const closeFeedsFirst = Layer.effectDiscard(
  Effect.flatMap(LiveFeed, (feed) => Effect.addFinalizer(() => feed.close))
)
