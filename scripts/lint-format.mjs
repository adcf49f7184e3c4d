/**
 * The formatting half of `npm run lint`, as an oxlint JS plugin (`.oxlintrc.json` loads it as "format").
 *
 * `format/dprint` formats each file with dprint's TypeScript plugin at Effect's settings and reports a file
 * whose text differs; `oxlint --fix` writes the formatted text. It runs the plugin's Wasm build from npm
 * (`@dprint/typescript`), because the dprint CLI downloads its plugins at run time.
 * Imports are sorted by dprint (packages first, then relative paths, alphabetically within each).
 *
 * `format/max-len` reports lines over the width, which dprint cannot shorten (long strings and comments).
 */
import { createContext } from "@dprint/formatter"
import { getPath } from "@dprint/typescript"
import { readFileSync } from "node:fs"

/** Effect's own dprint settings. */
export const lineWidth = 120
export const dprintConfig = {
  semiColons: "asi",
  quoteStyle: "alwaysDouble",
  trailingCommas: "never",
  operatorPosition: "maintain",
  "arrowFunction.useParentheses": "force"
}

const dprint = createContext({ indentWidth: 2, lineWidth, newLineKind: "lf" })
dprint.addPlugin(readFileSync(getPath()), dprintConfig)

/** The 1-based number of the first line where `a` and `b` differ. */
const firstDifference = (a, b) => {
  const left = a.split("\n")
  const right = b.split("\n")
  let index = 0
  while (index < left.length && left[index] === right[index]) index++
  return index + 1
}

const lineLoc = (sourceText, line) => {
  const text = sourceText.split("\n")[line - 1] ?? ""
  return { start: { line, column: 0 }, end: { line, column: text.length } }
}

const dprintRule = {
  meta: {
    type: "layout",
    fixable: "code",
    docs: { description: "Files are formatted by dprint with Effect's settings" }
  },
  create(context) {
    return {
      Program(node) {
        const text = context.sourceCode.text
        let formatted
        try {
          formatted = dprint.formatText({ filePath: context.filename, fileText: text })
        } catch (error) {
          context.report({ node, message: `dprint cannot format this file: ${String(error)}` })
          return
        }
        if (formatted === text) return
        context.report({
          loc: lineLoc(text, firstDifference(text, formatted)),
          message: "Not formatted (first difference on this line); `npm run lint:fix` formats it",
          fix: (fixer) => fixer.replaceTextRange([0, text.length], formatted)
        })
      }
    }
  }
}

const maxLenRule = {
  meta: {
    type: "layout",
    docs: { description: `Lines are at most ${lineWidth} characters` }
  },
  create(context) {
    return {
      Program() {
        const lines = context.sourceCode.text.split("\n")
        lines.forEach((line, index) => {
          // Code points, not UTF-16 units, so a line with emoji or accents is measured as it looks.
          const length = [...line.replace(/\r$/, "")].length
          if (length > lineWidth) {
            context.report({
              loc: { start: { line: index + 1, column: lineWidth }, end: { line: index + 1, column: line.length } },
              message: `Line is ${length} characters, over the ${lineWidth} limit`
            })
          }
        })
      }
    }
  }
}

export default {
  meta: { name: "format" },
  rules: { dprint: dprintRule, "max-len": maxLenRule }
}
