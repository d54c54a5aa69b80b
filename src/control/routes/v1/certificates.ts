/**
 * TLS certificates:
 *   GET    /v1/certificates                 public facts of every certificate (never a key)
 *   GET    /v1/certificates/{name}
 *   PUT    /v1/certificates/{name}          body: combined PEM (chain + key), or JSON {certificate, key}
 *   DELETE /v1/certificates/{name}
 *   GET    /v1/certificate-changes?since=   who changed which certificate (name, fingerprints)
 *   PUT    /v1/docker-flow-proxy/cert?certName=   Docker Flow Proxy's form: combined PEM body
 *   GET    /v1/proxy/certificates           chains and keys, for proxies (proxy token only)
 * A certificate is part of the versioned feed: changing one is a new config version, and
 * `wait=converged` waits until every proxy serves it.
 */
import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { CertificateInfoSchema, CertificateMaterialSchema, CertificateNameSchema, certificateRules, parseCertificate, splitCombinedPem } from '../../../contracts/certificate.ts'
import type { CertificateInput } from '../../certificates.ts'
import { CertificateDropsNamesError, CertificateNotFoundError, ValidationFailedError } from '../../errors.ts'
import { covers } from '../../acme.ts'
import { describeDropped, DROPPED_PREFIX, droppedField, namesDropped } from '../../services/tls-status.ts'
import { showValue } from '../../input/schema-errors.ts'
import type { CertificateMeta } from '../../store/certificate-store.ts'
import { CertificateChangeSchema } from '../../store/certificate-store.ts'
import { bearer, errors, waitProperties } from '../schemas.ts'
import { convergeIfAsked } from './helpers.ts'

const NameParamsSchema = Type.Object({ name: CertificateNameSchema }, { additionalProperties: false })
const WaitQuerySchema = Type.Object(waitProperties, { additionalProperties: false })
const PutQuerySchema = Type.Object(
  {
    ...waitProperties,
    force: Type.Optional(
      Type.Boolean({
        description:
          'Replace even when the new certificate no longer covers names that routes serve and no other certificate covers (they would get the self-signed default). Without it such a replacement answers 409 CERTIFICATE_DROPS_NAMES and stores nothing.',
      }),
    ),
  },
  { additionalProperties: false },
)
const DfpCertQuerySchema = Type.Object(
  {
    certName: CertificateNameSchema,
    distribute: Type.Optional(Type.String({ maxLength: 16, description: 'Accepted; every Tether proxy replica always receives every certificate.' })),
    ...waitProperties,
  },
  { additionalProperties: false },
)

const PEM_MAX = 256 * 1024
const PutBodySchema = Type.Union(
  [
    Type.Object(
      {
        certificate: Type.String({ maxLength: PEM_MAX, description: 'PEM chain, leaf first, each certificate followed by its issuer.' }),
        key: Type.String({ maxLength: 64 * 1024, description: 'PEM private key (PKCS#8, PKCS#1 or SEC1), unencrypted.' }),
      },
      { additionalProperties: false },
    ),
    Type.String({ maxLength: PEM_MAX, description: 'Combined PEM: the chain and the key, in any order (as for HAProxy or Docker Flow Proxy).' }),
  ],
  { description: 'application/json {certificate, key}, or the combined PEM as text/plain, application/x-pem-file or application/octet-stream.' },
)

const InfoAnswer = Type.Object({ ...CertificateInfoSchema.properties }, { additionalProperties: false })
const PutAnswerSchema = Type.Object(
  {
    certificate: InfoAnswer,
    version: Type.Integer({ description: 'Config version that holds this certificate.' }),
    changed: Type.Boolean({ description: 'False when this very chain was already stored under this name.' }),
    warnings: Type.Array(Type.String()),
    convergence: Type.Optional(Type.Object({}, { additionalProperties: true })),
  },
  { additionalProperties: false },
)

const notFound = { ...errors[404], description: 'No certificate of that name (CERTIFICATE_NOT_FOUND).' }
const invalid = { ...errors[400], description: 'The certificate or key is refused (CERTIFICATE_INVALID, naming the problem) or a parameter is invalid; nothing was stored.' }
const drops = { ...errors[409], description: 'CERTIFICATE_DROPS_NAMES: the stored certificate covers names routes serve that the new one does not (nor any other certificate); the message names them and their routes. Nothing was stored; force=true replaces it anyway.' }
const noKey = { ...errors[503], description: 'The route store is unavailable, or no TETHER_SECRET_KEY_FILE is configured with a shared store (SECRET_KEY_MISSING); nothing was stored.' }

