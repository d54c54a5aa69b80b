/**
 * The route: what a CI pipeline registers for one Swarm service, and what every proxy renders
 * into HAProxy's configuration. Every string here ends up in a configuration file, so each
 * field has a strict rule, stated once (in `rules`) and used by the JSON schema (validation,
 * OpenAPI) and by the input parsers (`control/input/`), which must agree.
 */
import { Type, type Static } from 'typebox'
import { normalizeBackend, routeBackendProperties, type RouteBackend } from './route-backend.ts'

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
    // RFC 1123 host name; optionally '*.' (any subdomain) or Docker Flow Proxy's '*' (the name
    // itself and any subdomain) in front, and a trailing '.' (the root; ignored).
    pattern: '^(?:\\*\\.?)?(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.?$',
    text: "must be an RFC 1123 host name (labels of letters, digits and '-', at most 63 characters each), optionally starting with '*.' (any subdomain) or '*' (the name and any subdomain, Docker Flow Proxy's form)",
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
  headerName: {
    pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$',
    text: "must be an HTTP header name: letters, digits, '-' and '_', starting with a letter or digit, at most 64 characters",
  },
  headerValue: {
    // Printable ASCII. '%[...]' is HAProxy's sample-expression syntax: only the expressions in
    // `sampleExpressions` are allowed (checked by checkHeaderValue); any other '%' is literal.
    pattern: '^[\\x20-\\x7e]{0,1024}$',
    text: 'must be printable ASCII (no control characters), at most 1024 characters',
  },
  userAgent: {
    pattern: '^[\\x20-\\x7e]{1,128}$',
    text: 'must be 1 to 128 printable ASCII characters (matched case-insensitively as a substring of User-Agent)',
  },
  pathRegex: {
    // Placed inside a quoted argument of HAProxy's regsub(): no quote characters, no '%', no spaces.
    pattern: "^[\\x21\\x23\\x24\\x26\\x28-\\x7e]{1,256}$",
    text: "must be 1 to 256 printable ASCII characters without spaces, quotes or '%' (a PCRE regular expression for the search, a replacement that may use \\1..\\9)",
  },
  method: {
    pattern: '^[A-Z][A-Z0-9_-]{0,31}$',
    text: "must be an HTTP method name in capitals (GET, POST, ...): letters, digits, '_' and '-', at most 32 characters",
  },
  userName: {
    pattern: '^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$',
    text: "must be a user name of letters, digits and _ . @ + -, starting with a letter or digit, at most 64 characters",
  },
  passwordHash: {
    pattern: '^\\$(?:1|2[abxy]|5|6|y|gy|7)\\$[./0-9A-Za-z$=,]{8,250}$',
    text: "must be a crypt(3) hash ('$6$...' from mkpasswd -m sha-512, '$5$', '$y$', '$2b$', '$1$')",
  },
  realm: {
    pattern: '^[A-Za-z0-9 _.,:;@()/+-]{1,64}$',
    text: "must be 1 to 64 letters, digits, spaces and _ . , : ; @ ( ) / + -",
  },
  secretName: {
    pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$',
    text: "must be the suffix of a Docker secret name (dfp_users_<suffix>): letters, digits, '_', '.', '-', at most 63 characters",
  },
  timeout: { text: 'must be a whole number of seconds from 1 to 86400' },
  serverName: {
    // What a TLS client names in its ClientHello (SNI), matched case-insensitively (stored lower case): an exact host name, '*.' and a
    // suffix (any subdomain), or a prefix followed by '*' (Docker Flow Proxy's `-m beg`: 'api.*'
    // is any name starting with 'api.'). No regular expression ever reaches HAProxy.
    // A trailing '.' (the root) is ignored, as in serviceDomain: every form takes 'db.example.com.'.
    pattern: '^(?:(?:\\*\\.)?(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.?|[A-Za-z0-9][A-Za-z0-9.-]{0,251}\\*)$',
    text: "must be a TLS server name: a host name (labels of letters, digits and '-'; a trailing '.' is ignored), '*.' and a suffix (any subdomain), or a prefix of letters, digits, '.' and '-' followed by '*' (any name starting with it)",
    maxLength: 253,
  },
  srcPort: { text: 'must be an integer from 1 to 65535, a port the proxies listen on for this TCP route' },
  cidr: {
    // The characters of an IPv4 or IPv6 address and a prefix length; cidrProblem judges the rest.
    pattern: '^[0-9A-Fa-f:.]{2,45}(?:/[0-9]{1,3})?$',
    text: 'must be an IPv4 or IPv6 address, or a CIDR block (10.0.0.0/8, 192.168.1.7, 2001:db8::/32, ::1)',
  },
  compressionAlgo: { text: "must be gzip, deflate, raw-deflate or identity (HAProxy's compression algorithms)" },
  healthCheckPath: {
    // The servicePath rule (it is printed into `http-check send ... uri`), plus an optional query of the same characters.
    pattern: "^/(?:[A-Za-z0-9\\-._~!&()*+;=:@/]|%[0-9A-Fa-f]{2}){0,255}(?:\\?(?:[A-Za-z0-9\\-._~!&()*+;=:@/?]|%[0-9A-Fa-f]{2}){0,255})?$",
    text: "must start with '/' and hold only RFC 3986 path characters (letters, digits, - . _ ~ ! & ( ) * + ; = : @ / and %XX escapes), optionally a '?' and a query of the same characters; no spaces, quotes, '#', '$' or commas",
    maxLength: 512,
  },
  canary: { text: "must be a whole percent from 1 to 99 (the share of new sessions of the main service's paths)" },
  drain: { text: 'must be a whole number of seconds from 1 to 86400' },
  healthCheckInterval: { text: 'must be a whole number of seconds from 1 to 3600' },
  healthCheckStatus: { text: 'must be an HTTP status code from 100 to 599' },
  healthCheckSlowStart: { text: 'must be a whole number of seconds from 1 to 3600' },
  rateLimit: { text: 'must be a whole number of requests per second from 1 to 1000000' },
  rateLimitBurst: { text: 'must be a whole number of requests from 1 to 10000000, at least rateLimit and at most 3600 times it' },
  rateLimitTotal: { text: 'must be a whole number of requests per second from 1 to 10000000' },
  bodyLimit: { text: 'must be a whole number of bytes from 1 to 1099511627776 (1 TiB)' },
  mimeType: {
    // type/subtype, RFC 9110 token characters minus those HAProxy's parser treats specially ('#', '$', '%', quotes, '\\', '*'); no parameters.
    pattern: '^[A-Za-z0-9][A-Za-z0-9!&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!&^_.+-]{0,63}$',
    text: "must be a MIME type 'type/subtype' (letters, digits and ! & ^ _ . + -, each part starting with a letter or digit, at most 64 characters; no parameters, no wildcard)",
  },
} as const

