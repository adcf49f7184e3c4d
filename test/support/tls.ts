/**
 * Certificates for the TLS tests, made with Debian's `openssl` in a temp dir: a CA, a server certificate
 * it signs (for 127.0.0.1 and localhost), a client certificate it signs, and a second, unrelated CA
 * (the "wrong CA" an operator might configure).
 */
import { execFileSync } from "node:child_process"
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { onProcessExit } from "./processes.ts"

export interface TestCertificates {
  readonly dir: string
  readonly caCert: string
  readonly serverCert: string
  readonly serverKey: string
  readonly clientCert: string
  readonly clientKey: string
  /** A CA that signed none of the above. */
  readonly wrongCaCert: string
  readonly dispose: () => void
}

const openssl = (dir: string, args: ReadonlyArray<string>) =>
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] })

const ecKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

const makeCa = (dir: string, name: string) => {
  openssl(dir, [
    "req",
    "-x509",
    ...ecKey,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.crt`,
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign"
  ])
  return join(dir, `${name}.crt`)
}

const signed = (dir: string, name: string, subject: string, extensions: string) => {
  openssl(dir, ["req", ...ecKey, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject])
  writeFileSync(join(dir, `${name}.ext`), extensions)
  openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    `${name}.crt`,
    "-days",
    "2",
    "-extfile",
    `${name}.ext`
  ])
  chmodSync(join(dir, `${name}.key`), 0o600)
  return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) }
}

/** Makes the certificates; `dispose` removes them (also done when the test process exits). */
export const makeTestCertificates = (): TestCertificates => {
  const dir = mkdtempSync(join(tmpdir(), "outbox-tls-"))
  const remove = () => rmSync(dir, { recursive: true, force: true })
  const unregister = onProcessExit(remove)
  const caCert = makeCa(dir, "ca")
  const wrongCaCert = makeCa(dir, "wrong-ca")
  const server = signed(
    dir,
    "server",
    "/CN=127.0.0.1",
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
  )
  const client = signed(dir, "client", "/CN=outbox-relay", "extendedKeyUsage=clientAuth\n")
  return {
    dir,
    caCert,
    serverCert: server.cert,
    serverKey: server.key,
    clientCert: client.cert,
    clientKey: client.key,
    wrongCaCert,
    dispose: () => {
      remove()
      unregister()
    }
  }
}
