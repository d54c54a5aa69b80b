/**
 * Hostile input with HAProxy as the oracle (fast-check): inputs in every form a route arrives in
 * (Tether's query and JSON forms, Docker Flow Proxy's form, com.df.* labels) go through the real
 * control plane; whatever is accepted renders a configuration with no line outside Tether's
 * template that `haproxy -c` accepts, and at the end a real HAProxy serving the whole table the
 * run stored still routes a known good route. Bounded: FUZZ_RUNS cases (default 300) from a
 * seed printed at the start (FUZZ_SEED=<n> replays a run); 10^4 cases run as a benchmark
 * (bench/fuzz.ts).
 *
 * The oracle is tested first: it passes a rich table of every feature (TCP and SNI passthrough
 * routes included), and it catches directives smuggled in by routes built without validation.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { normalizeRoute, type RouteInput } from '../../../src/contracts/route.ts'
import { createApiFuzz, KNOWN_GOOD, unresolvableOnly } from '../../helpers/api-fuzz.ts'
import { closeBackends, startBackends, type BackendReply } from '../../helpers/backends.ts'
import { createTestProxy, createClient } from '../../helpers/haproxy.ts'
import { createOracle } from '../../helpers/haproxy-oracle.ts'
import { freePort } from '../../helpers/redis-server.ts'

const HASH = '$6$tethersalt$igDKEU2kQB0/sdrV3JlyBanTfVltpwmxDdT780GrialRN11kHhMXKN0Sp1sPnRq95/CzpK0fl8.FOSqDXQgNN.'

/** Every rendering feature, with the awkward characters each field allows. */
const rich: RouteInput[] = [
  { serviceName: 'plain', destinations: [{ servicePath: ['/', '/a(b)*c+;d=e:f@g!h&i~j', '/%41%2f'], port: 80 }], sticky: true, stickyCookie: "a!&*+-.^_`|~z", endpoints: ['127.0.0.1:81', '[::1]:82', 'localhost:83'] },
  {
    serviceName: 'features',
    destinations: [
      { servicePath: ['/f'], port: 80, stripPrefix: true, allowedMethods: ['GET', 'HEAD'], timeoutServer: 5, pathRewrite: [{ search: '^/f/v1/([^/]+)$', replace: '/api/\\1' }] },
      { servicePath: ['/f/admin'], port: 81, deniedMethods: ['DELETE'], ignoreAuthorization: true, timeoutTunnel: 60, servicePathExclude: ['/f/admin/metrics'] },
      { servicePath: ['/'], port: 82, serviceDomain: ['a.example.com', '*.wild.example'], redirectFromDomain: ['old.example.com'], userAgent: ['iPhone "x" #y $z \\w'], serviceHeader: [{ name: 'X-V', value: 'a "b" #c $d' }] },
    ],
    addReqHeader: [{ name: 'X-Added', value: 'from %[src] at 100% "quoted" $HOME # not a comment {brace} if x' }],
    setReqHeader: [{ name: 'X-Set', value: "it's \\ back" }],
    delReqHeader: ['X-Secret'],
    addResHeader: [{ name: 'X-Res', value: '%[env(HOSTNAME)]%%' }],
    setResHeader: [{ name: 'X-Set-Res', value: 'v' }],
    delResHeader: ['Server'],
    auth: { users: [{ name: 'admin@x.y', passwordHash: HASH }], realm: 'Private area (x/y): a,b;c' },
    httpsOnly: true,
    httpsRedirectCode: 308,
    hstsMaxAge: 31536000,
    compressionAlgo: ['gzip', 'deflate', 'raw-deflate', 'identity'],
    compressionType: ['text/html', 'application/vnd.api+json', 'image/svg+xml', 'text/x-a!b&c^d_e.f-g'],
    ipAllow: ['10.0.0.0/8', '192.168.1.7', '2001:db8::/32', '::1', '::ffff:10.0.0.1', '0.0.0.0/0'],
    ipDeny: ['10.1.2.3', 'fe80::/10'],
  },
  { serviceName: 'proto', destinations: [{ servicePath: ['/p'], port: 80 }], redirectWhenHttpProto: true, denyHttp: false, isDefaultBackend: true },
  // Towards backends: HTTP/2 in clear text (gRPC), HTTP/2 over TLS verified with the system CAs, TLS unverified.
  { serviceName: 'grpc.svc', destinations: [{ servicePath: ['/pkg.Service'], port: 50051 }], backendScheme: 'h2c' },
  { serviceName: 'tls_h2', destinations: [{ servicePath: ['/tls-h2'], port: 8443 }], endpoints: ['127.0.0.1:8443'], backendScheme: 'h2' },
  { serviceName: 'tls-none', destinations: [{ servicePath: ['/tls-none'], port: 8443 }], sslVerifyNone: true },
  { serviceName: 'deny', destinations: [{ servicePath: ['/d'], port: 80, serviceDomain: ['*dfp.example'] }], denyHttp: true },
  // TCP and SNI passthrough: every stream feature, and a service mixing HTTP, TCP and SNI destinations.
  { serviceName: 'redis', destinations: [], tcp: [{ srcPort: 6379, port: 6379, timeoutClient: 30, timeoutServer: 40 }, { srcPort: 16379, port: 6380, sendProxyProtocol: true }], sticky: true, endpoints: ['127.0.0.1:6379', '[::1]:6380', 'localhost:6381'] },
  {
    serviceName: 'mixed.svc',
    destinations: [{ servicePath: ['/m'], port: 8080 }],
    tcp: [{ srcPort: 2222, port: 22 }],
    sni: [
      { serverName: ['db.example.com', '*.wild.example', 'api-v2.*'], port: 8443 },
      { serverName: ['other.example'], port: 8443, sendProxyProtocol: true },
    ],
  },
]