/** HAProxy's compression algorithms (`compression algo`), as Docker Flow Proxy's compressionAlgo names them. */
export const COMPRESSION_ALGOS = ['gzip', 'deflate', 'raw-deflate', 'identity'] as const

/**
 * Ports every proxy holds for itself by default (HTTP :80, HTTPS :443, admin :8404), refused as a
 * TCP route's srcPort. The control plane does not know each proxy's settings: a proxy whose own
 * listeners are elsewhere reports a TCP route on one of its ports in its status instead.
 */
export const reservedPorts: ReadonlyMap<number, string> = new Map([
  [80, "the proxies' HTTP listener (TETHER_PROXY_LISTEN, default :80)"],
  [443, "the proxies' HTTPS listener (TETHER_PROXY_LISTEN_TLS, default :443; SNI passthrough routes share it with reqMode=sni)"],
  [8404, "the proxies' admin listener (TETHER_ADMIN_LISTEN, default :8404)"],
])

/**
 * The HAProxy sample expressions a header value may contain (and nothing else after '%['):
 * they read the connection, never a secret or the proxy's environment beyond its host name.
 */
export const sampleExpressions = ['%[src]', '%[src_port]', '%[dst]', '%[dst_port]', '%[ssl_fc]', '%[env(HOSTNAME)]'] as const

/** Why a header value is refused, or null: a '%[' must open one of `sampleExpressions`; no HAProxy condition. */
export function headerValueProblem(value: string): string | null {
  for (let i = value.indexOf('%['); i >= 0; i = value.indexOf('%[', i + 1)) {
    if (!sampleExpressions.some((e) => value.startsWith(e, i))) {
      return `holds a sample expression other than ${sampleExpressions.join(', ')} (other '%[...]' expressions are refused; a lone '%' is literal)`
    }
  }
  if (/(?:^|\s)(?:if|unless)\s/.test(value)) return "holds an HAProxy condition ('if'/'unless'); conditions are not supported, the header is always applied"
  return null
}

