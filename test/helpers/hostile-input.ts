/**
 * fast-check generators of hostile route input, in every form a route reaches the control
 * plane: Tether's query string (PUT /v1/reconfigure), its JSON bodies (POST /v1/reconfigure,
 * PUT /v1/routes/{name}), Docker Flow Proxy's form (/v1/docker-flow-proxy/reconfigure) and
 * com.df.* service labels. Each field is, by weight: a valid value of its kind (the tricky
 * corners of each rule: regex metacharacters in paths, quotes and '%' in header values, ...),
 * a valid value with a hostile fragment spliced in (newline, '#', quotes, '$', braces,
 * ' if ', a whole directive...), or hostile text alone. Valid neighbours let a hostile value
 * reach the check of its own field instead of being refused for another one.
 *
 * Routes of every kind: HTTP, TCP (reqMode=tcp: srcPort → port) and SNI passthrough (reqMode=sni:
 * server names → port), in Tether's query form, its JSON forms (tcp[] and sni[], alone or beside
 * HTTP destinations), and DFP's form and labels (indexed reqMode.N/srcPort.N on a service mixing
 * kinds, pathType req_ssl_sni with -m str|beg|end|reg and names of the matching shape).
 */
import fc from 'fast-check'

/** Text that ends or starts something in HAProxy's configuration, a URL or JSON. */
export const FRAGMENTS = [
  '\n', '\r', '\r\n', '\t', ' ', '\x00', '\x0b', '\x7f', '#', '"', "'", '\\', '$', '${HOME}', '$HOME', '{', '}', ' { ', ' } ', '!{', '%', '%%', '%[', '%[src]',
  '%[env(HAPROXY_CFGFILES)]', '%[req.hdr(cookie)]', ']', '[', '(', ')', ',', ':', ';', '=', '&', '?', '/', '//', '/..', '/.', '*', '..', ' if ', ' unless ', ' if TRUE',
  '\n    http-request deny', '\n    use_backend svc_x_80', '\nbackend evil\n    server s 127.0.0.1:1', '" if { always_true }', "' if TRUE '", '\\n', '%0a', '%0d%0a',
  '%00', '%23', '%22', '%27', '0x50', '+80', '8e1', '8.0', ' 80', '-1', '99999', '\u2028', '\u00e9', '\ud83d\ude00', 'é', '\uff0f', '<script>', '../../etc/passwd',
  '__proto__', 'constructor', 'true', 'false', '', 'tether.notfound', 'svc_known-good_80',
] as const

const fragment = fc.constantFrom(...FRAGMENTS)
const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 24 })

/** Hostile text alone: fragments and random characters (any code point). */
export const hostile: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.array(fc.oneof(fragment, printable), { minLength: 1, maxLength: 4 }).map((xs) => xs.join('')) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 16 }) },
  { weight: 1, arbitrary: fragment },
)

/** A valid value with a hostile fragment inserted somewhere. */
function spliced(valid: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.tuple(valid, fc.oneof(fragment, hostile), fc.nat()).map(([v, f, at]) => {
    const i = at % (v.length + 1)
    return v.slice(0, i) + f + v.slice(i)
  })
}

/** How often a field is valid, spliced or hostile alone (mutable for diagnostics). */
export const FIELD_WEIGHTS = { valid: 24, spliced: 2, hostile: 1 }

/** Mostly valid, sometimes spliced, now and then hostile alone. */
function field(valid: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.oneof({ weight: FIELD_WEIGHTS.valid, arbitrary: valid }, { weight: FIELD_WEIGHTS.spliced, arbitrary: spliced(valid) }, { weight: FIELD_WEIGHTS.hostile, arbitrary: hostile })
}

const label = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?$/)
const segment = fc.oneof(
  fc.stringMatching(/^(?:[A-Za-z0-9\-._~!&()*+;=:@]|%[0-9A-Fa-f]{2}){1,10}$/),
  fc.constantFrom('api', 'v1', '(.*)', 'a+b', '(x)', 'x*', '%2F', '%25', '%0a', '~user', 'a;b=c', '@', ':', '*', '!', '&', '=', '.well-known', '...'),
).filter((s) => s !== '.' && s !== '..')

