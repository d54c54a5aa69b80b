/**
 * Backup and restore of the whole table: GET /v1/backup, PUT /v1/backup (API token).
 *
 * The document holds every route (with the source that owns it, so discovery's routes stay
 * discovery's) and every certificate: its public facts and chain, and its private key SEALED
 * as the store keeps it (AES-256-GCM with TETHER_SECRET_KEY_FILE; never in clear). Basic-auth
 * users are crypt(3) hashes, as API-token holders already read them (GET /v1/config): the
 * document is as sensitive as the token. The ACME account and order state are not in it (a
 * restored control plane registers again and renews what is due); proxies' heartbeats neither.
 *
 * A restore makes the routing table equal to the document: every route validated by the same
 * rules as a write (routeFromBody), conflicts between routes written through Tether's API
 * refused with 409 ROUTE_CONFLICT, every key opened before anything is written; then each
 * certificate that differs is stored (its own version, as every certificate write), and the
 * routes are written as ONE batch: one version, every change-log entry naming the actor and a
 * note. The same document again changes nothing.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type, type Static } from 'typebox'
import { ChangeSourceSchema, type ChangeMeta } from '../../../contracts/change.ts'
import { CertificateNameSchema, CertificateSourceSchema } from '../../../contracts/certificate.ts'
import { bindingKeys } from '../../../contracts/route-planner.ts'
import { RouteSchema, type Route } from '../../../contracts/route.ts'
import { ErrorCode } from '../../../contracts/errors.ts'
import { ValidationFailedError } from '../../errors.ts'
import { stableStringify } from '../../../shared/stable-json.ts'
import { checkString } from '../../input/fields.ts'
import { routeFromBody, type RouteBody } from '../../input/tether-forms.ts'
import { checkClaims, ExpectationFailedError, sameRoute, type PendingWrite, type RouteWrite } from '../../store/route-store.ts'
import { bearer, errors, ref, waitProperties } from '../schemas.ts'
import { convergeIfAsked, refuseProxyListeners } from './helpers.ts'

export const BACKUP_FORMAT = 'tether-backup/1'

export const BackupRouteSchema = Type.Object(
  {
    route: ref(RouteSchema),
    source: ChangeSourceSchema,
  },
  { additionalProperties: false },
)

export const BackupCertificateSchema = Type.Object(
  {
    name: CertificateNameSchema,
    fingerprint: Type.String({ maxLength: 200, description: 'SHA-256 of the leaf (informative; the chain decides).' }),
    domains: Type.Array(Type.String({ maxLength: 253 }), { maxItems: 1000, description: 'Informative.' }),
    notAfter: Type.String({ maxLength: 64, description: 'Informative.' }),
    source: CertificateSourceSchema,
    chainPem: Type.String({ minLength: 1, maxLength: 256 * 1024, description: 'The chain, leaf first (public).' }),
    keyBox: Type.String({
      minLength: 1,
      maxLength: 64 * 1024,
      description: 'The private key sealed with the TETHER_SECRET_KEY_FILE of the control plane that exported it (v1:<key id>:...); only a control plane with the same key can restore it.',
    }),
  },
  { additionalProperties: false },
)

export const BackupSchema = Type.Object(
  {
    format: Type.Literal(BACKUP_FORMAT),
    createdAt: Type.String({ format: 'date-time' }),
    version: Type.Integer({ minimum: 0, description: 'The config version the table had when exported.' }),
    routes: Type.Array(BackupRouteSchema, { maxItems: 10_000 }),
    certificates: Type.Array(BackupCertificateSchema, { maxItems: 10_000 }),
  },
  {
    additionalProperties: false,
    description:
      'The whole table: routes (with basic-auth password hashes, never passwords) and certificates (the private key sealed, never in clear). Keep it like the API token and TETHER_SECRET_KEY_FILE.',
  },
)
export type Backup = Static<typeof BackupSchema>

export const RestoreAnswerSchema = Type.Object(
  {
    version: Type.Integer({ description: 'Current version: the new one when something changed.' }),
    changed: Type.Boolean({ description: 'False when the table already equalled the document (nothing written).' }),
    routes: Type.Object(
      {
        put: Type.Array(Type.String(), { description: 'Services whose route was created or replaced.' }),
        removed: Type.Array(Type.String(), { description: 'Services whose route was removed (not in the document).' }),
        unchanged: Type.Integer(),
      },
      { additionalProperties: false },
    ),
    certificates: Type.Object(
      {
        stored: Type.Array(Type.String(), { description: 'Certificates stored (each its own version). Certificates the document does not name are kept.' }),
        unchanged: Type.Integer(),
      },
      { additionalProperties: false },
    ),
    convergence: Type.Optional(Type.Unknown()),
  },
  { additionalProperties: false },
)

const RestoreQuerySchema = Type.Object(waitProperties, { additionalProperties: false })

/** Attempts when another write changes the table between the restore's read and its batch. */
const RESTORE_ATTEMPTS = 5

