/**
 * TLS certificates: what the API shows of one (never its key), what the snapshot carries so
 * proxies know a certificate changed (name and fingerprint: no key), and the pure check of a
 * PEM chain + key (node:crypto's X509Certificate), shared by the API, the DFP form and ACME.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto'
import { Type, type Static } from 'typebox'

export const certificateRules = {
  name: {
    pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$',
    text: "must be letters, digits, '_', '.', '-', starting with a letter or digit, at most 128 characters",
  },
} as const

export const CertificateNameSchema = Type.String({
  pattern: certificateRules.name.pattern,
  maxLength: 128,
  description: 'Name of the certificate (a file name on the proxies; DFP users often give xip.io.pem).',
  examples: ['example.com'],
})

export const CertificateSourceSchema = Type.Union([Type.Literal('api'), Type.Literal('dfp'), Type.Literal('acme')], {
  description: "Where it came from: Tether's API, Docker Flow Proxy's cert endpoint, or ACME issuance.",
})
export type CertificateSource = Static<typeof CertificateSourceSchema>

/** The public facts of a certificate: what GET answers (never the key). */
export const CertificateInfoSchema = Type.Object(
  {
    name: CertificateNameSchema,
    domains: Type.Array(Type.String(), { description: "DNS names of the leaf's subjectAltName (the names SNI selects it by)." }),
    subject: Type.String(),
    issuer: Type.String(),
    notBefore: Type.String({ format: 'date-time' }),
    notAfter: Type.String({ format: 'date-time' }),
    fingerprint: Type.String({ description: 'SHA-256 of the leaf certificate (colon-separated hex).' }),
    chainLength: Type.Integer({ minimum: 1, description: 'Certificates in the chain, leaf included.' }),
    source: CertificateSourceSchema,
    version: Type.Integer({ minimum: 1, description: 'Config version at which this certificate last changed.' }),
    updatedAt: Type.String({ format: 'date-time' }),
    actor: Type.String(),
    warnings: Type.Array(Type.String(), { description: 'E.g. expires within 14 days.' }),
  },
  { additionalProperties: false },
)
export type CertificateInfo = Static<typeof CertificateInfoSchema>

/** What the snapshot carries of each certificate: enough to notice a change, nothing secret. */
export const CertificateRefSchema = Type.Object(
  {
    name: CertificateNameSchema,
    fingerprint: Type.String(),
  },
  { additionalProperties: false },
)
export type CertificateRef = Static<typeof CertificateRefSchema>

/** A certificate as a proxy receives it (GET /v1/proxy/certificates, proxy token only). */
export const CertificateMaterialSchema = Type.Object(
  {
    name: CertificateNameSchema,
    fingerprint: Type.String(),
    /** Chain (leaf first) then the private key, PEM: the file HAProxy loads. */
    pem: Type.String(),
  },
  { additionalProperties: false },
)
export type CertificateMaterial = Static<typeof CertificateMaterialSchema>

/** A certificate that expires within this many days is accepted with a warning. */
export const EXPIRY_WARNING_DAYS = 14

export interface ParsedCertificate {
  /** The chain as PEM, leaf first, normalised (one certificate block after another). */
  chainPem: string
  /** The private key as PKCS#8 PEM. */
  keyPem: string
  domains: string[]
  subject: string
  issuer: string
  notBefore: string
  notAfter: string
  fingerprint: string
  chainLength: number
  warnings: string[]
}

/** Why a certificate is refused: one sentence naming the problem. */
export class CertificateProblem extends Error {
  override name = 'CertificateProblem'
}

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g
const KEY_BLOCK = /-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----[\s\S]*?-----END \1-----/g

/** Splits a combined PEM (chain and key in any order, as DFP users concatenate them). */
export function splitCombinedPem(text: string): { certificate: string; key: string } {
  const certs = text.match(CERT_BLOCK) ?? []
  const keys = text.match(KEY_BLOCK) ?? []
  if (certs.length === 0) throw new CertificateProblem('certificate: no PEM certificate block (-----BEGIN CERTIFICATE-----) found')
  if (keys.length === 0) throw new CertificateProblem('key: no PEM private key block (-----BEGIN PRIVATE KEY-----) found; the body must hold the chain and the key')
  if (keys.length > 1) throw new CertificateProblem(`key: ${keys.length} private keys found; give exactly one`)
  return { certificate: certs.join('\n'), key: keys[0] as string }
}

/** DNS names of a certificate's subjectAltName, lower-case ("DNS:a, DNS:b, IP Address:..." → [a, b]). */
export function sanDomains(cert: X509Certificate): string[] {
  const san = cert.subjectAltName
  if (san === undefined) return []
  return [
    ...new Set(
      san
        .split(/,\s*/)
        .filter((e) => e.startsWith('DNS:'))
        .map((e) => e.slice(4).toLowerCase()),
    ),
  ].sort()
}

