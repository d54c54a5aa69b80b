/**
 * The route: what a CI pipeline registers for one Swarm service, and what every proxy renders
 * into HAProxy's configuration. Every string here ends up in a configuration file, so each
 * field has a strict rule, stated once (in `rules`) and used by the JSON schema (validation,
 * OpenAPI) and by the input parsers (`control/input/`), which must agree.
 */
import { Type, type Static } from 'typebox'

/** Each rule: the pattern that enforces it and the sentence an error shows a user. */
export const rules = {
  serviceName: {
    pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$',
    text: "must be a Docker service name: letters, digits, '_', '.', '-', starting with a letter or digit, at most 63 characters",
  },
  servicePath: {
    // RFC 3986 path characters (unreserved, pct-encoded, sub-delims, ':', '@', '/'), minus the
    // ones HAProxy's configuration parser treats specially (quotes, '$', '#', '\', space) and ','
    // (the list separator). No empty, '.' or '..' segment. '/' alone is the catch-all route.
    pattern: "^(?:/|(?:/(?!\\.\\.?(?:/|$))(?:[A-Za-z0-9\\-._~!&()*+;=:@]|%[0-9A-Fa-f]{2})+)+/?)$",
    text: "must start with '/' and hold only RFC 3986 path characters (letters, digits, - . _ ~ ! & ( ) * + ; = : @ and %XX escapes), with no empty, '.' or '..' segment; no spaces, quotes, '#', '?', '$' or commas",
    maxLength: 256,
  },
  serviceDomain: {
    // RFC 1123 host name, optionally a leading '*.' wildcard label.
    pattern: '^(?:\\*\\.)?(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$',
    text: "must be an RFC 1123 host name (labels of letters, digits and '-', at most 63 characters each), optionally starting with '*.'",
    maxLength: 253,
  },
  stickyCookie: {
    // RFC 6265 token characters, minus '#', '$', '%' and "'" which HAProxy's parser treats specially.
    pattern: "^[A-Za-z0-9!&*+\\-.^_`|~]{1,64}$",
    text: "must be an RFC 6265 cookie name (token characters: letters, digits and ! & * + - . ^ _ ` | ~), at most 64 characters",
  },
  endpoint: {
    // host:port. host: a dotted-quad IPv4 address (0-255, no leading zeros: '0127.0.0.1' means
    // octal to libc), a [bracketed] IPv6 address (also checked with net.isIPv6 by the input
    // parsers), or an RFC 1123 host name whose last label is not all digits (nor 0x...), so that
    // '1.27.0.0.1' or '80' cannot be read as an address by a resolver.
    pattern: '^(?:\\[[0-9A-Fa-f:.]{2,45}\\]|(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?:\\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}|(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*(?![0-9]+:|0[Xx][0-9A-Fa-f]*:)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?):(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})$',
    text: "must be host:port, where host is an IPv4 address (four numbers 0-255, no leading zeros), a host name (whose last label is not all digits) or a [bracketed] IPv6 address, and port is 1-65535",
    maxLength: 300,
  },
  port: { text: 'must be an integer from 1 to 65535' },
  aclName: {
    pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$',
    text: "must be letters, digits, '_', '.', '-', starting with a letter or digit, at most 63 characters (Docker Flow Proxy's ACL name: routes sharing a path are ordered by it)",
  },
} as const

export const limits = {
  /** servicePath entries in one destination. */
  maxPaths: 32,
  /** destinations (path/port pairs, DFP's indexed forms) in one route. */
  maxDestinations: 16,
  maxDomains: 32,
  maxEndpoints: 64,
} as const

export const ServiceNameSchema = Type.String({
  pattern: rules.serviceName.pattern,
  maxLength: 63,
  description: 'Docker service name (the proxy resolves tasks.<serviceName>).',
  examples: ['go-demo'],
})

export const ServicePathSchema = Type.String({
  pattern: rules.servicePath.pattern,
  maxLength: rules.servicePath.maxLength,
  description: "Path prefix, matched on whole segments: '/demo' serves /demo and /demo/x, never /demonstration.",
  examples: ['/demo'],
})

export const PortSchema = Type.Integer({ minimum: 1, maximum: 65535, description: 'Port the service listens on inside the overlay network.', examples: [8080] })

export const ServiceDomainSchema = Type.String({
  pattern: rules.serviceDomain.pattern,
  maxLength: rules.serviceDomain.maxLength,
  description: 'Host name the route answers to; *.example.com matches any subdomain.',
  examples: ['app.example.com'],
})

export const StickyCookieSchema = Type.String({
  pattern: rules.stickyCookie.pattern,
  description: 'Name of the affinity cookie (default: TETHER_<serviceName>).',
  examples: ['TETHER_go-demo'],
})

export const EndpointSchema = Type.String({
  pattern: rules.endpoint.pattern,
  maxLength: rules.endpoint.maxLength,
  description: 'Explicit backend address, instead of tasks.<serviceName> DNS.',
  examples: ['10.0.1.5:8080'],
})