/**
 * Routes that bypass validation (normalizeRoute only), each smuggling something into the
 * configuration where the renderer writes the value unquoted, or breaking a quoted value whose
 * escaping the renderer does not do (quoted header values, user agents and realms are escaped
 * by the renderer itself, so the same text is harmless there: the rich table holds it).
 */
const smuggled: Array<[string, RouteInput]> = [
  ['a newline and a directive in a header value', { serviceName: 'h', destinations: [{ servicePath: ['/h'], port: 80 }], addReqHeader: [{ name: 'X-A', value: 'v"\n    http-request deny\n    #"' }] }],
  ['a condition after a method name', { serviceName: 'm', destinations: [{ servicePath: ['/m'], port: 80, allowedMethods: ['GET } || { always_true'] }] }],
  ['a condition after a header name to delete', { serviceName: 'h', destinations: [{ servicePath: ['/h'], port: 80 }], delReqHeader: ['X-A if { always_true }'] }],
  ['a space in a service name (a backend of two words)', { serviceName: 'svc x', destinations: [{ servicePath: ['/s'], port: 80 }] }],
  ['a comment in a path', { serviceName: 'p', destinations: [{ servicePath: ['/p #rest'], port: 80, servicePathExclude: ['/p/x #y'] }] }],
  ['a closing brace in a domain', { serviceName: 'd', destinations: [{ servicePath: ['/'], port: 80 }], serviceDomain: ['a.example } || { always_true'] }],
  ['a quote in a password hash', { serviceName: 'a', destinations: [{ servicePath: ['/a'], port: 80 }], auth: { users: [{ name: 'u', passwordHash: "$6$x' insecure-password y '" }] } }],
  ['a new section in a server address', { serviceName: 'e', destinations: [{ servicePath: ['/e'], port: 80 }], endpoints: ['127.0.0.1:80\nbackend x'] }],
  ['a word break in a cookie name', { serviceName: 'c', destinations: [{ servicePath: ['/c'], port: 80 }], sticky: true, stickyCookie: 'c preserve' }],
  ['a host name HAProxy would read as a flag', { serviceName: 'd', destinations: [{ servicePath: ['/'], port: 80 }], serviceDomain: ['-f', 'a.example'] }],
  ['a closing brace in a TLS server name', { serviceName: 's', destinations: [], sni: [{ serverName: ['a.example } || { always_true'], port: 443 }] }],
  ['a TLS server name HAProxy would read as a flag', { serviceName: 's', destinations: [], sni: [{ serverName: ['-f', 'a.example'], port: 443 }] }],
  ['a new section in a TLS server name', { serviceName: 's', destinations: [], sni: [{ serverName: ['a.example\nbackend x'], port: 443 }] }],
  ['a directive after a compression type', { serviceName: 'z', destinations: [{ servicePath: ['/z'], port: 80 }], compressionAlgo: ['gzip'], compressionType: ['text/html\n    http-request deny'] }],
  ['a comment in a compression type', { serviceName: 'z', destinations: [{ servicePath: ['/z'], port: 80 }], compressionAlgo: ['gzip'], compressionType: ['text/html #x'] }],
  ['a closing brace in an allowed address', { serviceName: 'i', destinations: [{ servicePath: ['/i'], port: 80 }], ipAllow: ['10.0.0.1 } || { always_true'] }],
  ['an address HAProxy would read as a flag', { serviceName: 'i', destinations: [{ servicePath: ['/i'], port: 80 }], ipDeny: ['-f', '10.0.0.1'] }],
  ['an algorithm HAProxy does not have', { serviceName: 'z', destinations: [{ servicePath: ['/z'], port: 80 }], compressionAlgo: ['gzip if TRUE' as 'gzip'] }],
  ['a new section in a TCP route\'s server address', { serviceName: 't', destinations: [], tcp: [{ srcPort: 7000, port: 7000 }], endpoints: ['127.0.0.1:80\nlisten x'] }],
]

