import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { api, startControl } from './harness.ts'

describe('GET /v1/docker-flow-proxy/reconfigure', () => {
  it("accepts Docker Flow Proxy's parameters, sessionType=sticky-server meaning sticky", async (t) => {
    const { app, store } = await startControl(t)
    const res = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=go-demo&servicePath=/demo,/demo2&port=8080&serviceDomain=example.com&sessionType=sticky-server', headers: api })
    assert.equal(res.statusCode, 200, res.body)
    assert.deepEqual(res.json().route, { serviceName: 'go-demo', destinations: [{ servicePath: ['/demo', '/demo2'], port: 8080 }], serviceDomain: ['example.com'], sticky: true, endpoints: [] })
    assert.equal(res.json().warnings, undefined, 'nothing was ignored')
    const [change] = await store.changes(0, 1)
    assert.equal(change?.source, 'dfp')
  })

  it('turns the indexed forms servicePath.N/port.N into one destination each', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=shop&servicePath.1=/shop&port.1=80&servicePath.2=/admin&port.2=8081', headers: api })
    assert.equal(res.statusCode, 200, res.body)
    assert.deepEqual(res.json().route.destinations, [
      { servicePath: ['/shop'], port: 80 },
      { servicePath: ['/admin'], port: 8081 },
    ])
  })

  it('accepts distribute and replicas without a warning', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80&distribute=true&replicas=3', headers: api })
    assert.equal(res.statusCode, 200)
    assert.equal(res.json().warnings, undefined)
  })

  it('lists the tuning parameters it does not implement and the names DFP does not have in warnings, and still stores the route', async (t) => {
    const { app, store } = await startControl(t)
    const res = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80&balanceGroup=g1&serviceDomainAlgo=hdr_dom(host)&madeUp=1&constructor=x&toString=y', headers: api })
    assert.equal(res.statusCode, 200, res.body)
    const warnings: string[] = res.json().warnings
    assert.deepEqual(
      warnings.map((w) => w.split(':')[0]),
      ['balanceGroup', 'constructor', 'madeUp', 'serviceDomainAlgo', 'toString'],
    )
    assert.match(warnings[0]!, /^balanceGroup: Docker Flow Proxy parameter not implemented by Tether \(Tether balances round-robin, or by cookie when sticky\); ignored$/)
    assert.equal(warnings[1], 'constructor: not a Docker Flow Proxy parameter; ignored')
    assert.notEqual(await store.get('a'), null)
  })

  it('stores compressionAlgo and compressionType as DFP users write them (space-separated), shown in GET /v1/routes; an unknown algorithm or a bad type is 400 naming it', async (t) => {
    const { app, store } = await startControl(t)
    const res = await app.inject({ url: `/v1/docker-flow-proxy/reconfigure?serviceName=web&servicePath=/web&port=80&compressionAlgo=gzip&compressionType=${encodeURIComponent('text/css text/html application/json')}`, headers: api })
    assert.equal(res.statusCode, 200, res.body)
    assert.equal(res.json().warnings, undefined, 'compression is implemented: no warning')
    const listed = (await app.inject({ url: '/v1/routes', headers: api })).json().routes.find((r: { route: { serviceName: string } }) => r.route.serviceName === 'web')
    assert.deepEqual(listed.route.compressionAlgo, ['gzip'])
    assert.deepEqual(listed.route.compressionType, ['application/json', 'text/css', 'text/html'])
    for (const [q, message] of [
      ['compressionAlgo=br', /^compressionAlgo: "br" must be gzip, deflate, raw-deflate or identity/],
      [`compressionAlgo=gzip&compressionType=${encodeURIComponent('text/html "x"')}`, /^compressionType: "\\"x\\"" must be a MIME type/],
    ] as const) {
      const bad = await app.inject({ url: `/v1/docker-flow-proxy/reconfigure?serviceName=bad&servicePath=/bad&port=80&${q}`, headers: api })
      assert.equal(bad.statusCode, 400, bad.body)
      assert.match(bad.json().message, message)
    }
    assert.equal(await store.get('bad'), null)
  })

  it('accepts without a warning the parameters asking for what Tether always does (xForwardedProto=true...), and says so when one asks otherwise', async (t) => {
    const { app, store } = await startControl(t)
    const honoured = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80&xForwardedProto=true&connectionMode=http-keep-alive&checkResolvers=true', headers: api })
    assert.equal(honoured.statusCode, 200, honoured.body)
    assert.equal(honoured.json().warnings, undefined)
    assert.equal((await store.get('a'))?.route.destinations[0]?.port, 80)
    const tcp = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=es&reqMode=tcp&srcPort=9200&port=9200&checkTcp=true', headers: api })
    assert.equal(tcp.statusCode, 200, tcp.body)
    assert.equal(tcp.json().warnings, undefined)
    const other = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=b&servicePath=/b&port=80&xForwardedProto=false&connectionMode=httpclose', headers: api })
    assert.equal(other.statusCode, 200, other.body)
    assert.deepEqual(other.json().warnings, [
      'connectionMode: "httpclose" is not what Tether does (Tether always keeps connections alive (http-keep-alive); other modes are not offered); ignored',
      `xForwardedProto: "false" is not what Tether does (Tether always sets X-Forwarded-Proto to https or http by the listener the request came in on (the client's own header replaced); it cannot be turned off); ignored`,
    ])
    assert.notEqual(await store.get('b'), null)
  })

  it('refuses a parameter that restricts access and is not implemented (400 NOT_IMPLEMENTED naming it), and stores nothing', async (t) => {
    const { app, store } = await startControl(t)
    for (const q of ['verifyClientSsl=true', 'verifyClientSsl.1=true&servicePath.1=/b&port.1=81', 'redirectUnlessHttpsProto=true', 'serviceCert=PEM', 'backendExtra=http-request%20allow', 'templateFePath=/t.tmpl', 'pathType=path_reg', 'outboundHostname=x.example']) {
      const res = await app.inject({ url: `/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80&${q}`, headers: api })
      assert.equal(res.statusCode, 400, `${q}: ${res.body}`)
      assert.equal(res.json().code, 'NOT_IMPLEMENTED', q)
      const name = q.split('=')[0]!
      assert.ok(res.json().message.startsWith(`${name}: the Docker Flow Proxy parameter`), `${q}: ${res.json().message}`)
    }
    assert.equal(await store.version(), 0)
    // A security switch set to false asks for nothing: accepted without a warning.
    const off = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80&verifyClientSsl=false&sslVerifyNone=false&reqMode=http', headers: api })
    assert.equal(off.statusCode, 200, off.body)
    assert.equal(off.json().warnings, undefined)
  })

  it('takes sslVerifyNone (TLS to the tasks, not verified) and Tether\'s backendScheme and backendCaSecret, from the DFP form and labels alike', async (t) => {
    const { app, store } = await startControl(t)
    const dfp = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=8443&sslVerifyNone=true', headers: api })
    assert.equal(dfp.statusCode, 200, dfp.body)
    assert.equal(dfp.json().warnings, undefined)
    const stored = await store.get('a')
    assert.equal(stored?.route.sslVerifyNone, true)
    assert.equal(stored?.route.backendScheme, 'https', 'sslVerifyNone alone means TLS (HTTP/1.1) to the tasks, as in DFP')
    const grpc = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=g&servicePath=/pkg.Service&port=50051&backendScheme=h2c', headers: api })
    assert.equal(grpc.statusCode, 200, grpc.body)
    assert.equal((await store.get('g'))?.route.backendScheme, 'h2c')
    const verified = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=v&servicePath=/v&port=8443&backendScheme=h2&backendCaSecret=internal_ca', headers: api })
    assert.equal(verified.statusCode, 200, verified.body)
    assert.deepEqual([(await store.get('v'))?.route.backendScheme, (await store.get('v'))?.route.backendCaSecret], ['h2', 'internal_ca'])
    for (const [q, field, message] of [
      ['backendScheme=grpc', 'backendScheme', /"grpc" must be http \(HTTP\/1.1, the default\), https/],
      ['backendCaSecret=../etc/passwd', 'backendCaSecret', /must be the name of a Docker secret/],
      ['sslVerifyNone=true&backendCaSecret=ca', 'sslVerifyNone', /contradict each other/],
      ['backendCaSecret=ca&backendScheme=http', 'backendCaSecret', /backendScheme=http is clear text/],
    ] as const) {
      const res = await app.inject({ url: `/v1/docker-flow-proxy/reconfigure?serviceName=bad&servicePath=/b&port=80&${q}`, headers: api })
      assert.equal(res.statusCode, 400, `${q}: ${res.body}`)
      assert.ok(res.json().message.startsWith(`${field}: `), res.json().message)
      assert.match(res.json().message, message)
    }
    assert.equal(await store.get('bad'), null, 'nothing stored for a refused route')
  })

  it("accepts Docker Flow Swarm Listener's and Docker Flow Monitor's bookkeeping without a warning", async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({
      url: '/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80&notify=true&distribute=true&replicas=3&reschedule=true&scrapePort=9100&alertName=mem&alertIf=%40service_mem_limit%3A0.8&alertFor=5m&alertName.1=cpu&shortName=true&userDef=x',
      headers: api,
    })
    assert.equal(res.statusCode, 200, res.body)
    assert.equal(res.json().warnings, undefined)
  })

  it('answers 409 NOTHING_TO_ROUTE for a create with no servicePath and no serviceDomain (as DFP; DFSL counts it as done), and stores nothing', async (t) => {
    const { app, store } = await startControl(t)
    const res = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=monitored&port=9100&scrapePort=9100&alertName=mem', headers: api })
    assert.equal(res.statusCode, 409, res.body)
    assert.equal(res.json().code, 'NOTHING_TO_ROUTE')
    assert.match(res.json().message, /servicePath or serviceDomain/)
    assert.equal(await store.version(), 0)
  })

  it('parses every implemented DFP parameter into the stored route', async (t) => {
    const { app } = await startControl(t)
    const q = new URLSearchParams({
      serviceName: 'shop',
      serviceDomain: 'Shop.Example.com.',
      port: '80',
      'servicePath.1': '/api',
      'port.1': '8080',
      'userAgent.1': 'iPhone,Android',
      'servicePath.2': '/api',
      'port.2': '8081',
      'serviceHeader.2': 'X-Version:3',
      'serviceDomain.3': '*dfp.example',
      'port.3': '8082',
      'redirectFromDomain.3': 'old.dfp.example',
      reqPathSearchReplace: '^/api/v1/,/:/old,/new',
      allowedMethods: 'get,POST',
      'deniedMethods.2': 'DELETE',
      'ignoreAuthorization.1': 'true',
      servicePathExclude: '/api/metrics',
      timeoutServer: '30',
      'timeoutTunnel.2': '3600',
      addReqHeader: 'X-Forwarded-Port %[dst_port],X-Static on',
      setResHeader: 'X-Via %[env(HOSTNAME)]',
      delReqHeader: 'X-Secret',
      delResHeader: 'Server',
      users: 'admin:s3cret, ops:$6$tethersalt$igDKEU2kQB0/sdrV3JlyBanTfVltpwmxDdT780GrialRN11kHhMXKN0Sp1sPnRq95/CzpK0fl8.FOSqDXQgNN.',
      isDefaultBackend: 'true',
    })
    // A plain and a hashed password in one list is not DFP's form: without usersPassEncrypted both are passwords.
    const res = await app.inject({ url: `/v1/docker-flow-proxy/reconfigure?${q}`, headers: api })
    assert.equal(res.statusCode, 200, res.body)
    const route = res.json().route
    assert.deepEqual(route.serviceDomain, ['shop.example.com'])
    assert.deepEqual(route.destinations.map((d: { servicePath: string[]; port: number }) => [d.servicePath, d.port]), [
      [['/api'], 8080],
      [['/api'], 8081],
      [['/'], 8082],
    ])
    const [d1, d2, d3] = route.destinations
    assert.deepEqual(d1.userAgent, ['Android', 'iPhone'])
    assert.equal(d1.ignoreAuthorization, true)
    assert.deepEqual(d1.pathRewrite, [
      { search: '^/api/v1/', replace: '/' },
      { search: '/old', replace: '/new' },
    ])
    assert.deepEqual(d1.allowedMethods, ['GET', 'POST'])
    assert.deepEqual(d1.servicePathExclude, ['/api/metrics'])
    assert.equal(d1.timeoutServer, 30)
    assert.deepEqual(d2.serviceHeader, [{ name: 'X-Version', value: '3' }])
    assert.deepEqual(d2.deniedMethods, ['DELETE'])
    assert.equal(d2.timeoutTunnel, 3600)
    assert.deepEqual(d3.serviceDomain, ['*.dfp.example', 'dfp.example'])
    assert.deepEqual(d3.redirectFromDomain, ['old.dfp.example'])
    assert.deepEqual(route.addReqHeader, [
      { name: 'X-Forwarded-Port', value: '%[dst_port]' },
      { name: 'X-Static', value: 'on' },
    ])
    assert.deepEqual(route.setResHeader, [{ name: 'X-Via', value: '%[env(HOSTNAME)]' }])
    assert.deepEqual(route.delReqHeader, ['X-Secret'])
    assert.deepEqual(route.delResHeader, ['Server'])
    assert.equal(route.isDefaultBackend, true)
    assert.deepEqual(route.auth.users.map((u: { name: string }) => u.name), ['admin', 'ops'])
    assert.match(route.auth.users[0].passwordHash, /^\$6\$[A-Za-z0-9]{16}\$/, 'the plain password is stored only as a SHA-512 crypt hash')
    assert.ok(!res.body.includes('s3cret'), 'the password is nowhere in the answer')
    // The same request again changes nothing: the hash is the same (salt per service and user).
    const again = await app.inject({ url: `/v1/docker-flow-proxy/reconfigure?${q}`, headers: api })
    assert.equal(again.json().changed, false)
  })

  it('refuses header values that could inject HAProxy syntax, naming the parameter and the rule', async (t) => {
    const { app, store } = await startControl(t)
    for (const [q, message] of [
      ['addReqHeader=X-A%20%25[req.hdr(cookie)]', /sample expression other than/],
      ['setReqHeader=X-Forwarded-Ssl%20on%20if%20{%20ssl_fc%20}', /condition/],
      ['addResHeader=X-A%20a%0Ab', /printable ASCII/],
      ['addReqHeader=X-A:b%20c', /HTTP header name/],
      ['addReqHeader=X-Only-Name', /'Name value'/],
      ['delReqHeader=X-A%20B', /HTTP header name/],
      ['reqPathSearchReplace=%5E/a%20b,/', /without spaces, quotes/],
      ["reqPathSearchReplace=%5E/a',/", /without spaces, quotes/],
      ['reqPathSearchReplace=(,/', /not a valid regular expression/],
      ['users=admin', /has no password/],
      ['users=admin:notahash&usersPassEncrypted=true', /crypt\(3\) hash/],
      ['allowedMethods=GET%20POST', /HTTP method/],
      ['timeoutServer=0', /whole number of seconds/],
      ['userAgent=%0A', /printable ASCII/],
    ] as const) {
      const res = await app.inject({ url: `/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80&${q}`, headers: api })
      assert.equal(res.statusCode, 400, `${q}: ${res.body}`)
      assert.equal(res.json().code, 'VALIDATION_FAILED', q)
      const field = q.split('=')[0]!
      assert.ok(res.json().message.startsWith(`${field}:`), `${q}: ${res.json().message}`)
      assert.match(res.json().message, message, q)
    }
    assert.equal(await store.version(), 0)
  })

  it("reads srcPort 80 / 443 of HTTP destinations as DFP does (the port the request arrived on): DFP's documented multi-destination example; other ports are refused", async (t) => {
    const { app, store } = await startControl(t)
    // Verbatim from DFP's usage docs.
    const res = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=foo&servicePath.1=/&port.1=8080&srcPort.1=80&servicePath.2=/&port.2=8081&srcPort.2=443', headers: api })
    assert.equal(res.statusCode, 200, res.body)
    assert.deepEqual(res.json().route.destinations, [
      { servicePath: ['/'], port: 8080, listener: 'http' },
      { servicePath: ['/'], port: 8081, listener: 'https' },
    ])
    assert.equal(res.json().warnings, undefined, 'nothing shadowed: one path, one destination per listener')
    const other = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=bar&servicePath=/bar&port=8080&srcPort=8085', headers: api })
    assert.equal(other.statusCode, 400, other.body)
    assert.equal(other.json().code, 'NOT_IMPLEMENTED')
    assert.match(other.json().message, /^srcPort: the Docker Flow Proxy parameter "srcPort=8085" with reqMode=http/)
    assert.equal(await store.get('bar'), null)
  })

  it('serves a domain-only route on / (serviceDomain without servicePath, also indexed)', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=demo&serviceDomain=demo.org&port=80', headers: api })
    assert.equal(res.statusCode, 200, res.body)
    assert.deepEqual(res.json().route.destinations, [{ servicePath: ['/'], port: 80 }])
    assert.deepEqual(res.json().route.serviceDomain, ['demo.org'])
    // Indexed: each destination its own domain; a path-less unindexed part only gives defaults (DFP's rule).
    const indexed = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=demo&port.1=80&serviceDomain.1=a.example&port.2=81&serviceDomain.2=b.example&servicePath.2=/b', headers: api })
    assert.equal(indexed.statusCode, 200, indexed.body)
    assert.deepEqual(indexed.json().route.destinations, [
      { servicePath: ['/'], port: 80, serviceDomain: ['a.example'] },
      { servicePath: ['/b'], port: 81, serviceDomain: ['b.example'] },
    ])
  })

  it('answers with password hashes only to token holders: public reads hide them', async (t) => {
    const { app } = await startControl(t)
    await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80&users=admin:s3cret', headers: api })
    const pub = await app.inject({ url: '/v1/routes/a' })
    assert.equal(pub.statusCode, 200, pub.body)
    assert.deepEqual(pub.json().route?.auth?.users ?? pub.json().auth?.users, [{ name: 'admin', passwordHash: '(hidden)' }])
    assert.ok(!pub.body.includes('$6$'))
    const config = await app.inject({ url: '/v1/docker-flow-proxy/config' })
    assert.equal(config.statusCode, 200)
    assert.deepEqual(config.json().routes[0].auth.users, [{ name: 'admin', passwordHash: '(hidden)' }])
  })

  it('judges values as strictly as Tether’s own endpoint', async (t) => {
    const { app, store } = await startControl(t)
    for (const [q, field] of [
      ['servicePath=/a%20b&port=80', 'servicePath'],
      ['servicePath=/a&port=0', 'port'],
      ['servicePath.1=/a&port.1=x', 'port.1'],
      ['servicePath.1=/a%0Ab&port.1=80', 'servicePath.1'],
      ['servicePath.1=/a', 'port.1'],
      ['servicePath=/a&port=80&sessionType=cookie', 'sessionType'],
      ['servicePath=/a&port=80&serviceDomain=bad_domain', 'serviceDomain'],
    ] as const) {
      const res = await app.inject({ url: `/v1/docker-flow-proxy/reconfigure?serviceName=a&${q}`, headers: api })
      assert.equal(res.statusCode, 400, `${q}: ${res.body}`)
      assert.ok(res.json().message.startsWith(`${field}:`), `${q}: ${res.json().message}`)
    }
    assert.equal(await store.version(), 0)
  })

  it('needs a token', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80' })
    assert.equal(res.statusCode, 401)
  })
})