/** The route of one entry through the same rules as PUT /v1/routes/{serviceName}; refusals name the entry. */
function validatedRoute(i: number, route: Route): Route {
  try {
    // aclName (Docker Flow Proxy's ordering name) is not a field of Tether's JSON form: checked and kept apart.
    const { aclName, ...rest } = route
    const parsed = routeFromBody(rest as unknown as RouteBody).route
    const result: Route = aclName === undefined ? parsed : { ...parsed, aclName: checkString('aclName', 'aclName', aclName) }
    // Never restore something else than the document says: a field the form would change is refused, not altered.
    const fields = [...new Set([...Object.keys(route), ...Object.keys(result)])].sort() as Array<keyof Route>
    const changed = fields.find((f) => stableStringify(route[f] ?? null) !== stableStringify(result[f] ?? null))
    if (changed !== undefined) throw new ValidationFailedError(`${changed}: is not in the form Tether stores (a write would store it otherwise); restore documents as GET /v1/backup wrote them`)
    return result
  } catch (err) {
    if ((err as { code?: string }).code === ErrorCode.VALIDATION_FAILED) throw new ValidationFailedError(`routes[${i}].route.${(err as Error).message}`)
    throw err
  }
}

const backup: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/backup',
    {
      config: { auth: 'api' },
      schema: {
        tags: ['backup'],
        operationId: 'getBackup',
        summary: 'The whole table as one JSON document (routes, certificates with sealed keys)',
        description: 'Restore it with PUT /v1/backup (or `tether restore`). Private keys stay sealed with TETHER_SECRET_KEY_FILE; basic-auth users are crypt(3) hashes.',
        security: bearer,
        response: { 200: BackupSchema, 401: errors[401], 503: errors[503] },
      },
      // A password hash does not match the schema's pattern once hidden; the answer is for token holders only, as stored.
      serializerCompiler: () => (data) => JSON.stringify(data),
    },
    async () => {
      // One consistent read would need a store transaction; a write between these reads shows
      // as a version lower than a route's (rare, and a restore of it is still a valid table).
      const version = await app.store.version()
      const [records, certificates] = await Promise.all([app.store.list(), app.store.listCertificates()])
      return {
        format: BACKUP_FORMAT,
        createdAt: new Date().toISOString(),
        version,
        routes: records.map((r) => ({ route: r.route, source: r.source })),
        certificates: certificates.map((c) => ({
          name: c.info.name,
          fingerprint: c.info.fingerprint,
          domains: c.info.domains,
          notAfter: c.info.notAfter,
          source: c.info.source,
          chainPem: c.chainPem,
          keyBox: c.keyBox,
        })),
      } satisfies Backup
    },
  )

  app.put(
    '/backup',
    {
      config: { auth: 'api' },
      bodyLimit: 64 * 1024 * 1024,
      schema: {
        tags: ['backup'],
        operationId: 'restoreBackup',
        summary: 'Make the table equal to a backup document',
        description:
          'Every route is validated as a write; routes not in the document are removed; certificates in it are stored (keys opened with this control plane\'s TETHER_SECRET_KEY_FILE), others kept. The routes change as one new version recorded with the actor and the note "restore of a backup"; the same document again answers changed: false. Nothing is written when anything is refused.',
        security: bearer,
        querystring: RestoreQuerySchema,
        body: BackupSchema,
        response: { 200: RestoreAnswerSchema, 400: errors[400], 401: errors[401], 409: errors[409], 413: errors[413], 503: errors[503], 504: errors[504] },
      },
    },
    async (request, reply) => {
      const doc = request.body
      // 1. Everything checked before anything is written.
      const seen = new Map<string, number>()
      const routes = doc.routes.map((entry, i) => {
        const route = validatedRoute(i, entry.route)
        const first = seen.get(route.serviceName)
        if (first !== undefined) throw new ValidationFailedError(`routes[${i}].route.serviceName: "${route.serviceName}" is also routes[${first}]; a service has one route`)
        seen.set(route.serviceName, i)
        return { route, source: entry.source }
      })
      // Routes written through Tether's API claim their paths exclusively: two of them on one
      // path could not have been written, so the document was edited. Others share (precedence decides).
      const exclusive: PendingWrite[] = routes
        .filter((r) => r.source === 'api')
        .map((r) => ({ serviceName: r.route.serviceName, before: null, after: r.route, claim: 'exclusive', keys: bindingKeys(r.route) }))
      checkClaims(exclusive, () => [])
      for (const r of routes) await refuseProxyListeners(app, r.route)
      const names = new Set<string>()
      const keys = doc.certificates.map((c, i) => {
        if (names.has(c.name)) throw new ValidationFailedError(`certificates[${i}].name: "${c.name}" appears twice`)
        names.add(c.name)
        try {
          return app.certificates.openKey(c.name, c.keyBox)
        } catch (err) {
          if ((err as Error).name !== 'SecretBoxError') throw err
          throw new ValidationFailedError(`certificates[${i}].keyBox: the key of "${c.name}" cannot be opened here: ${(err as Error).message}. Restore with the backup's TETHER_SECRET_KEY_FILE, or leave this certificate out and upload it again; nothing was changed`)
        }
      })

      // 2. Certificates first, so the routes that need them are served with them.
      const stored: string[] = []
      for (const [i, c] of doc.certificates.entries()) {
        const result = await app.certificates.put(c.name, { certificate: c.chainPem, key: keys[i] as string }, { actor: request.actor, source: c.source })
        if (result.changed) stored.push(c.name)
      }

      // 3. The routes as one batch, guarded so a write in between is not silently undone.
      const meta: ChangeMeta = { actor: request.actor, source: 'api', note: `restore of a backup taken at ${doc.createdAt} (version ${doc.version})` }
      const wanted = new Map(routes.map((r) => [r.route.serviceName, r]))
      for (let attempt = 1; ; attempt++) {
        const current = await app.store.list()
        const writes: RouteWrite[] = []
        for (const r of routes) {
          const before = current.find((c) => c.route.serviceName === r.route.serviceName)
          // The same route is left as it is (with its owner: the store writes only what changes).
          if (before !== undefined && sameRoute(before.route, r.route)) continue
          writes.push({ serviceName: r.route.serviceName, after: r.route, source: r.source, expect: before?.route ?? null })
        }
        for (const c of current) if (!wanted.has(c.route.serviceName)) writes.push({ serviceName: c.route.serviceName, after: null, expect: c.route })
        try {
          const result = writes.length === 0 ? { version: await app.store.version(), changes: [] } : await app.store.write(writes, meta)
          const put = result.changes.filter((c) => c.after !== null).map((c) => c.serviceName)
          const removed = result.changes.filter((c) => c.after === null).map((c) => c.serviceName)
          const version = result.version
          return {
            version,
            changed: result.changes.length > 0 || stored.length > 0,
            routes: { put, removed, unchanged: routes.length - put.length },
            certificates: { stored, unchanged: doc.certificates.length - stored.length },
            ...(await convergeIfAsked(app, reply, request.query, version)),
          }
        } catch (err) {
          if (!(err instanceof ExpectationFailedError) || attempt >= RESTORE_ATTEMPTS) throw err
        }
      }
    },
  )
}

export default backup
