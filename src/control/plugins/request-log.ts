/**
 * One log line per request, at a level that fits who reads it. Fastify's default is two info
 * lines per request ("incoming", "completed"): with a Docker health check every 5 s, a proxy
 * heartbeat every 5 s per proxy, long polls and an open dashboard, an idle control plane wrote
 * about 75 lines a minute. Now:
 *
 * - "incoming request" is debug (the completed line says everything, with the same reqId);
 * - the completed line of a read (GET/HEAD) or a heartbeat that succeeded is debug: machines
 *   call those all the time, and nothing changed;
 * - every other completed line (writes, refusals, failures) stays info, with the method, the
 *   URL, the status and the time in the message itself, so it reads well in LOG_FORMAT=pretty;
 * - an error that ended the response is logged at error, as before.
 */
import { LogController, type FastifyReply, type FastifyRequest } from 'fastify'

/** Query parameters whose values are secrets (basic-auth passwords in DFP's `users`): never logged. */
const SECRET_PARAMETERS = new Set(['users'])

/** The URL with the values of secret parameters replaced by '(redacted)', however the name is encoded. */
export function redactUrl(url: string): string {
  const q = url.indexOf('?')
  if (q < 0) return url
  const parts = url.slice(q + 1).split('&').map((part) => {
    const eq = part.indexOf('=')
    const raw = eq < 0 ? part : part.slice(0, eq)
    let name = raw
    try {
      name = decodeURIComponent(raw.replace(/\+/g, ' '))
    } catch {
      // not valid percent-encoding: compared as written
    }
    return SECRET_PARAMETERS.has(name) ? `${raw}=(redacted)` : part
  })
  return `${url.slice(0, q)}?${parts.join('&')}`
}

/** What the log shows of a request (Fastify's request serializer reads these fields): the URL redacted. */
function loggable(request: FastifyRequest) {
  return { method: request.method, url: redactUrl(request.url), headers: request.headers, host: request.host, ip: request.ip, socket: request.socket }
}

/** True for requests whose successful completion is routine (logged at debug). */
export function isRoutine(method: string, route: string | undefined, statusCode: number): boolean {
  if (statusCode >= 400) return false
  if (method === 'GET' || method === 'HEAD') return true
  return method === 'PUT' && route === '/v1/proxies/:id'
}

export class RequestLogController extends LogController {
  override incomingRequest(request: FastifyRequest): void {
    request.log.debug({ req: loggable(request) }, 'incoming request')
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const took = reply.elapsedTime
    const fields = { req: loggable(request), res: reply, responseTime: took }
    const message = `${request.method} ${redactUrl(request.url)} ${reply.statusCode} (${took < 10 ? took.toFixed(1) : Math.round(took)} ms)`
    if (error) reply.log.error({ ...fields, err: error }, message)
    else if (isRoutine(request.method, request.routeOptions.url, reply.statusCode)) reply.log.debug(fields, message)
    else reply.log.info(fields, message)
  }
}
