/**
 * How the proxies talk to a route's tasks (its HTTP destinations): plain HTTP/1.1 (the default),
 * TLS, HTTP/2 in clear text (h2c) or HTTP/2 over TLS. gRPC is HTTP/2: a gRPC service takes
 * `backendScheme: h2c` (or `h2` when it serves TLS); clients reach the proxies over HTTPS (ALPN
 * h2) or over plain HTTP/2.
 *
 * TLS towards the tasks is verified unless the route says otherwise: the task's certificate must
 * chain to the CA bundle in the Docker secret `backendCaSecret` (mounted in the proxies) and name
 * the service (`serviceName`, what a client inside the swarm dials). `sslVerifyNone` (Docker Flow
 * Proxy's name) turns TLS on without verification, as in DFP.
 *
 * Kept apart from route.ts (which spreads these properties into RouteSchema) so the rules of
 * one feature read in one place.
 */
import { Type, type Static } from 'typebox'

export const BACKEND_SCHEMES = ['http', 'https', 'h2c', 'h2'] as const
export type BackendScheme = (typeof BACKEND_SCHEMES)[number]

export const backendRules = {
  backendScheme: { text: 'must be http (HTTP/1.1, the default), https (HTTP/1.1 over TLS), h2c (HTTP/2 in clear text, e.g. gRPC) or h2 (HTTP/2 over TLS)' },
  backendCaSecret: {
    // A Docker secret name as the proxies see it under /run/secrets (TETHER_SECRETS_DIR).
    pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$',
    text: "must be the name of a Docker secret mounted in the proxies (letters, digits, '_', '.', '-', starting with a letter or digit, at most 63 characters)",
  },
} as const

export const routeBackendProperties = {
  backendScheme: Type.Optional(
    Type.Union([Type.Literal('https'), Type.Literal('h2c'), Type.Literal('h2'), Type.Literal('http')], {
      description:
        "How the proxies talk to the service's tasks: http (HTTP/1.1, default), https (TLS), h2c (HTTP/2 in clear text: gRPC services) or h2 (HTTP/2 over TLS). TLS is verified (against backendCaSecret, else the system CAs) unless sslVerifyNone.",
      examples: ['h2c'],
    }),
  ),
  sslVerifyNone: Type.Optional(
    Type.Boolean({ description: "TLS to the service's tasks without verifying their certificates (Docker Flow Proxy's sslVerifyNone; backendScheme https unless h2 is given)." }),
  ),
  backendCaSecret: Type.Optional(
    Type.String({
      pattern: backendRules.backendCaSecret.pattern,
      maxLength: 63,
      description:
        "TLS to the service's tasks, verified: their certificate must chain to the CA bundle (PEM certificates) in this Docker secret, mounted in the proxies, and name the service (serviceName). A proxy without the secret answers 503 for the route and says so in its status.",
      examples: ['internal_ca'],
    }),
  ),
}
export type RouteBackend = { [K in keyof typeof routeBackendProperties]?: Static<(typeof routeBackendProperties)[K]> }

/** True when the scheme is TLS towards the tasks. */
export const isTlsScheme = (scheme: BackendScheme | undefined): boolean => scheme === 'https' || scheme === 'h2'

/**
 * The stored form: the scheme only when it is not plain HTTP/1.1, https when TLS was asked for by
 * sslVerifyNone or backendCaSecret alone; an explicit http kept beside them so validation can say
 * they contradict it (see backendProblem).
 */
export function normalizeBackend(input: RouteBackend): RouteBackend {
  const out: RouteBackend = {}
  const tls = input.sslVerifyNone === true || input.backendCaSecret !== undefined
  const scheme = input.backendScheme ?? (tls ? 'https' : undefined)
  if (scheme !== undefined && (scheme !== 'http' || tls)) out.backendScheme = scheme
  if (input.sslVerifyNone === true) out.sslVerifyNone = true
  if (input.backendCaSecret !== undefined) out.backendCaSecret = input.backendCaSecret
  return out
}

/** Why a stored route's backend fields contradict each other, as [field, problem], or null. */
export function backendProblem(route: RouteBackend & { destinations: readonly unknown[]; tcp?: unknown; sni?: unknown }): [string, string] | null {
  const field = route.sslVerifyNone === true ? 'sslVerifyNone' : route.backendCaSecret !== undefined ? 'backendCaSecret' : 'backendScheme'
  if (route.sslVerifyNone === true && route.backendCaSecret !== undefined) return ['sslVerifyNone', 'and backendCaSecret contradict each other (one verifies the tasks\' certificates, the other does not): give one']
  if (field !== 'backendScheme' && !isTlsScheme(route.backendScheme)) return [field, `turns on TLS to the tasks, and backendScheme=${route.backendScheme ?? 'http'} is clear text: use backendScheme https (or h2), or leave it out`]
  if (route.backendScheme !== undefined && route.destinations.length === 0) return [field, 'applies to HTTP destinations (servicePath + port); this route has only tcp/sni destinations, which forward connections unchanged. Leave it out']
  return null
}