export const limits = {
  /** servicePath entries in one destination. */
  maxPaths: 32,
  /** destinations (path/port pairs, DFP's indexed forms) in one route. */
  maxDestinations: 16,
  maxDomains: 32,
  maxEndpoints: 64,
  /** TCP destinations (listen ports) and SNI destinations in one route. */
  maxTcp: 16,
  maxSni: 16,
  maxServerNames: 32,
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
  acmeDomains: Type.Optional(
    Type.Array(ServiceDomainSchema, {
      minItems: 1,
      maxItems: 100,
      description: "Names to get a certificate for by ACME (HTTP-01), stored as certificate 'acme-<serviceName>'. Tether's form: acme=true (the route's serviceDomain); DFP: letsencrypt.host.",
    }),
  ),
  hstsMaxAge: Type.Optional(
    Type.Integer({ minimum: 0, maximum: 63_072_000, description: 'Send Strict-Transport-Security: max-age=N on HTTPS answers (opt-in; 0 tells browsers to forget it).' }),
  ),
  hstsIncludeSubDomains: Type.Optional(
    Type.Boolean({ description: "Add includeSubDomains to Strict-Transport-Security: browsers use HTTPS for every subdomain of the answering host too (needs hstsMaxAge)." }),
  ),
  hstsPreload: Type.Optional(
    Type.Boolean({ description: 'Add preload to Strict-Transport-Security, asking to be built into browsers (hstspreload.org); needs hstsIncludeSubDomains and hstsMaxAge of at least 31536000.' }),
  ),
}
export type RouteHttps = { [K in keyof typeof routeHttpsProperties]?: Static<(typeof routeHttpsProperties)[K]> }

export const HeaderSchema = Type.Object(
  {
    name: Type.String({ pattern: rules.headerName.pattern, maxLength: 64, description: 'Header name.', examples: ['X-Forwarded-Port'] }),
    value: Type.String({
      pattern: rules.headerValue.pattern,
      maxLength: 1024,
      description: `Header value, literal text; the only HAProxy sample expressions allowed are ${sampleExpressions.join(', ')}.`,
      examples: ['%[dst_port]'],
    }),
  },
  { additionalProperties: false },
)

export const HeaderNameSchema = Type.String({ pattern: rules.headerName.pattern, maxLength: 64, examples: ['X-Powered-By'] })
const TimeoutSchema = Type.Integer({ minimum: 1, maximum: 86400 })
const MethodListSchema = Type.Array(Type.String({ pattern: rules.method.pattern, maxLength: 32 }), { minItems: 1, maxItems: 32 })

export const PathRewriteSchema = Type.Object(
  {
    search: Type.String({ pattern: rules.pathRegex.pattern, maxLength: 256, description: 'PCRE regular expression matched against the path.', examples: ['^/api/v1/(.*)'] }),
    replace: Type.String({ pattern: `^(?:${rules.pathRegex.pattern.slice(1, -1)})?$`, maxLength: 256, description: 'Replacement; \\1..\\9 are the groups.', examples: ['/v1/\\1'] }),
  },
  { additionalProperties: false },
)

export const ServiceHeaderSchema = Type.Object(
  {
    name: Type.String({ pattern: rules.headerName.pattern, maxLength: 64 }),
    value: Type.String({ pattern: '^[\\x20-\\x7e]{1,256}$', maxLength: 256 }),
  },
  { additionalProperties: false, description: 'A request header the destination requires, with this exact value.' },
)

/**
 * Per-destination fields are Docker Flow Proxy's indexed parameters (`serviceDomain.N`,
 * `userAgent.N`, ...). Routing discriminators (serviceDomain, userAgent, serviceHeader) are
 * part of the destination's bindings (see route-planner.ts); the others shape the requests the
 * destination's backend receives. Absent means "not set" (stored routes omit them).
 */
export const DestinationSchema = Type.Object(
  {
    servicePath: Type.Array(ServicePathSchema, { minItems: 1, maxItems: limits.maxPaths }),
    port: PortSchema,
    serviceDomain: Type.Optional(Type.Array(ServiceDomainSchema, { minItems: 1, maxItems: limits.maxDomains, description: "This destination's host names, instead of the route's serviceDomain." })),
    userAgent: Type.Optional(
      Type.Array(Type.String({ pattern: rules.userAgent.pattern, maxLength: 128 }), {
        minItems: 1,
        maxItems: 16,
        description: 'Only requests whose User-Agent contains one of these (case-insensitive) take this destination.',
        examples: [['iphone', 'android']],
      }),
    ),
    serviceHeader: Type.Optional(Type.Array(ServiceHeaderSchema, { minItems: 1, maxItems: 8, description: 'Only requests carrying all these headers with these values take this destination.' })),
    listener: Type.Optional(
      Type.Union([Type.Literal('http'), Type.Literal('https')], {
        description: "Only requests arriving on this listener of the proxies take this destination (Docker Flow Proxy's srcPort 80 or 443 of an HTTP destination); absent: both.",
      }),
    ),
    servicePathExclude: Type.Optional(Type.Array(ServicePathSchema, { minItems: 1, maxItems: limits.maxPaths, description: 'Prefixes (whole segments) this destination does not serve.' })),
    pathRewrite: Type.Optional(Type.Array(PathRewriteSchema, { minItems: 1, maxItems: 8, description: "Regular-expression rewrites of the path, applied in order before the request is sent (Docker Flow Proxy's reqPathSearchReplace)." })),
    stripPrefix: Type.Optional(Type.Boolean({ description: 'Remove the matched servicePath prefix before sending the request (/demo/x reaches the service as /x).' })),
    allowedMethods: Type.Optional(MethodListSchema),
    deniedMethods: Type.Optional(MethodListSchema),
    ignoreAuthorization: Type.Optional(Type.Boolean({ description: "This destination does not ask for the route's basic-auth users." })),
    timeoutServer: Type.Optional(TimeoutSchema),
    timeoutTunnel: Type.Optional(TimeoutSchema),
    redirectFromDomain: Type.Optional(Type.Array(ServiceDomainSchema, { minItems: 1, maxItems: limits.maxDomains, description: "Requests to these hosts are redirected (301) to this destination's first host." })),
  },
  { $id: 'Destination', additionalProperties: false, description: 'Path prefixes served by one port of the service, and how.' },
)

