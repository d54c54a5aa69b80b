/**
 * Fleet status:
 *   PUT /v1/proxies/{id}   heartbeat (proxy token), kept for the configured TTL
 *   GET /v1/proxies        live proxies
 *   GET /v1/status         current version, live/converged counts, laggards, refused routes,
 *                          releases in progress (canaries, drains)
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Static } from 'typebox'
import { shadowedExtraReport, shadowedReport } from './helpers.ts'
import { readAcmeStatus } from '../../acme.ts'
import { droppedNamesOf, tlsStatusOf } from '../../services/tls-status.ts'
import { releasesOf } from '../../services/releases.ts'
import { ProxyHeartbeatSchema } from '../../../contracts/proxy-status.ts'
import { ErrorCode } from '../../../contracts/errors.ts'
import { bearer, errors, FleetStatusSchema, ProxiesAnswerSchema, ProxyIdParamsSchema, ref } from '../schemas.ts'

const fleet: FastifyPluginAsyncTypebox = async (app) => {
  /** The last status read from the store, served (stale) while the store is down. */
  let lastStatus: { status: Omit<Static<typeof FleetStatusSchema>, 'discovery' | 'stale'>; asOf: string } | null = null

  app.put(
    '/proxies/:id',
    {
      config: { auth: 'proxy' },
      schema: {
        tags: ['fleet'],
        operationId: 'putProxyHeartbeat',
        summary: 'Heartbeat of one proxy replica (proxy token)',
        description: 'Sent every few seconds and after every apply. The proxy counts as live until its last heartbeat is older than the TTL (TETHER_PROXY_TTL_SECONDS, default 15).',
        security: bearer,
        params: ProxyIdParamsSchema,
        body: ref(ProxyHeartbeatSchema),
        response: { 204: { description: 'Recorded.', type: 'null' }, 400: errors[400], 401: errors[401], 413: errors[413], 503: errors[503] },
      },
    },
    async (request, reply) => {
      await app.fleet.heartbeat(request.params.id, request.body)
      return reply.code(204).send(null)
    },
  )

  app.get(
    '/proxies',
    {
      schema: {
        tags: ['fleet'],
        operationId: 'listProxies',
        summary: 'Live proxy replicas and their last heartbeat',
        response: { 200: ProxiesAnswerSchema, 503: errors[503] },
      },
    },
    async () => ({ proxies: await app.fleet.list() }),
  )

  app.get(
    '/status',
    {
      schema: {
        tags: ['fleet'],
        operationId: 'getStatus',
        summary: 'Convergence summary: current version, live and converged proxies, laggards, refused routes, HTTPS (certificates, ACME), releases in progress (canaries, drains)',
        description:
          'While the route store is unavailable, answers the last status this replica read, with `x-tether-stale: true` and a `stale` field saying when it was read (503 only when it has read none).',
        response: { 200: ref(FleetStatusSchema), 503: errors[503] },
      },
    },
    async (request, reply) => {
      const d = app.discovery
      const discovery = () => (d === null ? {} : { discovery: { leader: d.isLeader(), services: d.inventory.all(), problems: d.problems() } })
      try {
        const [status, plan, current, stored, values] = await Promise.all([app.fleet.status(), app.feed.plan(), app.feed.current(), app.store.listCertificates(), app.store.acmeValues()])
        const acme = app.acme === null ? null : await readAcmeStatus(app.store, { directoryUrl: app.acme.directoryUrl, everyDomain: app.acme.everyDomain, leader: app.acme.isLeader() })
        const now = Date.now()
        const tls = tlsStatusOf({ certificates: stored.map((c) => app.certificates.describe(c)), routes: current.table, proxies: status.proxies, acme, dropped: droppedNamesOf(values), now })
        const fresh = {
          ...status,
          shadowed: plan.shadowed.map(shadowedReport),
          ...(plan.shadowedExtras.length === 0 ? {} : { shadowedExtras: plan.shadowedExtras.map(shadowedExtraReport) }),
          tls,
          releases: releasesOf(current.table, plan, now),
        }
        lastStatus = { status: fresh, asOf: new Date().toISOString() }
        return { ...fresh, ...discovery() }
      } catch (error) {
        // The store is down: the fleet view is needed most now. Answer the last status this
        // replica read, marked stale (header and body), like GET /v1/config.
        if (lastStatus === null || (error as { code?: string }).code !== ErrorCode.STORE_UNAVAILABLE) throw error
        request.log.warn('route store unavailable: answering GET /v1/status with the last status seen (stale)')
        reply.header('x-tether-stale', 'true')
        return { ...lastStatus.status, ...discovery(), stale: { asOf: lastStatus.asOf, reason: 'The route store is unavailable: this is the last status this replica read; proxies and versions may have changed since.' } }
      }
    },
  )
}

export default fleet