const oneLine = (dn: string): string => dn.split('\n').filter((s) => s !== '').join(', ')

/**
 * Checks a chain and key: every block parses, the key matches the leaf, the leaf is valid now
 * and names at least one DNS name, each certificate is issued by the next. Throws
 * CertificateProblem naming the problem; answers the facts and the normalised PEM otherwise.
 */
export function parseCertificate(input: { certificate: string; key: string }, now: number = Date.now()): ParsedCertificate {
  const blocks = input.certificate.match(CERT_BLOCK) ?? []
  if (blocks.length === 0) throw new CertificateProblem('certificate: no PEM certificate block (-----BEGIN CERTIFICATE-----) found')
  if (blocks.length > 16) throw new CertificateProblem(`certificate: a chain of ${blocks.length} certificates; at most 16 are accepted`)
  const chain: X509Certificate[] = blocks.map((block, i) => {
    try {
      return new X509Certificate(block)
    } catch (err) {
      throw new CertificateProblem(`certificate: block ${i + 1} of the chain does not parse as X.509 (${(err as Error).message})`)
    }
  })
  if (/ENCRYPTED PRIVATE KEY|Proc-Type: 4,ENCRYPTED/.test(input.key)) throw new CertificateProblem('key: the private key is encrypted with a passphrase; give it unencrypted (it is encrypted at rest by Tether)')
  let key: KeyObject
  try {
    key = createPrivateKey(input.key)
  } catch (err) {
    throw new CertificateProblem(`key: does not parse as a PEM private key (${(err as Error).message})`)
  }
  const leaf = chain[0] as X509Certificate
  if (!leaf.checkPrivateKey(key)) throw new CertificateProblem(`key: does not match the certificate (${oneLine(leaf.subject)}); the first certificate of the chain must be the one for this key`)
  for (let i = 0; i + 1 < chain.length; i++) {
    const cert = chain[i] as X509Certificate
    const next = chain[i + 1] as X509Certificate
    if (!cert.checkIssued(next) || !cert.verify(next.publicKey)) {
      throw new CertificateProblem(`certificate: block ${i + 2} of the chain did not issue block ${i + 1} (${oneLine(cert.issuer)}); give the chain leaf first, each certificate followed by its issuer`)
    }
  }
  const notBefore = Date.parse(leaf.validFrom)
  const notAfter = Date.parse(leaf.validTo)
  if (notAfter <= now) throw new CertificateProblem(`certificate: expired on ${new Date(notAfter).toISOString()}`)
  if (notBefore > now) throw new CertificateProblem(`certificate: not valid before ${new Date(notBefore).toISOString()}`)
  const domains = sanDomains(leaf)
  if (domains.length === 0) throw new CertificateProblem('certificate: names no DNS name in subjectAltName; clients (and SNI selection) need one')
  const facts = {
    notAfter: new Date(notAfter).toISOString(),
    chainLength: chain.length,
    subject: oneLine(leaf.subject),
    issuer: oneLine(leaf.issuer),
  }
  return {
    chainPem: `${chain.map((c) => c.toString().trim()).join('\n')}\n`,
    keyPem: key.export({ type: 'pkcs8', format: 'pem' }).toString(),
    domains,
    subject: oneLine(leaf.subject),
    issuer: oneLine(leaf.issuer),
    notBefore: new Date(notBefore).toISOString(),
    notAfter: new Date(notAfter).toISOString(),
    fingerprint: leaf.fingerprint256,
    chainLength: chain.length,
    warnings: certificateWarnings(facts, now),
  }
}

/** Warnings about a stored certificate, as of `now` (recomputed on every read). */
export function certificateWarnings(c: Pick<CertificateInfo, 'notAfter' | 'chainLength' | 'subject' | 'issuer'>, now: number): string[] {
  const warnings: string[] = []
  const notAfter = Date.parse(c.notAfter)
  const days = (notAfter - now) / 86_400_000
  if (days <= 0) warnings.push(`expired on ${c.notAfter}: clients refuse it; replace it`)
  else if (days < EXPIRY_WARNING_DAYS) warnings.push(`expires in ${Math.floor(days)} day(s), on ${c.notAfter}`)
  if (c.chainLength === 1 && c.subject !== c.issuer) warnings.push('the chain holds only the leaf: clients that lack the intermediate certificate will not trust it')
  return warnings
}

/** Same certificates (names and fingerprints), whatever the order? */
export function sameCertificateRefs(a: readonly CertificateRef[] | undefined, b: readonly CertificateRef[] | undefined): boolean {
  const key = (refs: readonly CertificateRef[] | undefined) => JSON.stringify([...(refs ?? [])].map((r) => `${r.name} ${r.fingerprint}`).sort())
  return key(a) === key(b)
}