export const UserSchema = Type.Object(
  {
    name: Type.String({ pattern: rules.userName.pattern, maxLength: 64 }),
    passwordHash: Type.String({ pattern: rules.passwordHash.pattern, maxLength: 260, description: 'crypt(3) hash; Tether never stores a password.' }),
  },
  { additionalProperties: false },
)

export const AuthSchema = Type.Object(
  {
    users: Type.Array(UserSchema, { maxItems: 64 }),
    usersSecret: Type.Optional(
      Type.String({
        pattern: rules.secretName.pattern,
        maxLength: 63,
        description: "Users from the Docker secret dfp_users_<usersSecret> mounted in the proxies ('name:password' entries, ',' or new-line separated), read by each proxy; a proxy without it lets nobody in and says so in its status.",
      }),
    ),
    usersSecretEncrypted: Type.Optional(Type.Boolean({ description: "The secret's passwords are crypt(3) hashes (Docker Flow Proxy's usersPassEncrypted); else each proxy hashes them." })),
    usersFromSecret: Type.Optional(
      Type.Array(Type.String({ pattern: rules.userName.pattern, maxLength: 64 }), {
        minItems: 1,
        maxItems: 64,
        description: 'Only these users of the secret get in (DFP: users listed without a password); absent: every user of the secret.',
      }),
    ),
    realm: Type.Optional(Type.String({ pattern: rules.realm.pattern, maxLength: 64 })),
  },
  { additionalProperties: false, description: 'HTTP basic authentication in front of every destination (but those with ignoreAuthorization).' },
)

export const ServerNameSchema = Type.String({
  pattern: rules.serverName.pattern,
  maxLength: rules.serverName.maxLength,
  description: "TLS server name (SNI): exact 'db.example.com', '*.example.com' (any subdomain) or 'api.*' (any name starting with 'api.').",
  examples: ['db.example.com'],
})

const proxyProtocol = Type.Optional(
  Type.Boolean({ description: "Send a PROXY protocol v2 header to the service's tasks, so they see the client's address (the service must expect it). Default false." }),
)

/**
 * A TCP destination: every proxy listens on `srcPort` and forwards the connections, unchanged,
 * to the service's `port`. One service per srcPort across the table (a second claim is
 * 409 ROUTE_CONFLICT). Health checks are TCP connects; `sticky` pins a client address to a task.
 */
export const TcpDestinationSchema = Type.Object(
  {
    srcPort: Type.Integer({ minimum: 1, maximum: 65535, description: 'Port every proxy listens on for this route (publish it in host mode). Not 80, 443 or 8404 (the proxies\' own).', examples: [6379] }),
    port: PortSchema,
    sendProxyProtocol: proxyProtocol,
    timeoutClient: Type.Optional(Type.Integer({ minimum: 1, maximum: 86400, description: 'Seconds a client connection may stay idle (default 3600).' })),
    timeoutServer: Type.Optional(Type.Integer({ minimum: 1, maximum: 86400, description: 'Seconds a server connection may stay idle (default 3600).' })),
  },
  { $id: 'TcpDestination', additionalProperties: false, description: "A TCP listen port on every proxy forwarding to the service's port (Docker Flow Proxy's reqMode=tcp)." },
)
export type TcpDestination = Static<typeof TcpDestinationSchema>

/**
 * An SNI passthrough destination: TLS connections on the proxies' HTTPS port whose ClientHello
 * names one of `serverName` go, still encrypted, to the service's `port` (the service holds the
 * certificate); the other names are terminated by the proxy as usual. One service per name.
 */
