/**
 * The one error handler and the 404 handler: every error a client sees is
 * `{ statusCode, code, error, message }`. Schema-validation errors are rewritten to name the
 * field and the rule (from contracts/route.ts); unknown parameters become UNKNOWN_PARAMETER
 * naming all of them. A 5xx never carries internals: errors marked for clients (errors.ts,
 * ClientFacing) answer with their public message, anything else is "Internal server error"
 * and the details go to the log only.
 */
import { STATUS_CODES } from 'node:http'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { ErrorCode, type ErrorBody } from '../../contracts/errors.ts'
import type { ClientFacing } from '../errors.ts'
import { describeSchemaError, fieldOf, type SchemaError } from '../input/schema-errors.ts'
import { redactQueryValues } from './request-log.ts'

/** Fastify's own client-error codes, renamed to Tether's vocabulary. */
const fastifyCodes: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_BODY',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'INVALID_BODY',
  FST_ERR_CTP_EMPTY_TYPE: 'INVALID_BODY',
  FST_ERR_CTP_INVALID_TYPE: 'INVALID_BODY',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_BODY',
}

/** Fastify's own messages that Tether words differently. */
const fastifyMessages: Record<string, string> = {
  BODY_TOO_LARGE: 'The request body is larger than 1 MiB',
}

const partOf = (context: string | undefined): string => (context === 'querystring' ? 'query' : (context ?? 'request'))

function body(statusCode: number, code: string, message: string): ErrorBody {
  return { statusCode, code, error: STATUS_CODES[statusCode] ?? 'Error', message }
}

function validationBody(error: FastifyError, request: FastifyRequest): ErrorBody {
  const errors = (error.validation ?? []) as unknown as SchemaError[]
  const context = error.validationContext
  const root = context === 'querystring' ? request.query : context === 'params' ? request.params : context === 'body' ? request.body : request.headers
  const unknown = errors.filter((e) => e.keyword === 'additionalProperties')
  if (unknown.length > 0) {
    // ajv stops at the first unknown name; list every unknown top-level name the client sent.
    const first = unknown[0] as SchemaError
    const schema = (request.routeOptions.schema as Record<string, unknown> | undefined)?.[context === 'querystring' ? 'querystring' : String(context)] as
      | { properties?: Record<string, unknown> }
      | undefined
    let names: string[] = [String(first.params.additionalProperty)]
    let known: string[] = []
    if (first.instancePath === '' && schema?.properties !== undefined && root !== null && typeof root === 'object') {
      known = Object.keys(schema.properties)
      names = Object.keys(root).filter((k) => !known.includes(k))
    }
    const where = first.instancePath === '' ? partOf(context) : `${partOf(context)} field ${fieldOf(first.instancePath)}`
    const message =
      `unknown ${partOf(context) === 'query' ? 'parameter' : 'field'}${names.length > 1 ? 's' : ''} in the ${where}: ${names.map((n) => JSON.stringify(n)).join(', ')}` +
      (known.length > 0 ? ` (accepted: ${known.join(', ')})` : '')
    return body(400, 'UNKNOWN_PARAMETER', message)
  }
  const first = errors[0]
  const message = first === undefined ? error.message : describeSchemaError(first, root)
  return body(400, 'VALIDATION_FAILED', context === 'params' || context === 'headers' ? `${partOf(context)} ${message}` : message)
}

export function errorBodyOf(error: FastifyError, request: FastifyRequest): ErrorBody {
  if (error.validation !== undefined) return validationBody(error, request)
  const status = typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500
  const code = (error.code !== undefined ? (fastifyCodes[error.code] ?? error.code) : undefined) ?? (status < 500 ? 'BAD_REQUEST' : 'INTERNAL_ERROR')
  const worded = fastifyMessages[code]
  if (worded !== undefined) return body(status, code, worded)
  if (status >= 500) {
    // Only errors marked for clients (control/errors.ts) show their message; see ClientFacing.
    const facing = error as FastifyError & ClientFacing
    if (facing.expose === true) return body(status, code, facing.publicMessage ?? error.message)
    return body(status, status === 500 ? 'INTERNAL_ERROR' : code.startsWith('FST_') ? 'INTERNAL_ERROR' : code, 'Internal server error')
  }
  if (code.startsWith('FST_')) return body(status, code.replace(/^FST_ERR_/, ''), error.message)
  return body(status, code, error.message)
}

/** Longest path parameter (a service name, a certificate name, a proxy id) the router takes; longer ones answer 414. */
export const MAX_PARAM_LENGTH = 1024

/**
 * Errors the router raises before any route or error handler runs (Fastify's frameworkErrors
 * option): answered in the one shape, with Tether's codes. A parameter up to MAX_PARAM_LENGTH
 * reaches its route, whose schema names the field and the rule (e.g. a certificate name of 300
 * characters: 400 "params name: ... at most 128 characters"); longer ones end here.
 */
export function frameworkErrorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const answer =
    error.code === 'FST_ERR_MAX_PARAM_LENGTH'
      ? body(414, 'URI_TOO_LONG', `A path segment is longer than ${MAX_PARAM_LENGTH} characters; no name or id in this API is that long`)
      : error.code === 'FST_ERR_BAD_URL'
        ? body(400, 'MALFORMED_REQUEST', "The path is not valid percent-encoding (a '%' must be followed by two hexadecimal digits)")
        : body(500, 'INTERNAL_ERROR', 'Internal server error')
  if (answer.statusCode >= 500) request.log.error({ err: error }, 'request failed')
  else request.log.info({ code: answer.code }, 'request refused')
  void reply.code(answer.statusCode).type('application/json; charset=utf-8').send(answer)
}

export interface ErrorHandlerHooks {
  /** Called for each STORE_UNAVAILABLE answer (metrics). */
  onStoreError?: (request: FastifyRequest) => void
}

export function installErrorHandlers(app: FastifyInstance, hooks: ErrorHandlerHooks = {}): void {
  app.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    let answer: ErrorBody
    try {
      answer = errorBodyOf(error, request)
    } catch (describeError) {
      // Describing the error failed (it should not): still one shape, with a code.
      request.log.error({ err: describeError, cause: error }, 'describing an error failed')
      answer = body(500, 'INTERNAL_ERROR', 'Internal server error')
    }
    if (answer.code === ErrorCode.STORE_UNAVAILABLE || answer.code === ErrorCode.WRITE_OUTCOME_UNKNOWN) {
      hooks.onStoreError?.(request)
      request.log.warn({ err: error }, 'route store unavailable')
    } else if (answer.statusCode >= 500) {
      request.log.error({ err: error }, 'request failed')
    } else {
      // The message may quote what was sent: query values stay out of the log (plugins/request-log.ts).
      request.log.info({ code: answer.code, message: redactQueryValues(answer.message, request.url) }, 'request refused')
    }
    if (reply.sent) return
    void reply.code(answer.statusCode).type('application/json; charset=utf-8').send(answer)
  })
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? ''
    void reply
      .code(404)
      .type('application/json; charset=utf-8')
      .send(body(404, 'NOT_FOUND', `No endpoint ${request.method} ${JSON.stringify(path.length > 200 ? `${path.slice(0, 200)}...` : path)}; the API is described at /docs`))
  })
}
