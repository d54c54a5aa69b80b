/**
 * The operator dashboard: three static files (src/control/ui/, copied to dist/control/ui/ by
 * `npm run build`) at /ui/, and `/` redirecting there. The page reads the public API
 * (routes, status, proxies, change log) and follows GET /v1/version's long poll; reading
 * needs no token, its one action (rollback) sends the API token the operator types in.
 *
 *   GET /               → 302 /ui/
 *   GET /ui             → 302 /ui/
 *   GET /ui/            index.html
 *   GET /ui/<file>      dashboard.js, dashboard.css
 *   GET /ui/settings.json  what the page cannot learn from the API (stats link template, TTL)
 */
import { readFileSync } from 'node:fs'
import type { FastifyPluginAsync, FastifyReply } from 'fastify'

export interface UiOptions {
  /**
   * Link to each proxy's HAProxy stats page, `{node}` and `{id}` replaced by the proxy's node
   * and id (e.g. `http://{node}:8404/stats`). Unset: no link (the page says how to set it).
   */
  statsUrl?: string | undefined
  /** A proxy is live while its last heartbeat is younger than this (shown on the page). */
  proxyTtlMs: number
  authEnabled: boolean
}

const files = {
  'index.html': 'text/html; charset=utf-8',
  'dashboard.js': 'text/javascript; charset=utf-8',
  'dashboard.css': 'text/css; charset=utf-8',
} as const

/** Nothing but this origin: the page loads no third-party code and talks only to this API. */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const ui: FastifyPluginAsync<UiOptions> = async (app, options) => {
  // Read once at registration: a missing file fails at boot, not on the first visit.
  const dir = new URL('../ui/', import.meta.url)
  const content = new Map(Object.entries(files).map(([name, type]) => [name, { type, body: readFileSync(new URL(name, dir)) }]))
  const settings = JSON.stringify({ statsUrl: options.statsUrl ?? null, proxyTtlSeconds: options.proxyTtlMs / 1000, authEnabled: options.authEnabled })

  const hide = { schema: { hide: true } }
  app.get('/', hide, async (_request, reply) => reply.redirect('/ui/'))
  app.get('/ui', hide, async (_request, reply) => reply.redirect('/ui/'))
  app.get('/ui/settings.json', hide, async (_request, reply) => reply.type('application/json; charset=utf-8').header('cache-control', 'no-cache').send(settings))
  const serve = (name: string, reply: FastifyReply): FastifyReply => {
    const file = content.get(name)
    if (file === undefined) {
      reply.callNotFound()
      return reply
    }
    return reply
      .type(file.type)
      .header('cache-control', 'no-cache')
      .header('content-security-policy', CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .send(file.body)
  }
  app.get('/ui/', hide, async (_request, reply) => serve('index.html', reply))
  app.get<{ Params: { file: string } }>('/ui/:file', hide, async (request, reply) => serve(request.params.file, reply))
}

export default ui