export const SniDestinationSchema = Type.Object(
  {
    serverName: Type.Array(ServerNameSchema, { minItems: 1, maxItems: limits.maxServerNames }),
    port: PortSchema,
    sendProxyProtocol: proxyProtocol,
  },
  { $id: 'SniDestination', additionalProperties: false, description: "TLS passthrough by server name on the proxies' HTTPS port (Docker Flow Proxy's reqMode=sni)." },
)
export type SniDestination = Static<typeof SniDestinationSchema>

const HeaderListSchema = Type.Array(HeaderSchema, { minItems: 1, maxItems: 32 })

/** Access by client address (the connection's source address as HAProxy sees it). */
const CidrListSchema = (description: string) =>
  Type.Optional(Type.Array(Type.String({ pattern: rules.cidr.pattern, maxLength: 49 }), { minItems: 1, maxItems: 64, description, examples: [['10.0.0.0/8', '2001:db8::/32']] }))
export const routeIpProperties = {
  ipAllow: CidrListSchema("Only clients whose address is in one of these IPv4/IPv6 addresses or CIDR blocks are served; others get 403. The address is the connection's (behind another balancer, that balancer's)."),
  ipDeny: CidrListSchema('Clients whose address is in one of these addresses or CIDR blocks get 403 (also when ipAllow lets them in).'),
}

/** Response compression by the proxies (Docker Flow Proxy's compressionAlgo / compressionType). */
export const routeCompressionProperties = {
  compressionAlgo: Type.Optional(
    Type.Array(Type.Union([Type.Literal('gzip'), Type.Literal('deflate'), Type.Literal('raw-deflate'), Type.Literal('identity')]), {
      minItems: 1,
      maxItems: COMPRESSION_ALGOS.length,
      description:
        "Compress responses with these algorithms, for clients that ask for one in Accept-Encoding (HAProxy's `compression algo`; gzip is what browsers and curl --compressed ask for). A response the service compressed already (Content-Encoding set) is passed as it is.",
      examples: [['gzip']],
    }),
  ),
  compressionType: Type.Optional(
    Type.Array(Type.String({ pattern: rules.mimeType.pattern, maxLength: 129 }), {
      minItems: 1,
      maxItems: 32,
      description: 'Only responses of these MIME types are compressed (needs compressionAlgo); absent: every type.',
      examples: [['text/html', 'application/json']],
    }),
  ),
}
const HeaderNameListSchema = Type.Array(HeaderNameSchema, { minItems: 1, maxItems: 32 })

/**
 * An HTTP health check of every task of the route (all its HTTP destinations, each on its port).
 * A task whose check fails `fall` (2) times in a row gets no request; its pinned clients move to a
 * task that passes (their cookie is re-issued). A task added while the proxy runs gets traffic once
 * its first check passes. Without healthCheckPath a task is checked by a TCP connect only.
 */
export const routeHealthProperties = {
  healthCheckPath: Type.Optional(
    Type.String({
      pattern: rules.healthCheckPath.pattern,
      maxLength: rules.healthCheckPath.maxLength,
      description: "Check every task with GET <path> (Host: the route's first serviceDomain, if any); a task passes while it answers healthCheckStatus (default: any 2xx or 3xx). Absent: a TCP connect check.",
      examples: ['/healthz'],
    }),
  ),
  healthCheckInterval: Type.Optional(Type.Integer({ minimum: 1, maximum: 3600, description: 'Seconds between two checks of a task (default 2). A task is out after 2 failed checks in a row, back after 1 that passes.' })),
  healthCheckStatus: Type.Optional(Type.Integer({ minimum: 100, maximum: 599, description: 'The status a passing task answers (needs healthCheckPath; default: any 2xx or 3xx).', examples: [200] })),
  healthCheckSlowStart: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 3600, description: "Seconds over which a task that starts passing is given its full share of new sessions (HAProxy's slowstart), instead of all at once." }),
  ),
}

/**
 * Request rate limits per route, applied by each proxy replica on its own (docs/edge-policies.md):
 * a replica counts the requests it let through, per client address and in total, and answers 429
 * with Retry-After past the limit. Counts are not shared between replicas and restart at a reload.
 */
export const routeRateLimitProperties = {
  rateLimit: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: 1_000_000,
      description:
        'Requests per second one client address may send to this route, on average; past it the proxy answers 429 with Retry-After. Per proxy replica: N replicas let a client through up to N times this. The address is the connection\'s, or the one a trusted balancer vouches for (TETHER_TRUSTED_PROXIES).',
      examples: [10],
    }),
  ),
  rateLimitBurst: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: 10_000_000,
      description: 'Requests a client may send at once (needs rateLimit; default rateLimit): counted over a window of rateLimitBurst / rateLimit seconds, so the average stays rateLimit. At least rateLimit, at most 3600 times it.',
      examples: [50],
    }),
  ),
  rateLimitTotal: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 10_000_000, description: 'Requests per second all clients together may send to this route through one proxy replica; past it, 429 with Retry-After: 1.', examples: [1000] }),
  ),
}

