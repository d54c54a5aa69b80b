/**
 * The certificate part of the store contract (both stores implement it; RouteStore extends it).
 * Certificates and ACME HTTP-01 challenges are part of the versioned feed: storing, replacing or
 * removing one bumps the ONE config version in the same atomic step (a Lua script in Redis),
 * so proxies pull them with the routes and `wait=converged` covers them.
 *
 * The store never sees a private key in clear: callers seal it (secret-box.ts) first. It keeps
 * the public facts, the chain, and the sealed key. The certificate change log records name and
 * fingerprints, never the key.
 */
import { Type, type Static } from 'typebox'
import type { CertificateInfo, CertificateSource } from '../../contracts/certificate.ts'

/** The facts of a certificate the store is given; it adds version, updatedAt, actor, source. */
export type CertificateFacts = Omit<CertificateInfo, 'version' | 'updatedAt' | 'actor' | 'source'>

export interface StoredCertificate {
  info: CertificateInfo
  /** The chain, leaf first (public). */
  chainPem: string
  /** The private key, sealed (secret-box.ts). */
  keyBox: string
}

export interface CertificateMeta {
  actor: string
  source: CertificateSource
}

export const CertificateChangeSchema = Type.Object(
  {
    version: Type.Integer({ minimum: 1 }),
    time: Type.String({ format: 'date-time' }),
    operation: Type.Union([Type.Literal('put'), Type.Literal('remove')]),
    name: Type.String(),
    fingerprint: Type.Union([Type.String(), Type.Null()], { description: 'The new certificate; null when removed.' }),
    previousFingerprint: Type.Union([Type.String(), Type.Null()], { description: 'The replaced or removed certificate; null when created.' }),
    actor: Type.String(),
    source: Type.String(),
  },
  { additionalProperties: false },
)
export type CertificateChange = Static<typeof CertificateChangeSchema>

export interface CertificatePutResult {
  info: CertificateInfo
  version: number
  /** False when the same chain (hence the same key) was already stored under that name. */
  changed: boolean
}

export interface CertificateStore {
  /** Stores or replaces a certificate; idempotent on the chain. Bumps the version when it changes. */
  putCertificate(cert: { facts: CertificateFacts; chainPem: string; keyBox: string }, meta: CertificateMeta): Promise<CertificatePutResult>
  getCertificate(name: string): Promise<StoredCertificate | null>
  /** Every certificate with its chain and sealed key, sorted by name (what proxies receive, once opened). */
  listCertificates(): Promise<StoredCertificate[]>
  /** null when there is none (nothing changes). */
  removeCertificate(name: string, meta: CertificateMeta): Promise<{ version: number; removed: CertificateInfo } | null>
  /** Certificate change-log entries with version > since, oldest first, at most `limit`. */
  certificateChanges(since: number, limit: number): Promise<CertificateChange[]>

  /** Publishes an ACME HTTP-01 answer to every proxy (a new version). Idempotent. */
  putChallenge(token: string, keyAuthorization: string): Promise<number>
  /** Withdraws it (a new version when it was there). */
  removeChallenge(token: string): Promise<number>

  /**
   * Small named values of the ACME orderer (account URL, sealed account key, per-name state) and
   * of certificate bookkeeping (`dropped:<name>`: a route name a replacement left uncovered). No version bump.
   */
  getAcmeValue(field: string): Promise<string | null>
  setAcmeValue(field: string, value: string | null): Promise<void>
  acmeValues(): Promise<Record<string, string>>
}

/** ACME tokens are base64url (RFC 8555 §8.1); key authorizations are token '.' thumbprint. */
export const CHALLENGE_TOKEN_PATTERN = /^[A-Za-z0-9_-]{16,256}$/
export const KEY_AUTHORIZATION_PATTERN = /^[A-Za-z0-9_-]{16,256}\.[A-Za-z0-9_-]{16,128}$/

export function checkChallenge(token: string, keyAuthorization?: string): void {
  if (!CHALLENGE_TOKEN_PATTERN.test(token)) throw new TypeError('challenge token must be 16-256 base64url characters')
  if (keyAuthorization !== undefined && (!KEY_AUTHORIZATION_PATTERN.test(keyAuthorization) || !keyAuthorization.startsWith(`${token}.`))) {
    throw new TypeError('key authorization must be <token>.<thumbprint>')
  }
}
