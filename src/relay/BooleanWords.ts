/**
 * How a boolean setting may be spelled. Shared by the settings parser and by main.ts, which reads
 * RELAY_HEAP_TUNING before anything else is loaded (so this module imports nothing).
 */
export const trueWords: ReadonlyArray<string> = ["1", "true", "yes", "on"]
export const falseWords: ReadonlyArray<string> = ["0", "false", "no", "off"]