export const valid = {
  serviceName: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,15}$/),
  path: fc.oneof(
    { weight: 1, arbitrary: fc.constant('/') },
    { weight: 6, arbitrary: fc.tuple(fc.array(segment, { minLength: 1, maxLength: 3 }), fc.boolean()).map(([s, slash]) => `/${s.join('/')}${slash ? '/' : ''}`) },
  ),
  domain: fc.tuple(fc.constantFrom('', '*.', '*'), fc.array(label, { minLength: 1, maxLength: 3 }), fc.constantFrom('', '.')).map(([w, ls, dot]) => `${w}${ls.join('.')}${dot}`),
  port: fc.oneof(fc.integer({ min: 1, max: 65535 }).map(String), fc.constantFrom('80', '8080', '65535')),
  endpoint: fc.oneof(
    fc.tuple(fc.integer({ min: 1, max: 254 }), fc.integer({ min: 1, max: 65535 })).map(([o, p]) => `127.0.0.${o}:${p}`),
    fc.integer({ min: 1, max: 65535 }).map((p) => `[::1]:${p}`),
    fc.integer({ min: 1, max: 65535 }).map((p) => `localhost:${p}`),
  ),
  cookie: fc.stringMatching(/^[A-Za-z0-9!&*+\-.^_`|~]{1,16}$/),
  headerName: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$/),
  headerValue: fc.array(fc.oneof(printable, fc.constantFrom('%[src]', '%[dst_port]', '%[env(HOSTNAME)]', '100%', '%%', '"q"', "'s'", '\\', '$HOME', '#', '{', '}', 'a if b', ' unless ')), { minLength: 1, maxLength: 4 }).map((xs) => xs.join('').trim() || 'v'),
  userAgent: fc.oneof(printable.filter((s) => s.length > 0), fc.constantFrom('iPhone', 'Mozilla/5.0 (X11)', 'a"b', "it's", '#hash', '\\x')),
  regex: fc.array(fc.constantFrom('^', '/', 'api', '(', ')', '(.*)', '.*', '[a-z]', '[^/]', '\\d+', '\\/', '+', '?', '|', '{2}', '(?:x)', '(?<=a)', '(?<n>x)', '\\1', '$', '#', ']', '[', '&', '!', '~', '\\'), { minLength: 1, maxLength: 6 }).map((xs) => xs.join('')),
  method: fc.oneof(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'PATCH', 'get', 'OPTIONS'), fc.stringMatching(/^[A-Z][A-Z0-9_-]{0,8}$/)),
  userName: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,10}$/),
  password: fc.oneof(printable.filter((s) => s.length > 0), fc.constantFrom("p'ss", 'p"ss', 'p$ss', 'p#ss', 'p\\ss', 'p ss')),
  passwordHash: fc.constantFrom('$6$tethersalt$igDKEU2kQB0/sdrV3JlyBanTfVltpwmxDdT780GrialRN11kHhMXKN0Sp1sPnRq95/CzpK0fl8.FOSqDXQgNN.', '$5$saltsalt$0123456789abcdef', "$6$x'y$abcdefgh", '$1$abc$defghijk'),
  realm: fc.stringMatching(/^[A-Za-z0-9 _.,:;@()/+-]{1,20}$/),
  boolean: fc.constantFrom('true', 'false', '1', '0', 't', 'F', 'TRUE', 'yes', 'on'),
  seconds: fc.oneof(fc.integer({ min: 1, max: 86400 }).map(String), fc.constantFrom('0', '86401', '1e3', '0x10', '010')),
  redirectCode: fc.constantFrom('301', '302', '307', '308', '303', '200'),
  /** Requests per second or at once: in range, and the corners (0, out of range, not decimal digits). */
  rate: fc.oneof(fc.integer({ min: 1, max: 10_000_000 }).map(String), fc.constantFrom('0', '10000001', '1e3', '0x10', '010', '-5', '1.5')),
  /** Body sizes in bytes: in range, and the corners (0, over 1 TiB, a unit, not decimal digits). */
  bytes: fc.oneof(fc.integer({ min: 1, max: 1_099_511_627_776 }).map(String), fc.constantFrom('0', '1099511627777', '10m', '1e6', '0x10', '010', '-5', '1.5')),
  hsts: fc.oneof(fc.integer({ min: 0, max: 63_072_000 }).map(String), fc.constantFrom('-1', '1e9', '0x10')),
  /** Client addresses: IPv4/IPv6 addresses and CIDR blocks, and the corners (prefix out of range, leading zeros, a zone). */
  cidr: fc.oneof(
    { weight: 4, arbitrary: fc.tuple(fc.ipV4(), fc.option(fc.integer({ min: 0, max: 32 }))).map(([a, p]) => (p === null ? a : `${a}/${p}`)) },
    { weight: 3, arbitrary: fc.tuple(fc.ipV6(), fc.option(fc.integer({ min: 0, max: 128 }))).map(([a, p]) => (p === null ? a : `${a}/${p}`)) },
    { weight: 1, arbitrary: fc.constantFrom('10.0.0.0/33', '010.0.0.1', '::1/129', 'fe80::1%eth0', '1.2.3', '::', '0.0.0.0/0', '::ffff:10.0.0.1', '-1.2.3.4', '1.2.3.4/-1') },
  ),
  /** Health-check paths, and the corners (relative, a space, a newline, '#', a bad escape, a quote). */
  healthPath: fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom('/healthz', '/', '/api/health?deep=1', '/h%20x', '/ready;v=1') },
    { weight: 1, arbitrary: fc.constantFrom('healthz', '/a b', '/h\nhttp-check expect status 500', '/h#x', '/%zz', '/h"', '/h$x', '/h,x') },
  ),
  healthSeconds: fc.oneof(fc.integer({ min: 1, max: 3600 }).map(String), fc.constantFrom('0', '3601', '5s', '-1', '1e3', '010')),
  healthStatus: fc.oneof(fc.integer({ min: 100, max: 599 }).map(String), fc.constantFrom('99', '600', '2xx', '200,204')),
  /** HAProxy's compression algorithms, and names it does not have. */
  compressionAlgo: fc.oneof({ weight: 6, arbitrary: fc.constantFrom('gzip', 'deflate', 'raw-deflate', 'identity', 'GZIP') }, { weight: 1, arbitrary: fc.constantFrom('br', 'zstd', 'gzip;q=1', 'x-gzip', '*') }),
  /** MIME types: valid type/subtype tokens, and the corners (parameters, wildcards, case). */
  mimeType: fc.oneof(
    { weight: 6, arbitrary: fc.tuple(fc.constantFrom('text', 'application', 'image', 'Text'), fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9!&^_.+-]{0,10}$/)).map(([t, st]) => `${t}/${st}`) },
    { weight: 1, arbitrary: fc.constantFrom('text/html', 'application/vnd.api+json', 'text/*', '*/*', 'text/html;charset=utf-8', 'text', '/html', 'text/html/x') },
  ),
  /** A TCP listen port: any port, the proxies' own (80, 443, 8404: refused), and a few popular ones (so two services meet on one). */
  srcPort: fc.oneof(fc.integer({ min: 1, max: 65535 }).map(String), fc.constantFrom('6379', '5432', '9200', '1883', '22', '80', '443', '8404', '1', '2', '3')),
  /** A TLS server name: exact, '*.' and a suffix, or a prefix and '*' (upper case too: names are matched case-insensitively). */
  serverName: fc.oneof(
    { weight: 6, arbitrary: fc.tuple(fc.constantFrom('', '*.'), fc.array(label, { minLength: 1, maxLength: 3 }), fc.constantFrom('', '.')).map(([w, ls, dot]) => `${w}${ls.join('.')}${dot}`) },
    { weight: 2, arbitrary: fc.tuple(label, fc.constantFrom('', '.', '-', '.x')).map(([l, tail]) => `${l}${tail}*`) },
    { weight: 1, arbitrary: fc.constantFrom('db.example.com', 'DB.Example.COM', '*.example.com', 'api.*', 'a', 'x-y.z') },
  ),
}

const list = (item: fc.Arbitrary<string>, max = 3): fc.Arbitrary<string> => fc.array(item, { minLength: 1, maxLength: max }).map((xs) => xs.join(','))

/** DFP's pathType for reqMode=sni and the server names (servicePath) of that form: each method with names in its own shape. */
const dfpSni: fc.Arbitrary<{ pathType: string | undefined; names: string }> = fc.oneof(
  fc.tuple(fc.constantFrom(undefined, 'req_ssl_sni', 'req_ssl_sni -i', 'req.ssl_sni -m str', 'req_ssl_sni -i -m str'), list(valid.serverName)).map(([pathType, names]) => ({ pathType, names })),
  fc.tuple(fc.constantFrom('req_ssl_sni -m beg', 'req_ssl_sni -i -m beg'), list(fc.tuple(label, fc.constantFrom('', '.', '-')).map(([l, t]) => `${l}${t}`))).map(([pathType, names]) => ({ pathType, names })),
  fc.tuple(fc.constantFrom('req_ssl_sni -m end', 'req.ssl_sni -i -m end'), list(fc.array(label, { minLength: 1, maxLength: 3 }).map((ls) => `.${ls.join('.')}`))).map(([pathType, names]) => ({ pathType, names })),
  fc
    .tuple(fc.constantFrom('req_ssl_sni -m reg', 'req_ssl_sni -i -m reg'), list(fc.tuple(fc.array(label, { minLength: 1, maxLength: 3 }), fc.constantFrom('plain', 'group', 'exact', 'other')).map(([ls, shape]) => {
      const literal = ls.join('\\.')
      return shape === 'plain' ? `^${literal}\\.` : shape === 'group' ? `^(${literal}\\.)` : shape === 'exact' ? `^${literal}$` : `(${literal})+$`
    })))
    .map(([pathType, names]) => ({ pathType, names })),
)

/** backendScheme: the four schemes (any case), and words that are not one or that smuggle HAProxy server options. */
const backendScheme = fc.oneof({ weight: 6, arbitrary: fc.constantFrom('http', 'https', 'h2c', 'h2', 'H2C') }, { weight: 1, arbitrary: fc.constantFrom('grpc', 'h2c verify none', 'h2 alpn h2', 'https\n') })

/** Tether's query form of an HTTP route: the parameters of PUT /v1/reconfigure (values unencoded; the caller encodes). */
const tetherHttpQuery: fc.Arbitrary<Record<string, string>> = fc.record(
  {
    serviceName: field(valid.serviceName),
    servicePath: field(list(valid.path)),
    port: field(valid.port),
    serviceDomain: field(list(valid.domain)),
    sticky: fc.constantFrom('true', 'false'),
    stickyCookie: field(valid.cookie),
    endpoints: field(list(valid.endpoint)),
    httpsOnly: field(fc.constantFrom('true', 'false')),
    httpsRedirectCode: field(valid.redirectCode),
    hstsMaxAge: field(valid.hsts),
    hstsIncludeSubDomains: field(valid.boolean),
    hstsPreload: field(valid.boolean),
    rateLimit: field(valid.rate),
    rateLimitBurst: field(valid.rate),
    rateLimitTotal: field(valid.rate),
    bodyLimit: field(valid.bytes),
    compressionAlgo: field(fc.array(valid.compressionAlgo, { minLength: 1, maxLength: 3 }).map((xs) => xs.join(' '))),
    compressionType: field(fc.array(valid.mimeType, { minLength: 1, maxLength: 3 }).map((xs) => xs.join(' '))),
    ipAllow: field(list(valid.cidr)),
    ipDeny: field(list(valid.cidr)),
    healthCheckPath: field(valid.healthPath),
    healthCheckInterval: field(valid.healthSeconds),
    healthCheckStatus: field(valid.healthStatus),
    healthCheckSlowStart: field(valid.healthSeconds),
    backendScheme: field(backendScheme),
    sslVerifyNone: field(valid.boolean),
  },
  { requiredKeys: ['serviceName', 'servicePath', 'port'] },
).map((q) => {
  // compressionType needs compressionAlgo: mostly given together.
  if (q.compressionAlgo === undefined && q.compressionType !== undefined && q.compressionType.length % 4 !== 0) delete q.compressionType
  return q
})

/** reqMode, mostly the one its fields are for (another mode, or none, now and then). */
const reqMode = (mode: 'tcp' | 'sni'): fc.Arbitrary<string> => fc.oneof({ weight: 12, arbitrary: fc.constant(mode) }, { weight: 1, arbitrary: fc.constantFrom('tcp', 'sni', 'http', 'TCP', '') })

/** Tether's query form of a TCP (srcPort → port) or SNI passthrough (serverName → port) route. */
const tetherStreamQuery: fc.Arbitrary<Record<string, string>> = fc
  .tuple(
    fc.constantFrom('tcp' as const, 'sni' as const),
    fc.record(
      {
        serviceName: field(valid.serviceName),
        port: field(valid.port),
        srcPort: field(valid.srcPort),
        serverName: field(list(valid.serverName)),
        sendProxyProtocol: field(fc.constantFrom('true', 'false')),
        sticky: fc.constantFrom('true', 'false'),
        endpoints: field(list(valid.endpoint)),
        // An HTTP route's field on a stream route: refused, never ignored.
        servicePath: field(list(valid.path)),
      },
      { requiredKeys: ['serviceName', 'port', 'srcPort', 'serverName'] },
    ),
    fc.nat(19),
  )
  .chain(([mode, q, dice]) =>
    reqMode(mode).map((m) => {
      const out: Record<string, string> = { ...q, reqMode: m }
      // Mostly only the fields of the mode (the other one's, or an HTTP field, now and then).
      if (mode === 'tcp' && dice > 0) delete out.serverName
      if (mode === 'sni' && dice > 0) delete out.srcPort
      if (dice > 1) delete out.servicePath
      return out
    }),
  )

/** Tether's query form (PUT /v1/reconfigure): HTTP routes, and TCP and SNI routes (reqMode). */
export const tetherQuery: fc.Arbitrary<Record<string, string>> = fc.oneof(tetherHttpQuery, tetherStreamQuery)

/** A JSON value that is not what the schema expects, or is. */
const jsonish = (v: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> =>
  fc.oneof({ weight: 18, arbitrary: v }, { weight: 1, arbitrary: fc.constantFrom(null, 0, -1, 1.5, 1e309, true, [], {}, '80', [null], { $ref: '#' }) }, { weight: 1, arbitrary: hostile })

/** A JSON port: mostly valid, sometimes out of range or not an integer. */
const jsonPort = fc.oneof({ weight: 12, arbitrary: fc.integer({ min: 1, max: 65535 }) }, { weight: 1, arbitrary: fc.constantFrom(0, 65536, 80.5, -80) })
const jsonSeconds = fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: 86400 }) }, { weight: 1, arbitrary: fc.constantFrom(0, 86401, 1.5) })

/** Tether's JSON form (POST /v1/reconfigure, PUT /v1/routes/{serviceName}): HTTP destinations, and tcp and sni ones. */
export const tetherBody: fc.Arbitrary<Record<string, unknown>> = fc
  .tuple(
    fc.record(
      {
        serviceName: jsonish(field(valid.serviceName)),
        servicePath: jsonish(fc.array(field(valid.path), { minLength: 1, maxLength: 3 })),
        port: jsonish(jsonPort),
        destinations: jsonish(fc.array(fc.record({ servicePath: fc.array(field(valid.path), { minLength: 1, maxLength: 2 }), port: fc.integer({ min: 1, max: 65535 }) }), { minLength: 1, maxLength: 3 })),
        tcp: jsonish(
          fc.array(
            fc.record(
              { srcPort: jsonish(valid.srcPort.map(Number)), port: jsonish(jsonPort), sendProxyProtocol: fc.boolean(), timeoutClient: jsonSeconds, timeoutServer: jsonSeconds },
              { requiredKeys: ['srcPort', 'port'] },
            ),
            { minLength: 1, maxLength: 2 },
          ),
        ),
        sni: jsonish(
          fc.array(fc.record({ serverName: jsonish(fc.array(field(valid.serverName), { minLength: 1, maxLength: 3 })), port: jsonish(jsonPort), sendProxyProtocol: fc.boolean() }, { requiredKeys: ['serverName', 'port'] }), {
            minLength: 1,
            maxLength: 2,
          }),
        ),
        serviceDomain: jsonish(fc.array(field(valid.domain), { maxLength: 3 })),
        sticky: jsonish(fc.boolean()),
        stickyCookie: jsonish(field(valid.cookie)),
        endpoints: jsonish(fc.array(field(valid.endpoint), { maxLength: 3 })),
        httpsOnly: jsonish(fc.boolean()),
        denyHttp: jsonish(fc.boolean()),
        hstsMaxAge: jsonish(fc.integer({ min: -1, max: 63_072_001 })),
        hstsIncludeSubDomains: jsonish(fc.boolean()),
        hstsPreload: jsonish(fc.boolean()),
        rateLimit: jsonish(fc.integer({ min: 0, max: 1_000_001 })),
        rateLimitBurst: jsonish(fc.integer({ min: 0, max: 10_000_001 })),
        rateLimitTotal: jsonish(fc.integer({ min: 0, max: 10_000_001 })),
        bodyLimit: jsonish(fc.integer({ min: 0, max: 1_099_511_627_777 })),
        compressionAlgo: jsonish(fc.array(field(valid.compressionAlgo), { minLength: 1, maxLength: 3 })),
        compressionType: jsonish(fc.array(field(valid.mimeType), { minLength: 1, maxLength: 3 })),
        ipAllow: jsonish(fc.array(field(valid.cidr), { minLength: 1, maxLength: 3 })),
        ipDeny: jsonish(fc.array(field(valid.cidr), { minLength: 1, maxLength: 3 })),
        healthCheckPath: jsonish(field(valid.healthPath)),
        healthCheckInterval: jsonish(fc.integer({ min: 0, max: 3601 })),
        healthCheckStatus: jsonish(fc.integer({ min: 99, max: 600 })),
        healthCheckSlowStart: jsonish(fc.integer({ min: 0, max: 3601 })),
      },
      { requiredKeys: ['serviceName'] },
    ),
    fc.nat(10),
  )
  .map(([record, shape]) => {
    const body: Record<string, unknown> = record
    // Mostly one shape of route: HTTP (short form or destinations), TCP/SNI only, or both kinds;
    // now and then the short form and destinations at once (refused).
    const drop = (...keys: string[]) => {
      for (const k of keys) delete body[k]
    }
    const http = ['serviceDomain', 'stickyCookie', 'httpsOnly', 'denyHttp', 'hstsMaxAge', 'hstsIncludeSubDomains', 'hstsPreload', 'rateLimit', 'rateLimitBurst', 'rateLimitTotal', 'bodyLimit', 'compressionAlgo', 'compressionType', 'ipAllow', 'ipDeny', 'healthCheckPath', 'healthCheckStatus']
    if (shape < 3) drop('destinations', 'tcp', 'sni')
    else if (shape < 5) drop('servicePath', 'port', 'tcp', 'sni')
    else if (shape < 7) drop('servicePath', 'port', 'destinations', ...http)
    else if (shape === 7) drop('servicePath', 'port', 'destinations')
    else if (shape === 8) drop('servicePath', 'port', ...http)
    else if (shape === 9) drop('destinations', ...http)
    // compressionType needs compressionAlgo: alone only now and then (refused), so most routes with it can be accepted.
    if (body.compressionAlgo === undefined && shape !== 10) drop('compressionType')
    return body
  })

/** Docker Flow Proxy's parameters, each with a value of its kind (the same parameters feed com.df.* labels). */
const dfpValues: Record<string, fc.Arbitrary<string>> = {
  servicePath: list(valid.path),
  port: valid.port,
  serviceDomain: list(valid.domain),
  sticky: valid.boolean,
  sessionType: fc.constantFrom('sticky-server', 'cookie', ''),
  stickyCookie: valid.cookie,
  endpoints: list(valid.endpoint),
  aclName: valid.serviceName,
  addReqHeader: list(fc.tuple(valid.headerName, valid.headerValue).map(([n, v]) => `${n} ${v.replace(/,/g, ';')}`)),
  addHeader: list(fc.tuple(valid.headerName, valid.headerValue).map(([n, v]) => `${n} ${v.replace(/,/g, ';')}`)),
  setReqHeader: list(fc.tuple(valid.headerName, valid.headerValue).map(([n, v]) => `${n} ${v.replace(/,/g, ';')}`)),
  addResHeader: list(fc.tuple(valid.headerName, valid.headerValue).map(([n, v]) => `${n} ${v.replace(/,/g, ';')}`)),
  setResHeader: list(fc.tuple(valid.headerName, valid.headerValue).map(([n, v]) => `${n} ${v.replace(/,/g, ';')}`)),
  delReqHeader: list(valid.headerName),
  delResHeader: list(valid.headerName),
  users: list(fc.tuple(valid.userName, valid.password).map(([u, p]) => `${u}:${p.replace(/,/g, '')}`)),
  usersPassEncrypted: valid.boolean,
  realm: valid.realm,
  isDefaultBackend: valid.boolean,
  reqPathSearch: valid.regex,
  reqPathReplace: valid.regex,
  reqPathSearchReplace: fc.array(fc.tuple(valid.regex, valid.regex).map(([s, r]) => `${s.replace(/[,:]/g, '')},${r.replace(/[,:]/g, '')}`), { minLength: 1, maxLength: 2 }).map((xs) => xs.join(':')),
  userAgent: list(valid.userAgent.map((s) => s.replace(/,/g, ''))),
  serviceHeader: list(fc.tuple(valid.headerName, printable).map(([n, v]) => `${n}:${v.replace(/[,:]/g, '') || 'v'}`)),
  servicePathExclude: list(valid.path),
  stripPrefix: valid.boolean,
  allowedMethods: list(valid.method),
  deniedMethods: list(valid.method),
  ignoreAuthorization: valid.boolean,
  timeoutServer: valid.seconds,
  timeoutTunnel: valid.seconds,
  redirectFromDomain: list(valid.domain),
  httpsOnly: valid.boolean,
  redirectWhenHttpProto: valid.boolean,
  httpsRedirectCode: valid.redirectCode,
  denyHttp: valid.boolean,
  hstsMaxAge: valid.hsts,
  hstsIncludeSubDomains: valid.boolean,
  hstsPreload: valid.boolean,
  rateLimit: valid.rate,
  rateLimitBurst: valid.rate,
  rateLimitTotal: valid.rate,
  bodyLimit: valid.bytes,
  compressionAlgo: fc.array(valid.compressionAlgo, { minLength: 1, maxLength: 3 }).map((xs) => xs.join(' ')),
  compressionType: fc.array(valid.mimeType, { minLength: 1, maxLength: 3 }).map((xs) => xs.join(' ')),
  ipAllow: list(valid.cidr),
  ipDeny: fc.array(valid.cidr, { minLength: 1, maxLength: 3 }).map((xs) => xs.join(' ')),
  healthCheckPath: valid.healthPath,
  healthCheckInterval: valid.healthSeconds,
  healthCheckStatus: valid.healthStatus,
  healthCheckSlowStart: valid.healthSeconds,
  // TCP and SNI destinations' parameters, also thrown at HTTP routes (where they are refused or mean a listener).
  reqMode: fc.constantFrom('http', 'tcp', 'sni'),
  srcPort: valid.srcPort,
  pathType: fc.constantFrom('path_beg', 'req_ssl_sni', 'req_ssl_sni -m beg', 'req.ssl_sni -i -m end', 'req_ssl_sni -m reg'),
  timeoutClient: valid.seconds,
  sendProxyProtocol: valid.boolean,
  backendScheme,
  sslVerifyNone: valid.boolean,
  backendCaSecret: valid.serviceName,
}
/** Refused (or warned about) DFP parameters: they must never slip through as something else. */
const dfpRefusedValues: Record<string, fc.Arbitrary<string>> = {
  backendExtra: fc.constantFrom('http-request deny', ''),
  templateFePath: fc.constantFrom('/tmp/x.tmpl'),
  pathType: fc.constantFrom('path_reg', 'path_str', 'hdr_beg(host)'),
  verifyClientSsl: valid.boolean,
  usersSecret: valid.serviceName,
  balanceGroup: fc.constantFrom('x'),
  notify: valid.boolean,
  distribute: valid.boolean,
}
const dfpNames = Object.keys(dfpValues)
const dfpRefusedNames = Object.keys(dfpRefusedValues)
const perDestination = ['servicePath', 'port', 'serviceDomain', 'userAgent', 'serviceHeader', 'servicePathExclude', 'reqPathSearchReplace', 'stripPrefix', 'allowedMethods', 'deniedMethods', 'timeoutServer', 'redirectFromDomain', 'reqMode', 'srcPort', 'pathType', 'timeoutClient', 'sendProxyProtocol']

/** The DFP form's parameters of an HTTP route (without serviceName), indexed forms (`servicePath.1`) and unknown names included. */
const dfpHttpParams: fc.Arbitrary<Record<string, string>> = fc
  .tuple(
    field(list(valid.path)),
    field(valid.port),
    fc.array(
      fc.oneof(
        { weight: 12, arbitrary: fc.constantFrom(...dfpNames).chain((name) => field(dfpValues[name]!).map((v) => [name, v] as const)) },
        { weight: 1, arbitrary: fc.constantFrom(...dfpRefusedNames).chain((name) => field(dfpRefusedValues[name]!).map((v) => [name, v] as const)) },
        { weight: 3, arbitrary: fc.tuple(fc.constantFrom(...perDestination), fc.integer({ min: 1, max: 3 })).chain(([name, i]) => field(dfpValues[name]!).map((v) => [`${name}.${i}`, v] as const)) },
        { weight: 1, arbitrary: fc.tuple(field(fc.constantFrom('unknownParam', '__proto__', 'constructor', 'toString', 'servicePath.x', 'port.9999')), hostile) },
      ),
      { maxLength: 8 },
    ),
  )
  .map(([servicePath, port, rest]) => {
    const out: Record<string, string> = Object.create(null) as Record<string, string>
    out.servicePath = servicePath
    out.port = port
    for (const [k, v] of rest) out[k] = v
    return out
  })

/** A boolean of DFP's form, mostly one Go's ParseBool takes. */
const streamBoolean = fc.oneof({ weight: 8, arbitrary: fc.constantFrom('true', 'false', '1', '0') }, { weight: 1, arbitrary: valid.boolean })

/** One destination of a DFP route that mixes kinds: its parameters, without the `.N` suffix. */
const dfpDestination: fc.Arbitrary<Array<readonly [string, string]>> = fc.oneof(
  { weight: 1, arbitrary: fc.tuple(field(list(valid.path)), field(valid.port)).map(([path, port]) => [['servicePath', path] as const, ['port', port] as const]) },
  {
    weight: 2,
    arbitrary: fc
      .record(
        { reqMode: field(reqMode('tcp')), srcPort: field(valid.srcPort), port: field(valid.port), timeoutClient: field(valid.seconds), timeoutServer: field(valid.seconds), sendProxyProtocol: field(streamBoolean) },
        { requiredKeys: ['reqMode', 'srcPort', 'port'] },
      )
      .chain((r) => {
        // At most one of the optional parameters: each is one more field that may be hostile.
        const required = new Set(['reqMode', 'srcPort', 'port'])
        const optional = Object.entries(r).filter(([k]) => !required.has(k))
        return fc.subarray(optional, { maxLength: Math.min(1, optional.length) }).map((some) => [...Object.entries(r).filter(([k]) => required.has(k)), ...some])
      }),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        dfpSni,
        fc.record({ reqMode: field(reqMode('sni')), port: field(valid.port), srcPort: field(fc.constantFrom('443', '443', '443', '8443')), sendProxyProtocol: field(streamBoolean) }, { requiredKeys: ['reqMode', 'port'] }),
      )
      .chain(([{ pathType, names }, rest]) =>
        fc.tuple(field(fc.constant(names)), pathType === undefined ? fc.constant(undefined) : field(fc.constant(pathType))).map(([n, pt]) => [['servicePath', n] as const, ...(pt === undefined ? [] : [['pathType', pt] as const]), ...Object.entries(rest)]),
      ),
  },
)

/** A DFP route of one to three destinations, TCP and SNI ones among them (indexed as DFP does: the unindexed one first, then .1, .2), and a few other parameters. */
const dfpStreamParams: fc.Arbitrary<Record<string, string>> = fc
  .tuple(fc.array(dfpDestination, { minLength: 1, maxLength: 3 }), fc.boolean(), fc.record({ sticky: field(streamBoolean), endpoints: field(list(valid.endpoint)) }, { requiredKeys: [] }), fc.array(fc.constantFrom(...dfpNames).chain((name) => field(dfpValues[name]!).map((v) => [name, v] as const)), { maxLength: 1 }))
  .map(([destinations, unindexedFirst, common, rest]) => {
    const out: Record<string, string> = Object.create(null) as Record<string, string>
    for (const [k, v] of rest) out[k] = v
    Object.assign(out, common)
    destinations.forEach((d, i) => {
      const suffix = unindexedFirst ? (i === 0 ? '' : `.${i}`) : `.${i + 1}`
      for (const [k, v] of d) out[`${k}${suffix}`] = v
    })
    return out
  })

/** The DFP form's parameters (without serviceName): HTTP routes, and routes with TCP and SNI destinations. */
export const dfpParams: fc.Arbitrary<Record<string, string>> = fc.oneof(dfpHttpParams, dfpStreamParams)

/** One hostile request, in one of the forms. */
export type FuzzInput =
  | { form: 'query'; params: Record<string, string> }
  | { form: 'json-post'; body: unknown }
  | { form: 'json-put'; serviceName: string; body: unknown }
  | { form: 'dfp'; params: Record<string, string> }
  | { form: 'labels'; serviceName: string; labels: Record<string, string> }

export const fuzzInput: fc.Arbitrary<FuzzInput> = fc.oneof(
  tetherQuery.map((params) => ({ form: 'query' as const, params })),
  tetherBody.map((body) => ({ form: 'json-post' as const, body })),
  fc.tuple(field(valid.serviceName), tetherBody).map(([serviceName, body]) => {
    const { serviceName: _, ...rest } = body
    return { form: 'json-put' as const, serviceName, body: rest }
  }),
  fc.tuple(field(valid.serviceName), dfpParams).map(([serviceName, params]) => ({ form: 'dfp' as const, params: Object.assign(params, { serviceName }) })),
  fc.tuple(valid.serviceName, dfpParams).map(([serviceName, params]) => ({
    form: 'labels' as const,
    serviceName,
    labels: Object.fromEntries([['com.df.notify', 'true'], ...Object.entries(params).map(([k, v]) => [`com.df.${k}`, v])]),
  })),
)