export const AclNameSchema = Type.String({
  pattern: rules.aclName.pattern,
  maxLength: 63,
  description:
    "Docker Flow Proxy's ordering name: when routes written through the Docker Flow Proxy form or com.df.* labels hold the same host and path, the one with the first aclName (default: its serviceName) serves it and the others are reported as shadowed.",
  examples: ['00-go-demo'],
})

/** How a route treats HTTP and HTTPS (all optional; stored only when set). */
export const HttpsRedirectCodeSchema = Type.Union([Type.Literal(301), Type.Literal(302), Type.Literal(307), Type.Literal(308)], {
  description: "Status of the redirect to HTTPS (Docker Flow Proxy's httpsRedirectCode). Default 302; 307/308 keep the method and body.",
})
export const routeHttpsProperties = {
  httpsOnly: Type.Optional(Type.Boolean({ description: 'Redirect plain HTTP requests to HTTPS, keeping host, path and query.' })),
  redirectWhenHttpProto: Type.Optional(
    Type.Boolean({ description: "Behind another TLS-terminating balancer: redirect to HTTPS when the request's X-Forwarded-Proto is http." }),
  ),
  httpsRedirectCode: Type.Optional(HttpsRedirectCodeSchema),
  denyHttp: Type.Optional(Type.Boolean({ description: 'Refuse plain HTTP requests (403) instead of redirecting them.' })),
  hstsMaxAge: Type.Optional(
    Type.Integer({ minimum: 0, maximum: 63_072_000, description: 'Send Strict-Transport-Security: max-age=N on HTTPS answers (opt-in; 0 tells browsers to forget it).' }),
  ),
}
export type RouteHttps = { [K in keyof typeof routeHttpsProperties]?: Static<(typeof routeHttpsProperties)[K]> }

export const DestinationSchema = Type.Object(
  {
    servicePath: Type.Array(ServicePathSchema, { minItems: 1, maxItems: limits.maxPaths }),
    port: PortSchema,
  },
  { $id: 'Destination', additionalProperties: false, description: 'Path prefixes served by one port of the service.' },
)

/**
 * A stored route, normalised: defaults filled in, paths without trailing '/', domains
 * lower-case, lists de-duplicated and sorted. Two equal routes serialise to the same JSON,
 * which is what makes a repeated reconfigure a no-op.
 */
export const RouteSchema = Type.Object(
  {
    serviceName: ServiceNameSchema,
    destinations: Type.Array(DestinationSchema, { minItems: 1, maxItems: limits.maxDestinations }),
    serviceDomain: Type.Array(ServiceDomainSchema, { maxItems: limits.maxDomains }),
    sticky: Type.Boolean({ description: 'Pin each client to one task with an opaque cookie.' }),
    stickyCookie: Type.Optional(StickyCookieSchema),
    endpoints: Type.Array(EndpointSchema, { maxItems: limits.maxEndpoints }),
    aclName: Type.Optional(AclNameSchema),
    ...routeHttpsProperties,
  },
  { $id: 'Route', additionalProperties: false },
)
export type Route = Static<typeof RouteSchema>
export type Destination = Static<typeof DestinationSchema>

/** The cookie name a sticky route uses when none was given. */
export function cookieNameOf(route: Pick<Route, 'serviceName' | 'stickyCookie'>): string {
  return route.stickyCookie ?? `TETHER_${route.serviceName}`
}

const unique = (xs: readonly string[]): string[] => [...new Set(xs)]

/** Strips a trailing '/' (except from '/' itself): '/demo/' and '/demo' are the same prefix. */
export function normalizePath(path: string): string {
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path
}

/**
 * The canonical form of a route that already passed validation: defaults filled in, trailing
 * slashes removed, domains lower-cased, lists de-duplicated, destinations in the order given
 * (the first one is the primary). Idempotent.
 */
export function normalizeRoute(input: {
  serviceName: string
  destinations: ReadonlyArray<{ servicePath: readonly string[]; port: number }>
  serviceDomain?: readonly string[] | undefined
  sticky?: boolean | undefined
  stickyCookie?: string | undefined
  endpoints?: readonly string[] | undefined
  aclName?: string | undefined
} & RouteHttps): Route {
  const route: Route = {
    serviceName: input.serviceName,
    destinations: input.destinations.map((d) => ({ servicePath: unique(d.servicePath.map(normalizePath)), port: d.port })),
    serviceDomain: unique((input.serviceDomain ?? []).map((d) => d.toLowerCase())).sort(),
    sticky: input.sticky ?? false,
    endpoints: unique(input.endpoints ?? []),
  }
  if (input.stickyCookie !== undefined) route.stickyCookie = input.stickyCookie
  if (input.aclName !== undefined) route.aclName = input.aclName
  // HTTPS behaviour: only what is on is stored, so routes without it serialise as before.
  if (input.httpsOnly === true) route.httpsOnly = true
  if (input.redirectWhenHttpProto === true) route.redirectWhenHttpProto = true
  if (input.httpsRedirectCode !== undefined && (input.httpsOnly === true || input.redirectWhenHttpProto === true)) route.httpsRedirectCode = input.httpsRedirectCode
  if (input.denyHttp === true) route.denyHttp = true
  if (input.hstsMaxAge !== undefined) route.hstsMaxAge = input.hstsMaxAge
  return route
}
