/**
 * Every HTTP feature Docker Flow Proxy users rely on, through each of Tether's forms: the query
 * string (GET|PUT /v1/reconfigure, DFP's parameter names), the JSON body (POST /v1/reconfigure
 * and PUT /v1/routes/{name}, typed fields), the DFP form and com.df.* labels. The same request in each form
 * stores the same route (what the proxies render: test/proxy/haproxy/dfp-features.test.ts);
 * bad values are refused with 400 naming the field, and nothing is stored.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { InjectOptions } from 'fastify'
import { verify } from 'unixcrypt'
import { routeFromLabels } from '../../src/control/discovery/swarm-labels.ts'
import { api, sharedControl } from './harness.ts'

interface Case {
  name: string
  /** The query string after serviceName=s&servicePath=/s&port=80 (DFP's names: Tether's query form and DFP's take the same). */
  query: string
  /** The JSON body's extra fields (with serviceName, servicePath ['/s'], port 80). */
  body: Record<string, unknown>
}

const cases: Case[] = [
  { name: 'stripPrefix', query: 'stripPrefix=true', body: { stripPrefix: true } },
  { name: 'backendScheme h2c (gRPC tasks)', query: 'backendScheme=h2c', body: { backendScheme: 'h2c' } },
  { name: 'TLS to the tasks verified with a CA bundle, HTTP/2', query: 'backendScheme=H2&backendCaSecret=internal_ca', body: { backendScheme: 'h2', backendCaSecret: 'internal_ca' } },
  { name: 'sslVerifyNone', query: 'sslVerifyNone=true', body: { sslVerifyNone: true, backendScheme: 'https' } },
  { name: 'reqPathSearchReplace', query: `reqPathSearchReplace=${encodeURIComponent('^/s/v1/(.*),/api/\\1:^/s/old,/new')}`, body: { pathRewrite: [{ search: '^/s/v1/(.*)', replace: '/api/\\1' }, { search: '^/s/old', replace: '/new' }] } },
  { name: 'reqPathSearch + reqPathReplace', query: `reqPathSearch=${encodeURIComponent('^/s/(.*)')}&reqPathReplace=${encodeURIComponent('/\\1')}`, body: { pathRewrite: [{ search: '^/s/(.*)', replace: '/\\1' }] } },
  {
    name: 'request and response headers',
    query: `addReqHeader=${encodeURIComponent('X-Port %[dst_port],X-Env prod')}&setReqHeader=${encodeURIComponent('X-Set fixed')}&delReqHeader=X-Secret&addResHeader=${encodeURIComponent('X-Via tether')}&setResHeader=${encodeURIComponent('Cache-Control no-store')}&delResHeader=Server,X-Powered-By`,
    body: {
      addReqHeader: [
        { name: 'X-Port', value: '%[dst_port]' },
        { name: 'X-Env', value: 'prod' },
      ],
      setReqHeader: [{ name: 'X-Set', value: 'fixed' }],
      delReqHeader: ['X-Secret'],
      addResHeader: [{ name: 'X-Via', value: 'tether' }],
      setResHeader: [{ name: 'Cache-Control', value: 'no-store' }],
      delResHeader: ['Server', 'X-Powered-By'],
    },
  },
  { name: 'methods', query: 'allowedMethods=get,HEAD&deniedMethods=DELETE', body: { allowedMethods: ['GET', 'HEAD'], deniedMethods: ['DELETE'] } },
  { name: 'servicePathExclude', query: 'servicePathExclude=/s/metrics,/s/admin/', body: { servicePathExclude: ['/s/metrics', '/s/admin'] } },
  { name: 'redirectFromDomain', query: 'serviceDomain=new.example&redirectFromDomain=old.example,OLD2.example', body: { serviceDomain: ['new.example'], redirectFromDomain: ['old.example', 'old2.example'] } },
  { name: 'listener', query: 'listener=https', body: { listener: 'https' } },
  { name: 'isDefaultBackend', query: 'isDefaultBackend=true', body: { isDefaultBackend: true } },
  { name: 'compression (gzip)', query: 'compressionAlgo=gzip', body: { compressionAlgo: ['gzip'] } },
  {
    // DFP's examples separate with spaces; commas too. Types are stored lower case, sorted.
    name: 'compression (algorithms and types)',
    query: `compressionAlgo=${encodeURIComponent('gzip deflate')}&compressionType=${encodeURIComponent('text/html Application/JSON,text/css')}`,
    body: { compressionAlgo: ['gzip', 'deflate'], compressionType: ['application/json', 'text/css', 'text/html'] },
  },
  {
    name: 'ipAllow and ipDeny (IPv4, IPv6, CIDR blocks)',
    query: `ipAllow=${encodeURIComponent('10.0.0.0/8 2001:DB8::/32,127.0.0.1')}&ipDeny=10.1.2.3`,
    body: { ipAllow: ['10.0.0.0/8', '2001:db8::/32', '127.0.0.1'], ipDeny: ['10.1.2.3'] },
  },
  {
    name: 'HTTP health check (path with a query, interval, status, slow start)',
    query: `healthCheckPath=${encodeURIComponent('/healthz?deep=1')}&healthCheckInterval=5&healthCheckStatus=204&healthCheckSlowStart=30`,
    body: { healthCheckPath: '/healthz?deep=1', healthCheckInterval: 5, healthCheckStatus: 204, healthCheckSlowStart: 30 },
  },
  { name: 'rate limits (per client with a burst, and in total)', query: 'rateLimit=10&rateLimitBurst=50&rateLimitTotal=1000', body: { rateLimit: 10, rateLimitBurst: 50, rateLimitTotal: 1000 } },
  { name: 'bodyLimit', query: 'bodyLimit=1048576', body: { bodyLimit: 1048576 } },
  { name: 'timeouts', query: 'timeoutServer=120&timeoutTunnel=3600', body: { timeoutServer: 120, timeoutTunnel: 3600 } },
  { name: 'userAgent', query: 'userAgent=iPhone,Android', body: { userAgent: ['Android', 'iPhone'] } },
  { name: 'serviceHeader', query: `serviceHeader=${encodeURIComponent('X-Version:3,X-Beta:yes')}`, body: { serviceHeader: [{ name: 'X-Beta', value: 'yes' }, { name: 'X-Version', value: '3' }] } },
  {
    name: 'basic auth (plain password, hashed before it is stored)',
    query: 'users=admin:s3cret&realm=Private',
    body: { auth: { users: [{ name: 'admin', password: 's3cret' }], realm: 'Private' } },
  },
  {
    name: 'basic auth (crypt(3) hash)',
    query: `users=${encodeURIComponent('admin:$6$salt1234$abcdefghijklmnop')}&usersPassEncrypted=true`,
    body: { auth: { users: [{ name: 'admin', passwordHash: '$6$salt1234$abcdefghijklmnop' }] } },
  },
  { name: 'usersSecret (every user of the secret)', query: 'usersSecret=admins', body: { auth: { usersSecret: 'admins' } } },
  {
    name: 'usersSecret (the users listed without a password, hashed secret)',
    query: 'usersSecret=admins&users=alice,bob:pw&usersPassEncrypted=false',
    body: { auth: { users: [{ name: 'bob', password: 'pw' }], usersSecret: 'admins', usersFromSecret: ['alice'] } },
  },
  {
    name: 'ignoreAuthorization',
    query: 'users=admin:s3cret&ignoreAuthorization=true',
    body: { auth: { users: [{ name: 'admin', password: 's3cret' }] }, ignoreAuthorization: true },
  },
]

