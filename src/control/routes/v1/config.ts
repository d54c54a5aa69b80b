/**
 * The versioned routing table the proxies pull, the change log and rollback:
 *   GET  /v1/config[?since=V&wait=S]   ETag = version; If-None-Match → 304; long poll
 *   GET  /v1/changes?since=V
 *   POST /v1/config/rollback?to=V
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply } from 'fastify'
import { ConfigSnapshotSchema } from '../../../contracts/config-snapshot.ts'
import { ErrorCode } from '../../../contracts/errors.ts'
import { ValidationFailedError } from '../../errors.ts'
import type { SnapshotPayload } from '../../services/config-feed.ts'
import { bearer, ChangesAnswerSchema, ChangesQuerySchema, ConfigQuerySchema, errors, ref, RollbackAnswerSchema, RollbackQuerySchema } from '../schemas.ts'
import { clientGone, convergeIfAsked, seconds } from './helpers.ts'

export const etagOf = (version: number): string => `"${version}"`

/**
 * Liveness of a long poll. A replica that hangs (SIGSTOP, a stuck event loop, a partition)
 * keeps its connections open and says nothing, which a client cannot tell from "no change
 * yet" until its long poll's deadline. A proxy that asks (request header, value 1) gets the
 * 200 status line as soon as the poll starts waiting and then a space every HEARTBEAT_MS —
 * whitespace before a JSON text is still that JSON text — so it can drop a connection that
 * went silent for three intervals (the agent's 1.5 s) and move to another replica: the idea
 * of HTTP/2 and gRPC keepalive pings, for an HTTP/1.1 long poll. Opt-in, so clients that read the 304 and
 * the ETag (older agents, curl) get exactly the answers they always had; every answer names
 * the interval in the same header, which tells a proxy this replica can do it.
 */
export const HEARTBEAT_HEADER = 'x-tether-heartbeat'
export const HEARTBEAT_MS = 500

/** `start` sends the 200 and begins the heartbeats (when the poll really waits); `stop` ends them. */
function startHeartbeats(reply: FastifyReply): { start: () => void; stop: () => void; readonly started: boolean } {
  let timer: NodeJS.Timeout | undefined
  let started = false
  let stopped = false
  return {
    get started() {
      return started
    },
    start() {
      if (started || stopped) return
      started = true
      reply.hijack()
      const res = reply.raw
      if (res.destroyed) return
      res.writeHead(200, {
        'content-type': 'application/json; charset=utf-8',
        'cache-control': 'no-cache',
        [HEARTBEAT_HEADER]: String(HEARTBEAT_MS),
      })
      res.write(' ') // sends the status line now, and the first heartbeat
      timer = setInterval(() => {
        if (!res.destroyed && !res.writableEnded) res.write(' ')
      }, HEARTBEAT_MS)
    },
    stop() {
      stopped = true
      clearInterval(timer)
    },
  }
}