describe('GET /v1/docker-flow-proxy/remove', () => {
  it("removes the route; DFP's parameters (DFSL sends every label) pass silently, unknown names are warned about", async (t) => {
    const { app, store } = await startControl(t)
    await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80', headers: api })
    const res = await app.inject({ url: '/v1/docker-flow-proxy/remove?serviceName=a&distribute=true&aclName=x&servicePath=/a&port=80&madeUp=1', headers: api })
    assert.equal(res.statusCode, 200, res.body)
    assert.equal(res.json().version, 2)
    assert.equal(res.json().removed.serviceName, 'a')
    assert.deepEqual(res.json().warnings, ['madeUp: not a Docker Flow Proxy parameter; ignored'])
    assert.equal(await store.get('a'), null)
  })

  it('answers 200 removed:false for a service it has no route for (DFSL retries anything else), changing nothing', async (t) => {
    const { app, store } = await startControl(t)
    await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80', headers: api })
    const res = await app.inject({ method: 'DELETE', url: '/v1/docker-flow-proxy/remove?serviceName=nope', headers: api })
    assert.equal(res.statusCode, 200, res.body)
    assert.deepEqual(res.json(), { version: 1, removed: false })
    assert.equal(await store.version(), 1)
  })
})

describe("Docker Flow Proxy's other endpoints", () => {
  it('GET /v1/docker-flow-proxy/config answers the routing table as JSON', async (t) => {
    const { app } = await startControl(t)
    await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80', headers: api })
    const res = await app.inject({ url: '/v1/docker-flow-proxy/config?type=json' })
    assert.equal(res.statusCode, 200)
    assert.equal(res.json().version, 1)
    assert.deepEqual(res.json().routes.map((r: { serviceName: string }) => r.serviceName), ['a'])
  })

  it('GET /v1/docker-flow-proxy/reload answers 200 and changes nothing', async (t) => {
    const { app, store } = await startControl(t)
    const res = await app.inject({ url: '/v1/docker-flow-proxy/reload?recreate=true' })
    assert.equal(res.statusCode, 200)
    assert.equal(res.json().status, 'OK')
    assert.match(res.json().message, /reload themselves/)
    assert.equal(await store.version(), 0)
  })
})
