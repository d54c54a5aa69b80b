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

/**
 * Query-string values are never logged, but for the parameters named here: they say which route
 * a request was about and how it asked to be answered, and their values are public anyway (any
 * reader sees them in GET /v1/routes, /v1/changes, /v1/config). Every other value (a token sent
 * as `?token=`, DFP's `users=name:password`, a header value that may carry a backend's API key,
 * an unknown parameter) is written `[redacted]`, as the proxies' access log does; the names stay.
 * DFP's indexed forms (`servicePath.1`) follow their base name.
 */
export const LOGGED_PARAMETERS: ReadonlySet<string> = new Set([
  // which route
  'serviceName', 'servicePath', 'port', 'serviceDomain', 'reqMode', 'srcPort', 'serverName', 'aclName',
  'sticky', 'stickyCookie', 'endpoints', 'httpsOnly', 'acme', 'usersSecret', 'sendProxyProtocol',
  // how to answer
  'wait', 'timeout', 'since', 'limit', 'to', 'takeover', 'drain', 'type',
])

export const REDACTED = '[redacted]'

function decodedName(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '))
  } catch {
    return raw // not valid percent-encoding: compared as written
  }
}

const isLogged = (name: string): boolean => LOGGED_PARAMETERS.has(name.replace(/\.[0-9]+$/, ''))

/** The URL with every query value but those of LOGGED_PARAMETERS replaced by '[redacted]', however the name is encoded. */
export function redactUrl(url: string): string {
  const q = url.indexOf('?')
  if (q < 0) return url
  const parts = url.slice(q + 1).split('&').map((part) => {
    const eq = part.indexOf('=')
    if (eq < 0) return part
    const raw = part.slice(0, eq)
    return isLogged(decodedName(raw)) ? part : `${raw}=${REDACTED}`
  })
  return `${url.slice(0, q)}?${parts.join('&')}`
}

/**
 * `text` (e.g. the message of a refusal, which may quote what was sent) with every query value
 * that redactUrl hides replaced by '[redacted]', as sent and decoded.
 */
export function redactQueryValues(text: string, url: string): string {
  const q = url.indexOf('?')
  if (q < 0) return text
  const secrets = new Set<string>()
  for (const part of url.slice(q + 1).split('&')) {
    const eq = part.indexOf('=')
    if (eq < 0 || isLogged(decodedName(part.slice(0, eq)))) continue
    const raw = part.slice(eq + 1)
    const value = decodedName(raw)
    // A list value (users=a:x,b:y) may be quoted one entry at a time; messages quote values
    // JSON-escaped and cut a long one after 76 characters (input/schema-errors.ts showValue).
    for (const v of [raw, value, ...value.split(',')]) {
      const escaped = JSON.stringify(v).slice(1, -1)
      for (const form of [v, escaped, escaped.slice(0, 40)]) secrets.add(form)
    }
  }
  let out = text
  for (const secret of [...secrets].filter((s) => s.length >= 4).sort((a, b) => b.length - a.length)) out = out.split(secret).join(REDACTED)
  return out
}

/**
 * What the log shows of a request (Fastify's request serializer reads these fields): the URL
 * redacted, no headers (Authorization and Cookie stay out even with a logger whose serializer
 * writes every header, as pino's standard one does).
 */
function loggable(request: FastifyRequest) {
  return { method: request.method, url: redactUrl(request.url), headers: {}, host: request.host, ip: request.ip, socket: request.socket }
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
