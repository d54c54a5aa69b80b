/**
 * Coded errors, the way Fastify core does it: one place lists every error a client can see.
 * Services throw these; the error handler turns them into `{ statusCode, code, error, message }`.
 */
import createError from '@fastify/error'

export const ValidationFailedError = createError<[string]>('VALIDATION_FAILED', '%s', 400)
export const UnknownParameterError = createError<[string]>('UNKNOWN_PARAMETER', '%s', 400)
export const UnauthorizedError = createError('UNAUTHORIZED', 'Missing or invalid bearer token', 401)
export const RouteNotFoundError = createError<[string]>('ROUTE_NOT_FOUND', "No route for service '%s'", 404)
export const VersionNotFoundError = createError<[string]>('VERSION_NOT_FOUND', '%s', 404)
export const StoreUnavailableError = createError<[string]>('STORE_UNAVAILABLE', 'The route store is unavailable: %s. Nothing was changed; retry later.', 503)
export const ConvergenceTimeoutError = createError<[string]>('CONVERGENCE_TIMEOUT', '%s', 504)