/**
 * The request body limit of a route (docs/edge-policies.md): a request whose Content-Length is over
 * it is refused by the proxy with 413 before the service sees anything. A body sent without a
 * Content-Length (chunked HTTP/1.1, HTTP/2 without the header) is not measured and not limited.
 */
export const routeBodyLimitProperties = {
  bodyLimit: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: 1_099_511_627_776,
      description:
        'Largest request body, in bytes, this route accepts (default: the proxy\'s TETHER_MAX_BODY_SIZE, none when 0). A request whose Content-Length is over it is answered 413 by the proxy before the service sees anything. Only Content-Length is judged: a body sent without one (chunked HTTP/1.1, HTTP/2 without the header) is not limited.',
      examples: [1048576],
    }),
  ),
}

/**
 * Releases of a stateful service (docs/releasing.md). A canary route names paths (and hosts) another
 * service holds: its tasks join that service's backend, and `canary` percent of NEW sessions (of
 * requests, for a route that is not sticky) go to them by weight; a session already pinned stays on
 * its task whichever side it is on. A takeover with a drain leaves the old route in place, marked
 * `drain`, until `until`: its tasks stay in the new service's backend at weight 0 (HAProxy: only
 * clients pinned to them by their cookie reach them), and the control plane removes the route when
 * the drain ends.
 */
export const routeReleaseProperties = {
  canary: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: 99,
      description:
        "Percent (1-99) of new sessions on paths another service holds that go to this service's tasks instead; sessions already pinned stay where they are. Changing it moves nobody and needs no reload. Promote with takeover=true (and drain), abort by removing this route.",
      examples: [30],
    }),
  ),
  drain: Type.Optional(
    Type.Object(
      {
        until: Type.String({ format: 'date-time', description: 'When the drain ends (UTC): then this route is removed and its pinned clients move to the new service.' }),
        to: ServiceNameSchema,
      },
      {
        additionalProperties: false,
        description: "Set by a takeover with drain=<seconds> (never given in a write): this service's paths went to `to`; clients pinned to its tasks keep reaching them until `until`.",
      },
    ),
  ),
}

/**
 * A stored route, normalised: defaults filled in, paths without trailing '/', domains
 * lower-case, lists de-duplicated and sorted. Two equal routes serialise to the same JSON,
 * which is what makes a repeated reconfigure a no-op.
 */
