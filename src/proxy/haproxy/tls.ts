/**
 * TLS termination pieces of the HAProxy configuration, kept apart from the routing and backend
 * sections they compose with:
 * - the global defaults: TLS 1.2+, Mozilla's "intermediate" ciphers, no session tickets;
 * - the HTTPS `bind` of the routing frontend: a self-signed default certificate first (what a
 *   client gets for a name no certificate covers, or without SNI), then a crt-list of every
 *   certificate from the control plane, selected by SNI against their names; ALPN h2,http/1.1;
 * - the files: one PEM (chain + key, mode 0600) per certificate and the crt-list, content-
 *   addressed like the map files, so a changed certificate is a changed configuration;
 * - the ACME HTTP-01 answers, served by every proxy from a map file;
 * - the default certificate itself (generated once per state directory with @peculiar/x509);
 * - the certificates in force, kept on disk so a restarted proxy serves them before the control
 *   plane answers.
 */
import { createHash, KeyObject, webcrypto } from 'node:crypto'
import { mkdir, open, readFile, rename } from 'node:fs/promises'
import { dirname } from 'node:path'
import * as x509 from '@peculiar/x509'
import type { CertificateMaterial, CertificateRef } from '../../contracts/certificate.ts'
import type { AcmeChallenge } from '../../contracts/config-snapshot.ts'
import type { Route } from '../../contracts/route.ts'

/** Mozilla intermediate (TLS 1.2 ciphers; TLS 1.3 suites are OpenSSL's defaults, listed for clarity). */
export const INTERMEDIATE_CIPHERS =
  'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384'
export const INTERMEDIATE_CIPHERSUITES = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256'

export const ACME_CHALLENGE_PREFIX = '/.well-known/acme-challenge/'

/** Lines of the global section when TLS is on. */
export function tlsGlobalLines(): string[] {
  return [
    `    ssl-default-bind-ciphers ${INTERMEDIATE_CIPHERS}`,
    `    ssl-default-bind-ciphersuites ${INTERMEDIATE_CIPHERSUITES}`,
    '    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets',
    '    tune.ssl.default-dh-param 2048',
  ]
}

/** The HTTPS bind of the routing frontend. */
export function tlsBindLine(listen: string, defaultCertificate: string, crtList: string): string {
  const address = listen.startsWith(':') ? `*${listen}` : listen
  return `    bind ${address} ssl crt ${defaultCertificate} crt-list ${crtList} alpn h2,http/1.1`
}

/** X-Forwarded-Proto by the listener a request came in on (the client's own header is replaced). */
export function forwardedProtoLines(plainIsHttps: boolean): string[] {
  return ['    http-request set-header X-Forwarded-Proto https if { ssl_fc }', `    http-request set-header X-Forwarded-Proto ${plainIsHttps ? 'https' : 'http'} if !{ ssl_fc }`]
}

/** Every proxy answers the ACME HTTP-01 challenges of the snapshot (before any route, redirect or deny). */
export function acmeChallengeLines(mapPath: string): string[] {
  const lookup = `path,field(4,/),map(${mapPath})`
  return [
    `    http-request return status 200 content-type text/plain lf-string "%[${lookup}]" if { path_beg ${ACME_CHALLENGE_PREFIX} } { ${lookup} -m found }`,
  ]
}

export interface TlsFile {
  path: string
  text: string
  mode: number
  owners: ReadonlyArray<readonly string[]>
}

const short = (text: string): string => createHash('sha256').update(text).digest('hex').slice(0, 16)

/** The crt-list's path: stable, so a change of certificates leaves the configuration as it is (runtime API). */
export const crtListPath = (dir: string): string => `${dir}/crt-list.txt`
/** Certificate files are named after their certificate (stable: the runtime API updates them in place). */
export const TLS_CERT_FILE = /\/tls-[cf]-[A-Za-z0-9_.-]+\.pem$/

/**
 * The certificate files and the crt-list under `dir`: one file per certificate, `tls-c-<name>.pem`
 * for the control plane's and `tls-f-<name>.pem` for the proxy's own files (Docker secrets), so
 * a certificate replaced under the same name is the same file with new content.
 */
export function tlsFiles(dir: string, certificates: readonly CertificateMaterial[], fromFiles: ReadonlyArray<{ name: string; pem: string }> = []): { crtList: TlsFile; files: TlsFile[] } {
  const byName = <T extends { name: string }>(list: readonly T[]): T[] => [...list].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  const file = (kind: 'c' | 'f', c: { name: string; pem: string }): TlsFile => ({ path: `${dir}/tls-${kind}-${c.name}.pem`, text: c.pem.endsWith('\n') ? c.pem : `${c.pem}\n`, mode: 0o600, owners: [] })
  const pems: TlsFile[] = [...byName(certificates).map((c) => file('c', c)), ...byName(fromFiles).map((c) => file('f', c))]
  const listText = pems.map((p) => `${p.path}\n`).join('')
  const crtList: TlsFile = { path: crtListPath(dir), text: listText, mode: 0o644, owners: [] }
  return { crtList, files: [...pems, crtList] }
}

