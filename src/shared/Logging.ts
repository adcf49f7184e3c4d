/**
 * The daemon's logger: one JSON object per line on stdout (or pretty lines for a terminal), filtered
 * by `RELAY_LOG_LEVEL`. Connection strings are `Redacted` everywhere, so they print as `<redacted>`.
 */
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as References from "effect/References"
import type { RelaySettings } from "../relay/RelayConfig.js"

const levels = {
  trace: "Trace",
  debug: "Debug",
  info: "Info",
  warn: "Warn",
  error: "Error",
  fatal: "Fatal",
  none: "None"
} as const

/** Logger and minimum level from the settings. */
export const loggerLayer = (settings: Pick<RelaySettings, "logLevel" | "logFormat">) =>
  Layer.mergeAll(
    Logger.layer([settings.logFormat === "json" ? Logger.consoleJson : Logger.consolePretty()]),
    Layer.succeed(References.MinimumLogLevel, levels[settings.logLevel])
  )