export const RouteSchema = Type.Object(
  {
    serviceName: ServiceNameSchema,
    destinations: Type.Array(DestinationSchema, { maxItems: limits.maxDestinations, description: 'HTTP destinations (empty only when the route has tcp or sni destinations).' }),
    tcp: Type.Optional(Type.Array(TcpDestinationSchema, { minItems: 1, maxItems: limits.maxTcp, description: 'TCP listen ports forwarded to the service (reqMode=tcp).' })),
    sni: Type.Optional(Type.Array(SniDestinationSchema, { minItems: 1, maxItems: limits.maxSni, description: 'TLS server names passed through to the service (reqMode=sni).' })),
    serviceDomain: Type.Array(ServiceDomainSchema, { maxItems: limits.maxDomains }),
    sticky: Type.Boolean({ description: 'Pin each client to one task: with an opaque cookie for HTTP, by client address (a stick table) for TCP and SNI.' }),
    stickyCookie: Type.Optional(StickyCookieSchema),
    endpoints: Type.Array(EndpointSchema, { maxItems: limits.maxEndpoints }),
    aclName: Type.Optional(AclNameSchema),
    ...routeHttpsProperties,
    addReqHeader: Type.Optional(HeaderListSchema),
    setReqHeader: Type.Optional(HeaderListSchema),
    delReqHeader: Type.Optional(HeaderNameListSchema),
    addResHeader: Type.Optional(HeaderListSchema),
    setResHeader: Type.Optional(HeaderListSchema),
    delResHeader: Type.Optional(HeaderNameListSchema),
    auth: Type.Optional(AuthSchema),
    isDefaultBackend: Type.Optional(Type.Boolean({ description: 'Requests no route matches go to this service (its first destination) instead of a 404.' })),
    ...routeCompressionProperties,
    ...routeIpProperties,
    ...routeBackendProperties,
    ...routeHealthProperties,
    ...routeRateLimitProperties,
    ...routeBodyLimitProperties,
    ...routeReleaseProperties,
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
 * Host names in canonical form: lower case, without the trailing root '.', Docker Flow Proxy's
 * `*example.com` (no dot after '*': the name itself and its subdomains) as the two entries
 * `example.com` and `*.example.com`; de-duplicated and sorted.
 */
export function normalizeDomains(domains: readonly string[]): string[] {
  const out: string[] = []
  for (const raw of domains) {
    const d = (raw.endsWith('.') ? raw.slice(0, -1) : raw).toLowerCase()
    if (d.startsWith('*') && !d.startsWith('*.')) out.push(d.slice(1), `*.${d.slice(1)}`)
    else out.push(d)
  }
  return unique(out).sort()
}

/** What normalizeRoute takes: a route as parsed, before defaults. */
export interface RouteInput extends RouteHttps, RouteBackend {
  serviceName: string
  destinations: ReadonlyArray<Partial<Omit<Destination, 'servicePath' | 'port'>> & { servicePath: readonly string[]; port: number }>
  tcp?: readonly TcpDestination[] | undefined
  sni?: ReadonlyArray<{ serverName: readonly string[]; port: number; sendProxyProtocol?: boolean | undefined }> | undefined
  serviceDomain?: readonly string[] | undefined
  sticky?: boolean | undefined
  stickyCookie?: string | undefined
  endpoints?: readonly string[] | undefined
  aclName?: string | undefined
  addReqHeader?: Header[] | undefined
  setReqHeader?: Header[] | undefined
  delReqHeader?: string[] | undefined
  addResHeader?: Header[] | undefined
  setResHeader?: Header[] | undefined
  delResHeader?: string[] | undefined
  auth?: Auth | undefined
  isDefaultBackend?: boolean | undefined
  compressionAlgo?: ReadonlyArray<(typeof COMPRESSION_ALGOS)[number]> | undefined
  compressionType?: readonly string[] | undefined
  ipAllow?: readonly string[] | undefined
  ipDeny?: readonly string[] | undefined
  healthCheckPath?: string | undefined
  healthCheckInterval?: number | undefined
  healthCheckStatus?: number | undefined
  healthCheckSlowStart?: number | undefined
  rateLimit?: number | undefined
  rateLimitBurst?: number | undefined
  rateLimitTotal?: number | undefined
  bodyLimit?: number | undefined
  canary?: number | undefined
  drain?: { until: string; to: string } | undefined
}

export type Header = Static<typeof HeaderSchema>
export type Auth = Static<typeof AuthSchema>

const nonEmpty = <T>(xs: readonly T[] | undefined): xs is readonly T[] => xs !== undefined && xs.length > 0

function normalizeDestination(d: RouteInput['destinations'][number]): Destination {
  const out: Destination = { servicePath: unique(d.servicePath.map(normalizePath)), port: d.port }
  if (nonEmpty(d.serviceDomain)) out.serviceDomain = normalizeDomains(d.serviceDomain)
  if (nonEmpty(d.userAgent)) out.userAgent = unique(d.userAgent).sort()
  if (nonEmpty(d.serviceHeader)) out.serviceHeader = [...d.serviceHeader].sort((a, b) => (a.name.toLowerCase() < b.name.toLowerCase() ? -1 : a.name.toLowerCase() > b.name.toLowerCase() ? 1 : 0))
  if (d.listener !== undefined) out.listener = d.listener
  if (nonEmpty(d.servicePathExclude)) out.servicePathExclude = unique(d.servicePathExclude.map(normalizePath)).sort()
  if (nonEmpty(d.pathRewrite)) out.pathRewrite = d.pathRewrite.map((r) => ({ search: r.search, replace: r.replace }))
  if (d.stripPrefix === true) out.stripPrefix = true
  if (nonEmpty(d.allowedMethods)) out.allowedMethods = unique(d.allowedMethods.map((m) => m.toUpperCase())).sort()
  if (nonEmpty(d.deniedMethods)) out.deniedMethods = unique(d.deniedMethods.map((m) => m.toUpperCase())).sort()
  if (d.ignoreAuthorization === true) out.ignoreAuthorization = true
  if (d.timeoutServer !== undefined) out.timeoutServer = d.timeoutServer
  if (d.timeoutTunnel !== undefined) out.timeoutTunnel = d.timeoutTunnel
  if (nonEmpty(d.redirectFromDomain)) out.redirectFromDomain = normalizeDomains(d.redirectFromDomain)
  return out
}

function normalizeTcp(d: TcpDestination): TcpDestination {
  const out: TcpDestination = { srcPort: d.srcPort, port: d.port }
  if (d.sendProxyProtocol === true) out.sendProxyProtocol = true
  if (d.timeoutClient !== undefined) out.timeoutClient = d.timeoutClient
  if (d.timeoutServer !== undefined) out.timeoutServer = d.timeoutServer
  return out
}

function normalizeSni(d: NonNullable<RouteInput['sni']>[number]): SniDestination {
  const out: SniDestination = { serverName: unique(d.serverName.map((n) => n.toLowerCase().replace(/\.$/, ''))).sort(), port: d.port }
  if (d.sendProxyProtocol === true) out.sendProxyProtocol = true
  return out
}

/**
 * The canonical form of a route that already passed validation: defaults filled in, trailing
 * slashes removed, domains lower-cased, lists de-duplicated, destinations in the order given
 * (the first one is the primary), optional fields left out when empty or false (so a route
 * stored before they existed stays byte-identical). Idempotent.
 */
export function normalizeRoute(input: RouteInput): Route {
  const route: Route = {
    serviceName: input.serviceName,
    destinations: input.destinations.map(normalizeDestination),
    serviceDomain: normalizeDomains(input.serviceDomain ?? []),
    sticky: input.sticky ?? false,
    endpoints: unique(input.endpoints ?? []),
  }
  if (nonEmpty(input.tcp)) route.tcp = input.tcp.map(normalizeTcp)
  if (nonEmpty(input.sni)) route.sni = input.sni.map(normalizeSni)
  if (input.stickyCookie !== undefined) route.stickyCookie = input.stickyCookie
  if (input.aclName !== undefined) route.aclName = input.aclName
  // HTTPS behaviour: only what is on is stored, so routes without it serialise as before.
  if (input.httpsOnly === true) route.httpsOnly = true
  if (input.redirectWhenHttpProto === true) route.redirectWhenHttpProto = true
  if (input.httpsRedirectCode !== undefined && (input.httpsOnly === true || input.redirectWhenHttpProto === true)) route.httpsRedirectCode = input.httpsRedirectCode
  if (input.denyHttp === true) route.denyHttp = true
  if (input.hstsMaxAge !== undefined) route.hstsMaxAge = input.hstsMaxAge
  if (input.hstsIncludeSubDomains === true) route.hstsIncludeSubDomains = true
  if (input.hstsPreload === true) route.hstsPreload = true
  for (const key of ['addReqHeader', 'setReqHeader', 'addResHeader', 'setResHeader'] as const) {
    const list = input[key]
    if (nonEmpty(list)) route[key] = list.map((h) => ({ name: h.name, value: h.value }))
  }
  for (const key of ['delReqHeader', 'delResHeader'] as const) {
    const list = input[key]
    if (nonEmpty(list)) route[key] = unique(list)
  }
  if (input.auth !== undefined && (input.auth.users.length > 0 || input.auth.usersSecret !== undefined)) {
    const auth: Auth = { users: [...input.auth.users].map((u) => ({ name: u.name, passwordHash: u.passwordHash })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)) }
    if (input.auth.usersSecret !== undefined) {
      auth.usersSecret = input.auth.usersSecret
      if (input.auth.usersSecretEncrypted === true) auth.usersSecretEncrypted = true
      if (nonEmpty(input.auth.usersFromSecret)) auth.usersFromSecret = unique(input.auth.usersFromSecret).sort()
    }
    if (input.auth.realm !== undefined) auth.realm = input.auth.realm
    route.auth = auth
  }
  if (input.isDefaultBackend === true) route.isDefaultBackend = true
  Object.assign(route, normalizeBackend(input))
  // The algorithms in the order given (HAProxy's preference among those a client accepts); types as a set.
  if (nonEmpty(input.compressionAlgo)) route.compressionAlgo = unique(input.compressionAlgo) as Array<(typeof COMPRESSION_ALGOS)[number]>
  if (nonEmpty(input.compressionType)) route.compressionType = unique(input.compressionType.map((t) => t.toLowerCase())).sort()
  if (nonEmpty(input.ipAllow)) route.ipAllow = unique(input.ipAllow.map((c) => c.toLowerCase())).sort()
  if (nonEmpty(input.ipDeny)) route.ipDeny = unique(input.ipDeny.map((c) => c.toLowerCase())).sort()
  for (const key of ['healthCheckPath', 'healthCheckInterval', 'healthCheckStatus', 'healthCheckSlowStart', 'rateLimit', 'rateLimitBurst', 'rateLimitTotal', 'bodyLimit'] as const) {
    const value = input[key]
    if (value !== undefined) (route as Record<string, unknown>)[key] = value
  }
  if (input.canary !== undefined) route.canary = input.canary
  if (input.drain !== undefined) route.drain = { until: input.drain.until, to: input.drain.to }
  if (input.acmeDomains !== undefined && input.acmeDomains.length > 0) route.acmeDomains = unique(input.acmeDomains.map((d) => d.toLowerCase())).sort()
  return route
}

/** The hosts a destination answers to: its own serviceDomain, else the route's ('' = any host). */
export function hostsOf(route: Pick<Route, 'serviceDomain'>, destination: Pick<Destination, 'serviceDomain'>): string[] {
  const hosts = destination.serviceDomain ?? route.serviceDomain
  return hosts.length > 0 ? hosts : ['']
}
