/**
 * The route's connections to its tasks (contracts/route-backend.ts) as HAProxy server options,
 * and the CA bundles they are verified with.
 *
 * A CA bundle is a Docker secret mounted in the proxy (/run/secrets, TETHER_SECRETS_DIR), read
 * on every apply like the other secrets (secret-users.ts, certificate-files.ts): only PEM
 * certificates are taken (a file holding a private key is refused, never copied), and the
 * bundle is written to the state directory under a content-addressed name, so a changed bundle
 * is a changed configuration. Messages name the secret and the problem, never its content.
 *
 * Failing closed: a route whose bundle is missing or not valid answers 503 on this proxy and the
 * problem is in its status; it is never sent to its tasks unverified.
 */
import { X509Certificate, createHash } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { isTlsScheme } from '../../contracts/route-backend.ts'
import type { Route } from '../../contracts/route.ts'

/** A CA bundle as read: its PEM text, or why it cannot be used. */
export type CaBundle = { pem: string } | { problem: string }

const MAX_BUNDLE_BYTES = 1024 * 1024
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g

/** Checks a bundle's text: one or more PEM certificates and nothing secret. */
export function checkCaBundle(text: string): CaBundle {
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) return { problem: 'holds a private key; a CA bundle is certificates only (the key was not read into the configuration)' }
  const blocks = text.match(PEM_CERTIFICATE) ?? []
  if (blocks.length === 0) return { problem: 'holds no PEM certificate (-----BEGIN CERTIFICATE-----)' }
  for (const [i, block] of blocks.entries()) {
    try {
      new X509Certificate(block)
    } catch {
      return { problem: `certificate ${i + 1} of the bundle does not parse` }
    }
  }
  return { pem: `${blocks.join('\n')}\n` }
}

/** Reads the bundle of every route's backendCaSecret from `secretsDir` (never throws). */
export function readCaBundles(secretsDir: string | undefined, routes: readonly Route[]): Map<string, CaBundle> {
  const out = new Map<string, CaBundle>()
  for (const route of routes) {
    const name = route.backendCaSecret
    if (name === undefined || out.has(name)) continue
    if (secretsDir === undefined) {
      out.set(name, { problem: 'this proxy reads no Docker secrets (no secrets directory)' })
      continue
    }
    const path = join(secretsDir, name)
    try {
      if (statSync(path).size > MAX_BUNDLE_BYTES) {
        out.set(name, { problem: `is larger than ${MAX_BUNDLE_BYTES} bytes: not a CA bundle` })
        continue
      }
      out.set(name, checkCaBundle(readFileSync(path, 'utf8')))
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      out.set(name, { problem: code === 'ENOENT' ? `is not mounted in this proxy (looked for ${path}); add it to the proxy service's secrets` : `cannot be read (${code ?? (error as Error).message})` })
    }
  }
  return out
}

/** The file a bundle is written to, content-addressed (under the map directory, 0600 like every state file). */
export function caBundleFile(dir: string, name: string, pem: string): { path: string; text: string } {
  const hash = createHash('sha256').update(pem).digest('hex').slice(0, 16)
  return { path: `${dir}/ca-${name}-${hash}.pem`, text: pem }
}

/**
 * The server options of a route's HTTP backends, or undefined for plain HTTP/1.1. `caFile`: the
 * route's bundle as written (undefined: no backendCaSecret, the system's CAs).
 * Verified TLS checks the chain and that the certificate names the service (verifyhost).
 */
export function backendServerOptions(route: Pick<Route, 'serviceName' | 'backendScheme' | 'sslVerifyNone'>, caFile?: string): string | undefined {
  const scheme = route.backendScheme
  if (scheme === undefined || scheme === 'http') return undefined
  if (scheme === 'h2c') return 'proto h2'
  if (!isTlsScheme(scheme)) return undefined
  const verify = route.sslVerifyNone === true ? 'verify none' : `verify required ca-file ${caFile ?? '@system-ca'} verifyhost ${route.serviceName}`
  return `ssl ${verify}${scheme === 'h2' ? ' alpn h2' : ' alpn http/1.1'}`
}
