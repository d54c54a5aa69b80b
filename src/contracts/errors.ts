import { Type, type Static } from 'typebox'

/** The one shape of every error answer. `message` names the field and the rule below 500. */
export const ErrorSchema = Type.Object(
  {
    statusCode: Type.Integer(),
    code: Type.String({ examples: ['VALIDATION_FAILED'] }),
    error: Type.String({ examples: ['Bad Request'] }),
    message: Type.String({ examples: ["servicePath: '/a b' must start with '/' and hold only RFC 3986 path characters"] }),
  },
  { $id: 'Error', additionalProperties: true },
)
export type ErrorBody = Static<typeof ErrorSchema>

/**
 * The `code` of every coded error answer of the control plane's API, one constant each: the server
 * makes its errors with them (src/control/errors.ts), and code that tells errors apart compares
 * against them rather than a spelled-out string. Stable: scripts and clients may rely on them.
 */
export const ErrorCode = {
  VALIDATION_FAILED: 'VALIDATION_FAILED',
  UNKNOWN_PARAMETER: 'UNKNOWN_PARAMETER',
  INVALID_BODY: 'INVALID_BODY',
  NOTHING_TO_ROUTE: 'NOTHING_TO_ROUTE',
  UNAUTHORIZED: 'UNAUTHORIZED',
  ROUTE_NOT_FOUND: 'ROUTE_NOT_FOUND',
  CERTIFICATE_INVALID: 'CERTIFICATE_INVALID',
  CERTIFICATE_NOT_FOUND: 'CERTIFICATE_NOT_FOUND',
  CERTIFICATE_DROPS_NAMES: 'CERTIFICATE_DROPS_NAMES',
  SECRET_KEY_MISSING: 'SECRET_KEY_MISSING',
  NOT_IMPLEMENTED: 'NOT_IMPLEMENTED',
  VERSION_NOT_FOUND: 'VERSION_NOT_FOUND',
  STORE_UNAVAILABLE: 'STORE_UNAVAILABLE',
  WRITE_OUTCOME_UNKNOWN: 'WRITE_OUTCOME_UNKNOWN',
  WRITE_NOT_REPLICATED: 'WRITE_NOT_REPLICATED',
  CONVERGENCE_UNKNOWN: 'CONVERGENCE_UNKNOWN',
  CONVERGENCE_TIMEOUT: 'CONVERGENCE_TIMEOUT',
  ROUTE_NOT_SERVED: 'ROUTE_NOT_SERVED',
  LISTENER_CONFLICT: 'LISTENER_CONFLICT',
  ROUTE_CONFLICT: 'ROUTE_CONFLICT',
} as const
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]
