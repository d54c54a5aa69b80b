/**
 * Coded errors, the way Fastify core does it: one place lists every error a client can see.
 * Services throw these; the error handler turns them into `{ statusCode, code, error, message }`.
 */
import createError from '@fastify/error'
import { ErrorCode } from '../contracts/errors.ts'

/**
 * What a client sees of a 5xx is a property of the error, not of its code: an error class
 * marked here answers with `publicMessage` (a fixed sentence written for clients, when the
 * message itself holds internals such as a Redis address) or with its own message; every
 * other 5xx answers "Internal server error" and its details go to the log only.
 */
export interface ClientFacing {
  expose?: boolean
  publicMessage?: string
}

function forClients<T extends abstract new (...args: never[]) => Error>(errorClass: T, publicMessage?: string): T {
  const proto = errorClass.prototype as ClientFacing
  proto.expose = true
  if (publicMessage !== undefined) proto.publicMessage = publicMessage
  return errorClass
}

export const ValidationFailedError = createError<[string]>(ErrorCode.VALIDATION_FAILED, '%s', 400)
export const UnknownParameterError = createError<[string]>(ErrorCode.UNKNOWN_PARAMETER, '%s', 400)
/**
 * A Docker Flow Proxy create that gives nothing to route (no servicePath, no serviceDomain):
 * DFP answers 409 and so does Tether, which Docker Flow Swarm Listener counts as done (a
 * service with only monitoring labels). Nothing was stored.
 */
export const NothingToRouteError = createError<[string]>(ErrorCode.NOTHING_TO_ROUTE, '%s', 409)
export const UnauthorizedError = createError(ErrorCode.UNAUTHORIZED, 'Missing or invalid API token (Authorization: Bearer <token>, or Basic with the token as the password and its name as the user name)', 401)
export const RouteNotFoundError = createError<[string]>(ErrorCode.ROUTE_NOT_FOUND, "No route for service '%s'", 404)
export const CertificateInvalidError = createError<[string]>(ErrorCode.CERTIFICATE_INVALID, '%s', 400)
export const CertificateNotFoundError = createError<[string]>(ErrorCode.CERTIFICATE_NOT_FOUND, "No certificate named '%s'", 404)
/** A replacement that would leave names routes serve to the self-signed default; force=true stores it anyway. */
export const CertificateDropsNamesError = createError<[string]>(ErrorCode.CERTIFICATE_DROPS_NAMES, '%s', 409)
/** Certificates need TETHER_SECRET_KEY_FILE with a shared store: keys are never stored in clear. */
export const SecretKeyMissingError = forClients(createError<[string]>(ErrorCode.SECRET_KEY_MISSING, '%s', 503))
/**
 * Not implemented, and refused rather than ignored: e.g. a Docker Flow Proxy parameter that
 * restricts access or changes security (the service would be open while its owner believes it
 * is protected). Nothing was stored.
 */
export const NotImplementedError = createError<[string]>(ErrorCode.NOT_IMPLEMENTED, '%s', 400)
export const VersionNotFoundError = createError<[string]>(ErrorCode.VERSION_NOT_FOUND, '%s', 404)
export const StoreUnavailableError = forClients(
  createError<[string]>(ErrorCode.STORE_UNAVAILABLE, 'The route store is unavailable: %s. Nothing was changed; retry later.', 503),
  'The route store is unavailable. Nothing was changed; retry later.',
)
/**
 * A write was sent to the store but its reply was lost (timeout, dropped connection) and could
 * not be read back in time: it may or may not have been applied. Writes are idempotent, so
 * repeating the request is safe.
 */
export const WriteOutcomeUnknownError = forClients(
  createError<[string]>(ErrorCode.WRITE_OUTCOME_UNKNOWN, 'The route store did not confirm this write: %s. It may or may not have been applied; repeating the same request is safe.', 503),
  'The route store did not confirm this write in time, so it may or may not have been applied. ' +
    'Writes are idempotent: repeating the same request is safe (it answers changed: false, or 404 for a remove, when the first one was applied); ' +
    'GET /v1/routes/{serviceName} shows what is stored.',
)
/**
 * REDIS_WAIT_REPLICAS: the write is stored on the Redis primary, but fewer replicas than asked
 * confirmed it in time (WAIT), so a failover now could lose it. Said as it is: stored, not yet
 * durable as promised. Writes are idempotent, so repeating the request is safe.
 */
