/**
 * `npm run lint:fix`: `oxlint --fix` until the files stop changing, then the problems left.
 *
 * One oxlint pass applies at most one fix per spot, and the formatter's fix spans the whole file, so an
 * import rewrite and the formatting of the same file land in different passes.
 */
import { execFileSync, spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"

const maxPasses = 10
const oxlint = (args, options = {}) => spawnSync("oxlint", args, { encoding: "utf8", ...options })

const fingerprint = () => {
  const files = execFileSync("oxlint", ["--debug=files"], { encoding: "utf8" }).split("\n").filter(Boolean)
  const hash = createHash("sha256")
  for (const file of files) hash.update(file).update("\0").update(readFileSync(file)).update("\0")
  return hash.digest("hex")
}

let before = fingerprint()
for (let pass = 1; pass <= maxPasses; pass++) {
  oxlint(["--fix", "--silent"])
  const after = fingerprint()
  if (after === before) break
  before = after
}
process.exit(oxlint([], { stdio: "inherit" }).status ?? 1)