describe('the HAProxy oracle', () => {
  it('passes a table of every rendering feature, awkward characters included, and haproxy -c accepts it', async (t) => {
    const oracle = await createOracle()
    t.after(() => oracle.close())
    const { findings, check, rendered } = await oracle.judge({ version: 7, routes: rich.map((r) => normalizeRoute(r)) })
    assert.deepEqual(findings, [])
    assert.equal(check.ok, true, check.output)
    // The TCP and SNI sections were judged, not left out (the oracle's settings have an HTTPS listener).
    for (const section of ['frontend tcp_6379', 'frontend tcp_16379', 'frontend tcp_2222', 'frontend tls_passthrough', 'backend tcp_redis_16379', 'backend sni_mixed.svc_8443', 'backend sni_mixed.svc_8443-d1', 'backend tether.tls-terminate']) {
      assert.ok(rendered.config.includes(`\n${section}\n`), section)
    }
    assert.match(rendered.config, /\n    stick on src\n/)
    assert.match(rendered.config, / send-proxy-v2\n/)
    assert.deepEqual(rendered.problems, [])
  })

  for (const [what, input] of smuggled) {
    it(`finds ${what}`, async (t) => {
      const oracle = await createOracle()
      t.after(() => oracle.close())
      const { findings } = await oracle.judge({ version: 1, routes: [normalizeRoute(input)] })
      assert.ok(findings.length > 0, 'the oracle saw nothing')
      assert.ok(findings.every((f) => f.line > 0 && f.why.length > 0))
    })
  }
})

describe('hostile input through every API form, HAProxy as the oracle', () => {
  it('accepts only what renders inside the template and passes haproxy -c; a known good route still serves', async (t) => {
    const runs = Number(process.env.FUZZ_RUNS ?? 300)
    // In CI (CI=true, set by .ci/run) a fixed seed: the gate must not turn red on a case it has
    // never seen; new ground is covered by local runs (a random seed) and bench/fuzz.ts.
    const seed = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : process.env.CI === 'true' ? 1367485925 : Math.floor(Math.random() * 2 ** 31)
    process.stdout.write(`# fuzz: ${runs} cases, seed ${seed} (replay with FUZZ_SEED=${seed})\n`)
    const backends = await startBackends(1, { prefix: 'good' })
    t.after(() => closeBackends(backends))
    const fuzz = await createApiFuzz(backends[0]!.address)
    t.after(() => fuzz.close())

    await fuzz.run(runs, seed)
    const { stats } = fuzz
    const accepted = Object.values(stats.accepted).reduce((a, b) => a + b, 0)
    process.stdout.write(`# fuzz: ${JSON.stringify(stats)}\n`)
    assert.equal(stats.cases, runs)
    // A run that accepts nothing, or refuses nothing, tests one side only.
    assert.ok(accepted > runs / 20, `only ${accepted} of ${runs} inputs were accepted`)
    assert.ok(stats.cases - accepted > runs / 4, 'hostile inputs were refused')
    for (const form of ['query', 'json-post', 'json-put', 'dfp', 'labels'] as const) assert.ok(stats.accepted[form] + stats.refused[form] > 0, `no ${form} input was tried`)
    // TCP and SNI passthrough routes are accepted too, not only refused.
    const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0)
    assert.ok(sum(stats.acceptedTcp) > 0 && sum(stats.acceptedSni) > 0, `accepted TCP routes ${sum(stats.acceptedTcp)}, SNI routes ${sum(stats.acceptedSni)}`)

    // The whole table the run stored, served by a real HAProxy: nothing refused, the known good route routes.
    const snapshot = await fuzz.store.snapshot()
    // With an HTTPS listener, so the SNI passthrough routes are served too.
    const proxy = await createTestProxy(t, { tlsListen: `127.0.0.1:${await freePort()}` })
    const result = await proxy.engine.apply(snapshot)
    const byName = new Map(snapshot.routes.map((r) => [r.serviceName, r]))
    assert.deepEqual(result.refused.filter((r) => !unresolvableOnly(byName.get(r.serviceName)!, [r.error])), [], 'HAProxy refused stored routes (for another reason than an endpoint name that does not resolve here)')
    const client = createClient({ reuse: false })
    t.after(() => client.close())
    const reply = await client.get(`${proxy.url}/${KNOWN_GOOD}/x`, { cookies: false })
    assert.equal(reply.status, 200, `the known good route among ${snapshot.routes.length} stored routes: ${JSON.stringify(reply.body)}`)
    assert.equal((reply.body as BackendReply).instance, 'good1')
  })
})