/** True when an If-None-Match header names this ETag (or is '*'). */
function matches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (ifNoneMatch === undefined) return false
  return ifNoneMatch
    .split(',')
    .map((s) => s.trim().replace(/^W\//, ''))
    .some((t) => t === etag || t === '*')
}

const config: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/config',
    {
      config: { auth: 'proxy' },
      schema: {
        tags: ['config'],
        operationId: 'getConfig',
        summary: 'The whole routing table at one version (what the proxies render)',
        description:
          'Routes are sorted by service name. The ETag is the version; If-None-Match with it answers 304. ' +
          "With `since=V&wait=S` this is a long poll: it answers at once when the current version differs from V (newer; or older, when the store was restored, so the caller can resync), otherwise at the next change (on any control-plane replica), or 304 after S seconds (at most 60), with ETag V. " +
          'Accepts the proxy token as well as API tokens. While the route store is unavailable, a plain GET (no `wait`) answers the last snapshot this replica saw, with `x-tether-stale: true`; a long poll answers 503. ' +
          'Heartbeats (what proxies use, to notice a hung replica within seconds): a long poll sent with `x-tether-heartbeat: 1` that has to wait (or whose store takes over half a second) answers 200 at once (no ETag) and writes a space every 500 ms while it waits; the JSON body that follows the spaces is the snapshot, or `{"changed":false,"version":V}` when the wait ended without a change. Every answer carries `x-tether-heartbeat: <interval ms>` to say this replica can do it.',
        security: bearer,
        querystring: ConfigQuerySchema,
        headers: {
          type: 'object',
          properties: {
            'if-none-match': { type: 'string', description: 'An ETag from an earlier answer.' },
            'x-tether-heartbeat': { type: 'string', enum: ['1'], description: 'With `wait`: answer 200 at once and write a space every 500 ms while waiting (see above).' },
          },
        },
        response: {
          200: ref(ConfigSnapshotSchema),
          304: { description: 'Not modified: the version is still the one the caller holds (ETag or since), or the long poll ended without a change.', type: 'null' },
          400: errors[400],
          401: errors[401],
          503: errors[503],
        },
      },
    },
    async (request, typedReply) => {
      const { since, wait } = request.query
      // The snapshot goes out as the JSON text serialised once for every waiter, not re-serialised per reply.
      const reply = typedReply as unknown as FastifyReply
      reply.header(HEARTBEAT_HEADER, String(HEARTBEAT_MS))
      const send = (payload: SnapshotPayload | null, unchanged?: number): FastifyReply => {
        // A 304 carries the version the caller still holds as ETag (proxies read it).
        if (payload === null) return reply.code(304).header('etag', etagOf(unchanged ?? 0)).header('cache-control', 'no-cache').send()
        return reply.header('etag', etagOf(payload.version)).header('cache-control', 'no-cache').type('application/json; charset=utf-8').send(payload.body)
      }
      if (wait !== undefined) {
        if (since === undefined) throw new ValidationFailedError("wait: needs 'since', the version the caller holds")
        const waitSeconds = seconds(wait)
        if (waitSeconds > app.longPollMaxSeconds) throw new ValidationFailedError(`wait: ${JSON.stringify(wait)} must be at most ${app.longPollMaxSeconds} seconds`)
        const heartbeats = request.headers[HEARTBEAT_HEADER] === '1' ? startHeartbeats(reply) : null
        // They start when the poll waits, or after half an interval if the store is slow to
        // answer the first check (a proxy must hear from us within its liveness timeout).
        const early = heartbeats === null ? undefined : setTimeout(heartbeats.start, HEARTBEAT_MS / 2)
        let payload: SnapshotPayload | null
        try {
          payload = await app.feed.wait(since, waitSeconds * 1000, clientGone(reply), heartbeats?.start)
        } catch (error) {
          if (heartbeats?.started !== true) throw error
          // The 200 is gone already: cut the connection (the proxy tries another replica) and log why here.
          request.log.warn({ err: error }, 'GET /v1/config long poll with heartbeats: cut, the store failed after the answer began')
          reply.raw.destroy()
          return reply
        } finally {
          clearTimeout(early)
          heartbeats?.stop()
        }
        if (heartbeats?.started === true) {
          // 200 and the heartbeats went out already: the answer is the rest of the body.
          const res = reply.raw
          if (!res.destroyed && !res.writableEnded) res.end(payload?.body ?? JSON.stringify({ changed: false, version: since }))
          app.metrics.httpRequests.inc({ method: 'GET', route: '/v1/config', status_code: '200' })
          return reply
        }
        if (payload === null) return send(null, since)
        // A change wakes every waiting proxy at once: answer each with the pre-encoded bytes
        // straight on the socket, without the per-reply pipeline (measured in bench/long-poll.ts).
        reply.hijack()
        const res = reply.raw
        if (!res.destroyed) {
          res.writeHead(200, [
            'content-type', 'application/json; charset=utf-8',
            'content-length', String(payload.body.length),
            'etag', etagOf(payload.version),
            'cache-control', 'no-cache',
            HEARTBEAT_HEADER, String(HEARTBEAT_MS),
          ])
          res.end(payload.body)
        }
        app.metrics.httpRequests.inc({ method: 'GET', route: '/v1/config', status_code: '200' })
        return reply
      }
      let payload: SnapshotPayload
      try {
        payload = await app.feed.current()
      } catch (error) {
        // The store is down: a proxy starting now still gets the last table this replica saw,
        // marked stale, rather than nothing (writes keep answering 503 meanwhile).
        const last = app.feed.cached()
        if (last === null || (error as { code?: string }).code !== ErrorCode.STORE_UNAVAILABLE) throw error
        request.log.warn('route store unavailable: answering GET /v1/config with the last snapshot seen (stale)')
        reply.header('x-tether-stale', 'true')
        payload = last
      }
      if (since !== undefined && payload.version === since) return send(null, since)
      if (since === undefined && matches(request.headers['if-none-match'], etagOf(payload.version))) {
        return reply.code(304).header('etag', etagOf(payload.version)).header('cache-control', 'no-cache').send()
      }
      return send(payload)
    },
  )

  app.get(
    '/changes',
    {
      schema: {
        tags: ['config'],
        operationId: 'listChanges',
        summary: 'The change log: who changed which route, when, from where',
        description: 'Oldest first. Readable without a token, like the routes themselves.',
        querystring: ChangesQuerySchema,
        response: { 200: ChangesAnswerSchema, 400: errors[400], 503: errors[503] },
      },
      // The entries come from the store as written; public answers show every password hash as
      // '(hidden)' (app.ts), which the Route schema's hash pattern does not match. The schema's
      // serializer checks each 'before'/'after' against it (a union with null), so one hidden
      // hash anywhere in the range answered 500. Plain JSON.stringify: the schema documents.
      serializerCompiler: () => (data) => JSON.stringify(data),
    },
    async (request) => {
      const [version, changes] = await Promise.all([app.store.version(), app.store.changes(request.query.since, request.query.limit)])
      return { version, changes }
    },
  )

  app.post(
    '/config/rollback',
    {
      config: { auth: 'api' },
      schema: {
        tags: ['config'],
        operationId: 'rollbackConfig',
        summary: 'Restore the routing table of an earlier version, as a new version',
        description: 'Rolling back to a version whose table equals the current one changes nothing (changed: 0, same version).',
        security: bearer,
        querystring: RollbackQuerySchema,
        response: {
          200: RollbackAnswerSchema,
          400: errors[400],
          401: errors[401],
          404: { ...errors[404], description: 'No such version, or older than the change log reaches (VERSION_NOT_FOUND).' },
          503: errors[503],
          504: errors[504],
        },
      },
    },
    async (request, reply) => {
      const result = await app.store.rollback(request.query.to, { actor: request.actor, source: 'rollback' })
      return { version: result.version, changed: result.changed, ...(await convergeIfAsked(app, reply, request.query, result.version)) }
    },
  )
}

export default config