describe('the HTTP features through every form store the same route', () => {
  const control = sharedControl()
  const base = 'servicePath=/s&port=80'

  for (const c of cases) {
    it(c.name, async () => {
      const { app } = control()
      // biome-ignore lint/suspicious/noExplicitAny: routes as answered in JSON, compared across forms
      const stored: any[] = []
      // One at a time (the same path for another service would be a conflict): each is removed after.
      const write = async (serviceName: string, request: InjectOptions) => {
        const res = await app.inject(request)
        assert.equal(res.statusCode, 200, `${serviceName}: ${res.body}`)
        stored.push(res.json().route)
        const removed = await app.inject({ method: 'DELETE', url: `/v1/remove?serviceName=${serviceName}`, headers: api })
        assert.equal(removed.statusCode, 200, removed.body)
      }
      await write('dfp', { method: 'GET', url: `/v1/docker-flow-proxy/reconfigure?serviceName=dfp&${base}&${c.query}`, headers: api })
      await write('q', { method: 'PUT', url: `/v1/reconfigure?serviceName=q&${base}&${c.query}`, headers: api })
      await write('j', { method: 'POST', url: '/v1/reconfigure', headers: api, payload: { serviceName: 'j', servicePath: ['/s'], port: 80, ...c.body } })
      await write('r', { method: 'PUT', url: '/v1/routes/r', headers: api, payload: { servicePath: ['/s'], port: 80, ...c.body } })
      // com.df.* labels (Docker Flow Swarm Listener's): the same parameters as labels of service 'l'.
      const labels = Object.fromEntries([...new URLSearchParams(`${base}&${c.query}`)].map(([k, v]) => [`com.df.${k}`, v]))
      const fromLabels = routeFromLabels('l', { 'com.df.notify': 'true', ...labels })
      assert.ok('route' in fromLabels, `labels: ${JSON.stringify(fromLabels)}`)
      stored.push(JSON.parse(JSON.stringify(fromLabels.route)))
      // Plain passwords are hashed with a salt of their own service: each hash must verify the
      // password given, then they compare equal.
      const plain = new Map([...JSON.stringify(c.body).matchAll(/"name":"([^"]+)","password":"([^"]+)"/g)].map((m) => [m[1], m[2]]))
      for (const route of stored) {
        for (const user of route.auth?.users ?? []) {
          const password = plain.get(user.name)
          if (password === undefined) continue
          assert.ok(verify(password, user.passwordHash), `${route.serviceName}: the hash of ${user.name} does not verify its password`)
          user.passwordHash = '(verified)'
        }
      }
      // The same route but for its name (and DFP's shared claim, which stores nothing more).
      const [first, ...rest] = stored.map(({ serviceName: _n, ...route }) => route)
      for (const route of rest) assert.deepEqual(route, first)
      // And the feature is there: something beyond path and port was stored.
      const { destinations, serviceDomain: _d, sticky: _s, endpoints: _e, ...routeLevel } = first
      const destination = destinations[0]
      assert.ok(Object.keys(routeLevel).length > 0 || Object.keys(destination).length > 2, `${c.name}: nothing stored beyond the path and port: ${JSON.stringify(first)}`)
      // Plain passwords never stored: a crypt(3) hash instead.
      if (plain.size > 0) assert.doesNotMatch(JSON.stringify(stored), /s3cret|"pw"/)
    })
  }
})