export const WriteNotReplicatedError = forClients(
  createError<[string]>(ErrorCode.WRITE_NOT_REPLICATED, 'The change is stored on the Redis primary, but %s; a Redis failover now could lose it. Repeating the same request is safe.', 503),
)
/**
 * wait=converged after a stored write: the fleet's status could not be read (the store went
 * away after the write), so convergence is unknown. The change is stored.
 */
export const ConvergenceUnknownError = forClients(createError<[string]>(ErrorCode.CONVERGENCE_UNKNOWN, '%s', 503))
export const ConvergenceTimeoutError = forClients(createError<[string]>(ErrorCode.CONVERGENCE_TIMEOUT, '%s', 504))
/**
 * wait=converged: every live proxy applied the version, but some proxy does not serve the route as
 * asked (a TCP port it cannot bind, a route HAProxy refused, a secret it lacks); the message names
 * the proxies and their problems. The change is stored. A 5xx, so that a pipeline that fails on an
 * error status (`curl --fail-with-body`) stops instead of calling a route that is not served "done".
 */
export const RouteNotServedError = forClients(createError<[string]>(ErrorCode.ROUTE_NOT_SERVED, '%s', 502))
/**
 * A TCP route on a port that live proxies report as one of their own listeners (HTTP, HTTPS,
 * admin): no proxy could serve it. Nothing was stored.
 */
export const ListenerConflictError = createError<[string]>(ErrorCode.LISTENER_CONFLICT, '%s', 409)

/**
 * A write through Tether's own forms would take a (host, path) that another service holds.
 * Nothing was stored. `takeover=true` moves the binding on purpose (a blue-green switch).
 */
export const RouteConflictError = createError<[string]>(ErrorCode.ROUTE_CONFLICT, '%s', 409)

/** The binding a conflicting write asked for, and the service that holds it. */
export interface BindingConflict {
  /** The service the write was for. */
  serviceName: string
  /** What is held: a (host, path) binding (the default), a redirected host, the default backend. */
  kind?: 'http' | 'redirect' | 'default' | 'tcp' | 'sni' | 'canary' | 'drain'
  host: string
  path: string
  /** kind 'tcp': the listen port. */
  srcPort?: number
  /** kind 'sni': the server name. */
  serverName?: string
  /** The service that holds (host, path). */
  holder: string
}

/** The 409's message: the field, the value, the holder, and how to take it over. */
export function conflictMessage(c: BindingConflict): string {
  const takeover = `repeat the request with takeover=true to move it to "${c.serviceName}"`
  if (c.kind === 'redirect') {
    return `redirectFromDomain: ${JSON.stringify(c.host)} is already redirected by service "${c.holder}"; nothing was stored. Remove it from "${c.holder}"'s route first, or ${takeover}`
  }
  if (c.kind === 'tcp') return `srcPort: TCP port ${c.srcPort} is already served by service "${c.holder}" (one service per listen port); nothing was stored. Use another srcPort, remove it from "${c.holder}"'s route first, or ${takeover}`
  if (c.kind === 'sni') return `serverName: TLS server name ${JSON.stringify(c.serverName)} is already passed through to service "${c.holder}"; nothing was stored. Use another name, remove it from "${c.holder}"'s route first, or ${takeover}`
  if (c.kind === 'default') {
    return `isDefaultBackend: service "${c.holder}" is already the default backend (requests no route matches); nothing was stored. Turn it off on "${c.holder}" first, or ${takeover}`
  }
  if (c.kind === 'canary' || c.kind === 'drain') {
    const at = JSON.stringify(`${c.host}${c.path}`)
    return c.kind === 'canary'
      ? `canary: ${at} already has a canary, service "${c.holder}" (one canary per path); nothing was stored. Promote it (takeover=true) or remove its route first`
      : `drain: ${at} is draining service "${c.holder}"; nothing was stored. Wait until its drain ends (GET /v1/routes/${c.holder}) or remove its route first`
  }
  const field = c.host === '' ? 'servicePath' : 'serviceDomain + servicePath'
  const value = c.host === '' ? JSON.stringify(c.path) : JSON.stringify(`${c.host}${c.path}`)
  const where = c.host === '' ? 'for any host' : `for host ${c.host}`
  return (
    `${field}: ${value} is already served by service "${c.holder}" (${where}); nothing was stored. ` +
    `Give this route another path or domain, remove "${c.holder}"'s route first, or repeat the request with takeover=true to move the path to "${c.serviceName}" (a blue-green switch)`
  )
}

export function routeConflict(c: BindingConflict): Error {
  return Object.assign(new RouteConflictError(conflictMessage(c)), { conflict: c })
}
