import { Type, type Static } from 'typebox'
import { CertificateRefSchema } from './certificate.ts'
import { RouteSchema } from './route.ts'

/** An ACME HTTP-01 answer every proxy serves at /.well-known/acme-challenge/<token>. */
export const AcmeChallengeSchema = Type.Object(
  {
    token: Type.String({ pattern: '^[A-Za-z0-9_-]{16,256}$' }),
    keyAuthorization: Type.String({ pattern: '^[A-Za-z0-9_-]{16,256}\\.[A-Za-z0-9_-]{16,128}$' }),
  },
  { additionalProperties: false },
)
export type AcmeChallenge = Static<typeof AcmeChallengeSchema>

/**
 * The whole routing table at one version. Routes are sorted by serviceName so that equal
 * tables serialise identically (ETags, golden files, "no change, no reply").
 * `certificates` and `challenges` are present only when there are some (sorted by name and
 * token); a certificate's key is never here: proxies fetch keys with the proxy token from
 * GET /v1/proxy/certificates when a fingerprint changes.
 */
export const ConfigSnapshotSchema = Type.Object(
  {
    version: Type.Integer({ minimum: 0, description: 'Monotonically increasing config version; 0 is the empty table.' }),
    routes: Type.Array(RouteSchema),
    certificates: Type.Optional(Type.Array(CertificateRefSchema, { description: 'TLS certificates the proxies serve (name and fingerprint; never the key).' })),
    challenges: Type.Optional(Type.Array(AcmeChallengeSchema, { description: 'ACME HTTP-01 answers every proxy serves while an order is pending.' })),
  },
  { $id: 'ConfigSnapshot', additionalProperties: false },
)
export type ConfigSnapshot = Static<typeof ConfigSnapshotSchema>