/** The ACME answers as a map file (token → key authorization), content-addressed. */
export function challengeMap(dir: string, challenges: readonly AcmeChallenge[]): TlsFile {
  const text = [...challenges]
    .sort((a, b) => (a.token < b.token ? -1 : 1))
    .map((c) => `${c.token} ${c.keyAuthorization}\n`)
    .join('')
  return { path: `${dir}/acme-${short(text)}.map`, text, mode: 0o644, owners: [] }
}

/** PEM-safe write: temp file with the mode, then rename. */
async function writeAtomically(path: string, text: string, mode: number): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`
  const handle = await open(tmp, 'w', mode)
  try {
    await handle.writeFile(text)
    await handle.sync()
  } finally {
    await handle.close()
  }
  await rename(tmp, path)
}

/**
 * The self-signed default certificate: what HTTPS answers before any certificate exists and
 * for names none covers. Generated once (ECDSA P-256, 10 years) and kept in the state
 * directory, so a restart serves the same one. Returns whether it was generated now.
 */
export async function ensureDefaultCertificate(path: string, now: Date = new Date()): Promise<boolean> {
  try {
    const existing = await readFile(path, 'utf8')
    if (existing.includes('BEGIN CERTIFICATE') && existing.includes('PRIVATE KEY')) return false
  } catch {
    // absent: generate
  }
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0])
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=Tether default certificate, O=Tether',
    notBefore: new Date(now.getTime() - 86_400_000),
    notAfter: new Date(now.getTime() + 3650 * 86_400_000),
    signingAlgorithm: alg,
    keys,
    extensions: [new x509.BasicConstraintsExtension(false), new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'tether-default.invalid' }])],
  })
  const key = KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }).toString()
  await mkdir(dirname(path), { recursive: true })
  await writeAtomically(path, `${cert.toString('pem')}\n${key}`, 0o600)
  return true
}

/** The certificates in force, on disk (mode 0600: they hold keys). */
export interface CertificateKeeper {
  current(): readonly CertificateMaterial[]
  refs(): CertificateRef[]
  /** Replaces them; saved before it resolves. */
  set(certificates: readonly CertificateMaterial[]): Promise<void>
}

export async function createCertificateKeeper(file: string): Promise<CertificateKeeper> {
  let certificates: CertificateMaterial[] = []
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as unknown
    if (Array.isArray(parsed)) {
      certificates = parsed.filter(
        (c): c is CertificateMaterial => c !== null && typeof c === 'object' && typeof c.name === 'string' && typeof c.fingerprint === 'string' && typeof c.pem === 'string',
      )
    }
  } catch {
    // none yet
  }
  return {
    current: () => certificates,
    refs: () => certificates.map((c) => ({ name: c.name, fingerprint: c.fingerprint })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    async set(next) {
      await mkdir(dirname(file), { recursive: true })
      await writeAtomically(file, JSON.stringify(next), 0o600)
      certificates = [...next]
    },
  }
}

/** The request's own X-Forwarded-Proto, kept before the frontend replaces it (for redirectWhenHttpProto). */
export const INCOMING_PROTO_LINE = '    http-request set-var(txn.incoming_proto) req.hdr(X-Forwarded-Proto),lower'

/**
 * A route's HTTP/HTTPS behaviour, in its backend (after the routing chose it, so it composes
 * with any routing): deny or redirect plain HTTP (HAProxy's `redirect scheme` keeps host, path
 * and query), redirect when a balancer in front says http, HSTS on HTTPS answers.
 */
export function routeHttpsLines(route: Pick<Route, 'httpsOnly' | 'redirectWhenHttpProto' | 'httpsRedirectCode' | 'denyHttp' | 'hstsMaxAge' | 'hstsIncludeSubDomains' | 'hstsPreload'>): string[] {
  const out: string[] = []
  const code = route.httpsRedirectCode ?? 302
  if (route.denyHttp === true) out.push('    http-request deny deny_status 403 if !{ ssl_fc }')
  if (route.httpsOnly === true) out.push(`    http-request redirect scheme https code ${code} if !{ ssl_fc }`)
  if (route.redirectWhenHttpProto === true) out.push(`    http-request redirect scheme https code ${code} if !{ ssl_fc } { var(txn.incoming_proto) -m str http }`)
  if (route.hstsMaxAge !== undefined) {
    const directives = [`max-age=${route.hstsMaxAge}`, ...(route.hstsIncludeSubDomains === true ? ['includeSubDomains'] : []), ...(route.hstsPreload === true ? ['preload'] : [])]
    out.push(`    http-response set-header Strict-Transport-Security "${directives.join('; ')}" if { ssl_fc }`)
  }
  return out
}