/** The certificate from a PUT body: a JSON object or the combined PEM text. */
function inputOf(body: unknown): CertificateInput | string {
  if (typeof body === 'string') {
    if (body.trim() === '') throw new ValidationFailedError('body: is empty; send the chain and the key as PEM, or JSON {certificate, key}')
    if (body.length > PEM_MAX) throw new ValidationFailedError(`body: is ${body.length} characters long; at most ${PEM_MAX}`)
    return body
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ValidationFailedError('body: must be the combined PEM, or a JSON object {certificate, key}')
  const o = body as Record<string, unknown>
  const unknown = Object.keys(o).filter((k) => k !== 'certificate' && k !== 'key')
  if (unknown.length > 0) throw new ValidationFailedError(`body.${unknown[0]}: is not a known field (accepted: certificate, key)`)
  for (const field of ['certificate', 'key'] as const) {
    if (typeof o[field] !== 'string' || o[field] === '') throw new ValidationFailedError(`body.${field}: is required, a PEM string${o[field] === undefined ? '' : ` (got ${showValue(o[field])})`}`)
  }
  return { certificate: o.certificate as string, key: o.key as string }
}

/**
 * The route names replacing `name` with `input` would leave to the self-signed default: covered
 * by the stored certificate, not by the new one nor by any other (stored, or a proxy's file).
 * Empty when there is nothing to replace or the input does not parse (put() then says why).
 */
async function dropsOf(app: FastifyInstance, name: string, input: CertificateInput | string): Promise<Array<{ domain: string; serviceNames: string[] }>> {
  const before = await app.store.getCertificate(name)
  if (before === null) return []
  let after: string[]
  try {
    after = parseCertificate(typeof input === 'string' ? splitCombinedPem(input) : input, Date.now()).domains
  } catch {
    return []
  }
  const [current, stored, fleet] = await Promise.all([app.feed.current(), app.store.listCertificates(), app.fleet.status()])
  const others = [...stored.filter((c) => c.info.name !== name).map((c) => c.info), ...fleet.proxies.flatMap((p) => p.tls?.files ?? [])]
  return namesDropped({ before: before.info.domains, after, others, routes: current.table, now: Date.now() })
}

async function putCertificate(
  app: FastifyInstance,
  request: FastifyRequest,
  reply: FastifyReply,
  name: string,
  body: unknown,
  meta: CertificateMeta,
  query: { wait?: 'converged' | undefined; timeout?: string | undefined; force?: boolean | undefined },
  options: { refuseDrops: boolean },
) {
  const input = inputOf(body)
  const dropped = await dropsOf(app, name, input)
  if (dropped.length > 0 && options.refuseDrops && query.force !== true) {
    throw new CertificateDropsNamesError(
      `certificate '${name}' covers ${describeDropped(dropped)} and the new one does not, nor does any other certificate: HTTPS would answer ${dropped.length === 1 ? 'it' : 'them'} with the self-signed default certificate. Nothing was stored; store the new one under another name, or repeat with force=true to replace it anyway`,
    )
  }
  const result = await app.certificates.put(name, input, meta)
  // Name and fingerprint only: never the key, never the PEM.
  request.log.info({ certificate: name, fingerprint: result.info.fingerprint, changed: result.changed, version: result.version, ...(dropped.length > 0 ? { uncovered: dropped.map((d) => d.domain) } : {}) }, 'certificate stored')
  const warnings = [...result.warnings]
  if (dropped.length > 0) {
    warnings.push(`no longer covered: ${describeDropped(dropped)}; HTTPS answers ${dropped.length === 1 ? 'it' : 'them'} with the self-signed default certificate until a certificate covers ${dropped.length === 1 ? 'it' : 'them'} (shown in GET /v1/status tls.warnings meanwhile)`)
    const at = new Date().toISOString()
    for (const d of dropped) await app.store.setAcmeValue(droppedField(d.domain), JSON.stringify({ certificate: name, replacedBy: result.info.domains, at }))
  }
  // A name this certificate covers is no longer one a replacement dropped.
  const values = await app.store.acmeValues()
  for (const field of Object.keys(values)) {
    const domain = field.startsWith(DROPPED_PREFIX) ? field.slice(DROPPED_PREFIX.length) : null
    if (domain !== null && result.info.domains.some((d) => covers(d, domain))) await app.store.setAcmeValue(field, null)
  }
  return { certificate: result.info, version: result.version, changed: result.changed, warnings, ...(await convergeIfAsked(app, reply, query, result.version)) }
}

const certificates: FastifyPluginAsyncTypebox = async (app) => {
  // The combined PEM comes as text; DFP users `curl --data-binary @cert.pem`, which says form-urlencoded.
  app.addContentTypeParser(['application/x-pem-file', 'application/octet-stream', 'application/x-www-form-urlencoded'], { parseAs: 'string', bodyLimit: PEM_MAX + 1024 }, (_req, body, done) => done(null, body))

  app.get(
    '/certificates',
    {
      schema: {
        tags: ['certificates'],
        operationId: 'listCertificates',
        summary: 'Every TLS certificate: domains, issuer, expiry, fingerprint, source (never a key)',
        response: { 200: Type.Object({ version: Type.Integer(), certificates: Type.Array(InfoAnswer) }, { additionalProperties: false }), 503: errors[503] },
      },
    },
    async () => {
      const [version, list] = await Promise.all([app.store.version(), app.store.listCertificates()])
      return { version, certificates: list.map((c) => app.certificates.describe(c)) }
    },
  )

  app.get(
    '/certificates/:name',
    {
      schema: {
        tags: ['certificates'],
        operationId: 'getCertificate',
        summary: 'One certificate (never its key)',
        params: NameParamsSchema,
        response: { 200: InfoAnswer, 400: errors[400], 404: notFound, 503: errors[503] },
      },
    },
    async (request) => {
      const stored = await app.store.getCertificate(request.params.name)
      if (stored === null) throw new CertificateNotFoundError(request.params.name)
      return app.certificates.describe(stored)
    },
  )

  app.put(
    '/certificates/:name',
    {
      config: { auth: 'api' },
      schema: {
        tags: ['certificates'],
        operationId: 'putCertificate',
        summary: 'Store or replace a certificate (chain + key); every proxy serves it by SNI',
        description:
          `Checked before anything is stored: the chain parses, each certificate is issued by the next, the key matches the leaf, the leaf is valid now and names a DNS name; expiring within 14 days is a warning. A replacement that no longer covers names routes serve (and no other certificate does) is refused with 409 CERTIFICATE_DROPS_NAMES unless force=true; forced, the answer warns and GET /v1/status shows it while those names stay uncovered. The key is encrypted (AES-256-GCM, TETHER_SECRET_KEY_FILE) in the store and never shown again. The same chain twice answers changed: false. Names: ${certificateRules.name.text}.`,
        security: bearer,
        consumes: ['application/json', 'application/x-pem-file', 'text/plain', 'application/octet-stream'],
        params: NameParamsSchema,
        querystring: PutQuerySchema,
        body: PutBodySchema,
        response: { 200: PutAnswerSchema, 400: invalid, 401: errors[401], 409: drops, 413: errors[413], 503: noKey, 504: errors[504] },
      },
      // The body is judged by inputOf (clear messages for both shapes); params and query as usual.
      attachValidation: true,
    },
    async (request, reply) => {
      const failed = request.validationError as (Error & { validationContext?: string }) | undefined
      if (failed !== undefined && failed.validationContext !== 'body') throw failed
      return putCertificate(app, request, reply, request.params.name, request.body, { actor: request.actor, source: 'api' }, request.query, { refuseDrops: true })
    },
  )

  app.delete(
    '/certificates/:name',
    {
      config: { auth: 'api' },
      schema: {
        tags: ['certificates'],
        operationId: 'deleteCertificate',
        summary: 'Remove a certificate; proxies stop serving it',
        security: bearer,
        params: NameParamsSchema,
        querystring: WaitQuerySchema,
        response: {
          200: Type.Object({ version: Type.Integer(), removed: InfoAnswer, convergence: Type.Optional(Type.Object({}, { additionalProperties: true })) }, { additionalProperties: false }),
          400: errors[400],
          401: errors[401],
          404: notFound,
          503: errors[503],
          504: errors[504],
        },
      },
    },
    async (request, reply) => {
      const result = await app.store.removeCertificate(request.params.name, { actor: request.actor, source: 'api' })
      if (result === null) throw new CertificateNotFoundError(request.params.name)
      request.log.info({ certificate: request.params.name, fingerprint: result.removed.fingerprint, version: result.version }, 'certificate removed')
      return { version: result.version, removed: app.certificates.describe({ info: result.removed, chainPem: '', keyBox: '' }), ...(await convergeIfAsked(app, reply, request.query, result.version)) }
    },
  )

  app.get(
    '/certificate-changes',
    {
      schema: {
        tags: ['certificates'],
        operationId: 'listCertificateChanges',
        summary: 'Certificate change log: name, fingerprints, who, when (never a key)',
        querystring: Type.Object(
          {
            since: Type.Integer({ minimum: 0, default: 0, description: 'Only changes with a version greater than this.' }),
            limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ changes: Type.Array(CertificateChangeSchema) }, { additionalProperties: false }), 400: errors[400], 503: errors[503] },
      },
    },
    async (request) => ({ changes: await app.store.certificateChanges(request.query.since, request.query.limit) }),
  )

  // Docker Flow Proxy takes any body here, whatever Content-Type says (Go and Python clients send
  // none, curl says form-urlencoded): in a context of its own, every body of this route is text.
  await app.register(async (dfpCert) => {
    dfpCert.removeAllContentTypeParsers()
    dfpCert.addContentTypeParser('*', { parseAs: 'string', bodyLimit: PEM_MAX + 1024 }, (_req, body, done) => done(null, body))
    dfpCert.withTypeProvider<TypeBoxTypeProvider>().put(
      '/docker-flow-proxy/cert',
      {
        config: { auth: 'api' },
        schema: {
          tags: ['docker-flow-proxy'],
          operationId: 'putDockerFlowProxyCert',
          summary: "Store a certificate with Docker Flow Proxy's parameters (combined PEM body)",
          description: 'As DFP users script it: `curl -XPUT --data-binary @site.pem ".../v1/docker-flow-proxy/cert?certName=site.pem&distribute=true"`. Any Content-Type, or none, is taken as the PEM text (as Docker Flow Proxy). Checked and stored like PUT /v1/certificates/{name}.',
          security: bearer,
          consumes: ['application/x-pem-file', 'text/plain', 'application/octet-stream', 'application/x-www-form-urlencoded', '*/*'],
          querystring: DfpCertQuerySchema,
          response: { 200: PutAnswerSchema, 400: invalid, 401: errors[401], 413: errors[413], 503: noKey, 504: errors[504] },
        },
      },
      async (request, reply) => {
        if (typeof request.body !== 'string') throw new ValidationFailedError('body: must be the combined PEM (chain and key) as text')
        // Docker Flow Proxy replaced silently and its scripts know no force: stored, with the warning.
        return putCertificate(app, request, reply, request.query.certName, request.body, { actor: request.actor, source: 'dfp' }, request.query, { refuseDrops: false })
      },
    )
  })

  app.get(
    '/proxy/certificates',
    {
      config: { auth: 'proxy-only' },
      schema: {
        tags: ['fleet'],
        operationId: 'getProxyCertificates',
        summary: 'Chains and private keys of every certificate, for proxies (proxy token only)',
        description: 'Proxies fetch this when a certificate fingerprint in GET /v1/config changes. API tokens are refused: keys go to proxies only.',
        security: bearer,
        response: {
          200: Type.Object(
            {
              certificates: Type.Array(CertificateMaterialSchema),
              problems: Type.Array(Type.Object({ name: Type.String(), error: Type.String() }, { additionalProperties: false }), { description: 'Certificates whose key this replica cannot open (another TETHER_SECRET_KEY_FILE).' }),
            },
            { additionalProperties: false },
          ),
          401: errors[401],
          503: errors[503],
        },
      },
    },
    async (request, reply) => {
      const bundle = await app.certificates.bundle()
      if (bundle.problems.length > 0) request.log.error({ problems: bundle.problems }, 'certificate keys that cannot be opened: not sent to proxies')
      void reply.header('cache-control', 'no-store')
      return bundle
    },
  )
}

export default certificates