describe('the query and JSON forms refuse bad feature values with 400 naming the field, and store nothing', () => {
  const control = sharedControl()

  const bad: Array<[string, string | Record<string, unknown>, RegExp]> = [
    ['addReqHeader', 'addReqHeader=X-A%20%25[req.hdr(cookie)]', /^addReqHeader: .*sample expression other than/],
    ['setReqHeader condition', 'setReqHeader=X-Ssl%20on%20if%20{%20ssl_fc%20}', /^setReqHeader: .*condition/],
    ['reqPathSearchReplace', 'reqPathSearchReplace=(,/', /^reqPathSearchReplace: .*not a valid regular expression/],
    ['users without password', 'users=admin', /^users: user "admin" has no password/],
    ['users hash', 'users=admin:nohash&usersPassEncrypted=true', /^users: .*crypt\(3\) hash/],
    ['usersSecret name', 'usersSecret=../etc/passwd', /^usersSecret: /],
    ['realm without users', 'realm=Private', /^realm: needs users or usersSecret/],
    ['timeoutServer', 'timeoutServer=0', /^timeoutServer: .*whole number of seconds/],
    ['redirectFromDomain without a host', 'redirectFromDomain=old.example', /^redirectFromDomain: .*give serviceDomain/],
    ['JSON header value', { addResHeader: [{ name: 'X-A', value: '%[env(SECRET)]' }] }, /^addResHeader\[0\]\.value: .*sample expression other than/],
    ['JSON rewrite', { pathRewrite: [{ search: '(', replace: '/' }] }, /^pathRewrite\[0\]\.search: .*not a valid regular expression/],
    ['JSON user', { auth: { users: [{ name: 'admin' }] } }, /^auth\.users\[0\]: give 'password' or 'passwordHash'/],
    ['JSON usersFromSecret', { auth: { users: [{ name: 'a', password: 'b' }], usersFromSecret: ['x'] } }, /^auth\.usersFromSecret: needs usersSecret/],
    ['compressionAlgo', 'compressionAlgo=brotli', /^compressionAlgo: "brotli" must be gzip, deflate, raw-deflate or identity/],
    ['compressionAlgo empty list', 'compressionAlgo=%20,', /^compressionAlgo: is empty; it must be gzip/],
    ['compressionType injection', `compressionAlgo=gzip&compressionType=${encodeURIComponent('text/html\nhttp-request deny')}`, /^compressionType: "http-request" must be a MIME type 'type\/subtype'/],
    ['compressionType comment', `compressionAlgo=gzip&compressionType=${encodeURIComponent('text/html#x')}`, /^compressionType: "text\/html#x" must be a MIME type/],
    ['compressionType wildcard', 'compressionAlgo=gzip&compressionType=text/*', /^compressionType: "text\/\*" must be a MIME type/],
    ['compressionType without compressionAlgo', 'compressionType=text/html', /^compressionType: needs compressionAlgo/],
    ['JSON compressionAlgo', { compressionAlgo: ['br'] }, /^compressionAlgo\[0\]: "br" must be gzip, deflate, raw-deflate or identity/],
    ['JSON compressionType', { compressionAlgo: ['gzip'], compressionType: ['text/html; charset=utf-8'] }, /^compressionType\[0\]: "text\/html; charset=utf-8" must be a MIME type/],
    ['JSON compressionType without compressionAlgo', { compressionType: ['text/html'] }, /^compressionType: needs compressionAlgo/],
    ['backendScheme', 'backendScheme=grpc', /^backendScheme: "grpc" must be http \(HTTP\/1.1, the default\), https/],
    ['JSON backendCaSecret', { backendCaSecret: '../x' }, /^backendCaSecret: "..\/x" must be the name of a Docker secret/],
    ['JSON sslVerifyNone with h2c', { sslVerifyNone: true, backendScheme: 'h2c' }, /^sslVerifyNone: turns on TLS to the tasks, and backendScheme=h2c is clear text/],
    ['ipAllow', 'ipAllow=10.0.0.0/33', /^ipAllow\[0\]: "10.0.0.0\/33" has a prefix length out of range \(0 to 32 for IPv4\)/],
    ['ipAllow octal-looking', 'ipAllow=010.0.0.1', /^ipAllow\[0\]: "010.0.0.1" must be an IPv4 or IPv6 address, or a CIDR block/],
    ['ipDeny injection', `ipDeny=${encodeURIComponent('1.2.3.4 } || { always_true')}`, /^ipDeny: "}" must be an IPv4 or IPv6 address/],
    ['ipDeny host name', 'ipDeny=example.com', /^ipDeny: "example.com" must be an IPv4 or IPv6 address/],
    ['rateLimit zero', 'rateLimit=0', /^rateLimit: "0" must be a whole number of requests per second from 1 to 1000000/],
    ['rateLimit not decimal', 'rateLimit=1e3', /^rateLimit: "1e3" must be a whole number of requests per second/],
    ['rateLimitBurst without rateLimit', 'rateLimitBurst=20', /^rateLimitBurst: needs rateLimit/],
    ['rateLimitBurst under rateLimit', 'rateLimit=10&rateLimitBurst=5', /^rateLimitBurst: 5 must be a whole number of requests from 1 to 10000000, at least rateLimit and at most 3600 times it \(10\)/],
    ['JSON rateLimitTotal', { rateLimitTotal: 10_000_001 }, /^rateLimitTotal: 10000001 must be <= 10000000/],
    ['JSON rateLimitBurst over 3600 times', { rateLimit: 1, rateLimitBurst: 3601 }, /^rateLimitBurst: 3601 must be/],
    ['bodyLimit zero', 'bodyLimit=0', /^bodyLimit: "0" must be a whole number of bytes from 1 to 1099511627776 \(1 TiB\)/],
    ['bodyLimit with a unit', 'bodyLimit=10m', /^bodyLimit: "10m" must be a whole number of bytes/],
    ['bodyLimit over 1 TiB', 'bodyLimit=1099511627777', /^bodyLimit: "1099511627777" must be a whole number of bytes/],
    ['JSON bodyLimit negative', { bodyLimit: -1 }, /^bodyLimit: -1 must be >= 1/],
    ['ipAllow IPv6 prefix', 'ipAllow=::1/129', /^ipAllow\[0\]: "::1\/129" has a prefix length out of range \(0 to 128 for IPv6\)/],
    ['JSON ipAllow', { ipAllow: ['1.2.3'] }, /^ipAllow\[0\]: "1.2.3" must be an IPv4 or IPv6 address/],
    ['healthCheckPath with a space', `healthCheckPath=${encodeURIComponent('/health z')}`, /^healthCheckPath: "\/health z" must start with '\/' and hold only RFC 3986 path characters/],
    ['healthCheckPath injection', `healthCheckPath=${encodeURIComponent('/h\nhttp-check expect status 500')}`, /^healthCheckPath: .* must start with '\/'/],
    ['healthCheckPath relative', 'healthCheckPath=healthz', /^healthCheckPath: "healthz" must start with '\/'/],
    ['healthCheckInterval 0', 'healthCheckPath=/h&healthCheckInterval=0', /^healthCheckInterval: "0" must be a whole number of seconds from 1 to 3600/],
    ['healthCheckStatus 600', 'healthCheckPath=/h&healthCheckStatus=600', /^healthCheckStatus: "600" must be an HTTP status code from 100 to 599/],
    ['healthCheckStatus without a path', 'healthCheckStatus=200', /^healthCheckStatus: needs healthCheckPath/],
    ['JSON healthCheckSlowStart', { healthCheckSlowStart: 0 }, /^healthCheckSlowStart: .*1/],
    ['JSON healthCheckPath with a TCP destination only', { servicePath: undefined, port: undefined, tcp: [{ srcPort: 7001, port: 7001 }], healthCheckPath: '/h' }, /^healthCheckPath: applies to HTTP destinations/],
    ['JSON ipAllow with a TCP destination', { ipAllow: ['10.0.0.0/8'], tcp: [{ srcPort: 7000, port: 7000 }] }, /^ipAllow: applies to HTTP destinations only/],
    ['JSON feature beside destinations', { servicePath: undefined, port: undefined, destinations: [{ servicePath: ['/s'], port: 80 }], stripPrefix: true }, /^stripPrefix: belongs in each destination/],
  ]
  for (const [name, input, message] of bad) {
    it(name, async () => {
      const { app, store } = control()
      const res =
        typeof input === 'string'
          ? await app.inject({ method: 'PUT', url: `/v1/reconfigure?serviceName=bad&servicePath=/s&port=80&${input}`, headers: api })
          : await app.inject({ method: 'POST', url: '/v1/reconfigure', headers: api, payload: { serviceName: 'bad', servicePath: ['/s'], port: 80, ...input } })
      assert.equal(res.statusCode, 400, res.body)
      assert.equal(res.json().code, 'VALIDATION_FAILED', res.body)
      assert.match(res.json().message, message)
      assert.equal(await store.get('bad'), null)
    })
  }

  it('warns, and stores no secret, when every user in users has a password (Docker Flow Proxy then does not read usersSecret)', async () => {
    const { app } = control()
    const res = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=warned&servicePath=/w&port=80&users=a:b&usersSecret=admins', headers: api })
    assert.equal(res.statusCode, 200, res.body)
    assert.equal(res.json().route.auth.usersSecret, undefined)
    assert.deepEqual(res.json().route.auth.users.map((u: { name: string }) => u.name), ['a'])
    assert.match(res.json().warnings[0], /^usersSecret: not used, because every user in users has a password/)
  })
})
