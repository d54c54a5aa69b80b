/**
 * TCP and SNI passthrough routes through every form of the control plane: Tether's query and
 * JSON forms, the resource form, Docker Flow Proxy's form (indexed srcPort.N / reqMode.N, its
 * pathType for SNI) and com.df.* labels. A second claim of a listen port or a server name is a
 * 409 ROUTE_CONFLICT (in memory and in a real Redis), takeover=true moves it, and bad input is a
 * 400 naming the field and the rule, with nothing stored.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { routesFromServices } from '../../src/control/discovery/swarm-labels.ts'
import type { SwarmService } from '../../src/control/discovery/swarm-client.ts'
import { createRedisRouteStore } from '../../src/control/store/redis-route-store.ts'
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts'
import { api, startControl } from './harness.ts'

const put = (url: string) => ({ method: 'PUT' as const, url, headers: api })
const dfp = (query: string) => ({ method: 'GET' as const, url: `/v1/docker-flow-proxy/reconfigure?${query}`, headers: api })

describe('TCP and SNI routes: the forms', () => {
  it('query form: reqMode=tcp stores a listen port forwarding to the service port, with affinity and the PROXY protocol when asked', async (t) => {
    const { app, store } = await startControl(t)
    const res = await app.inject(put('/v1/reconfigure?serviceName=redis&reqMode=tcp&srcPort=6379&port=6379&sticky=true&sendProxyProtocol=true'))
    assert.equal(res.statusCode, 200, res.body)
    assert.deepEqual((await store.get('redis'))?.route, { serviceName: 'redis', destinations: [], tcp: [{ srcPort: 6379, port: 6379, sendProxyProtocol: true }], serviceDomain: [], sticky: true, endpoints: [] })
  })

  it('query form: reqMode=sni stores server names (exact, wildcard, prefix), lower-cased', async (t) => {
    const { app, store } = await startControl(t)
    const res = await app.inject(put('/v1/reconfigure?serviceName=pg&reqMode=sni&serverName=DB.example.com,*.db.example.org,api.*&port=5432'))
    assert.equal(res.statusCode, 200, res.body)
    assert.deepEqual((await store.get('pg'))?.route.sni, [{ serverName: ['*.db.example.org', 'api.*', 'db.example.com'], port: 5432 }])
  })

  it('JSON and resource forms: HTTP, TCP and SNI destinations in one route', async (t) => {
    const { app, store } = await startControl(t)
    const body = { servicePath: ['/ui'], port: 8080, tcp: [{ srcPort: 5672, port: 5672 }, { srcPort: 1883, port: 1883, timeoutClient: 600 }], sni: [{ serverName: ['mq.example.com'], port: 5671 }] }
    const res = await app.inject({ method: 'PUT', url: '/v1/routes/broker', headers: api, payload: body })
    assert.equal(res.statusCode, 200, res.body)
    const route = (await store.get('broker'))?.route
    assert.deepEqual(route?.destinations, [{ servicePath: ['/ui'], port: 8080 }])
    assert.deepEqual(route?.tcp, [{ srcPort: 5672, port: 5672 }, { srcPort: 1883, port: 1883, timeoutClient: 600 }])
    assert.deepEqual(route?.sni, [{ serverName: ['mq.example.com'], port: 5671 }])
    const only = await app.inject({ method: 'POST', url: '/v1/reconfigure', headers: api, payload: { serviceName: 'pg', tcp: [{ srcPort: 5432, port: 5432 }] } })
    assert.equal(only.statusCode, 200, only.body)
    assert.deepEqual(only.json().route.tcp, [{ srcPort: 5432, port: 5432 }])
  })

  it('every form takes a server name with the trailing root dot, as the same name (the JSON form refused it)', async (t) => {
    const { app, store } = await startControl(t)
    const json = await app.inject({ method: 'POST', url: '/v1/reconfigure', headers: api, payload: { serviceName: 'a', sni: [{ serverName: ['Db.Example.COM.'], port: 5432 }] } })
    assert.equal(json.statusCode, 200, json.body)
    const query = await app.inject(put('/v1/reconfigure?serviceName=b&reqMode=sni&serverName=Mq.Example.COM.&port=5671'))
    assert.equal(query.statusCode, 200, query.body)
    assert.deepEqual((await store.get('a'))?.route.sni, [{ serverName: ['db.example.com'], port: 5432 }])
    assert.deepEqual((await store.get('b'))?.route.sni, [{ serverName: ['mq.example.com'], port: 5671 }])
  })

  it("DFP form: indexed reqMode.N/srcPort.N on a service mixing HTTP and TCP destinations", async (t) => {
    const { app, store } = await startControl(t)
    const res = await app.inject(dfp('serviceName=gitlab&servicePath=/&port=80&reqMode.1=tcp&srcPort.1=2222&port.1=22&servicePath.2=/registry&port.2=5000&sessionType=sticky-server'))
    assert.equal(res.statusCode, 200, res.body)
    const route = (await store.get('gitlab'))?.route
    assert.deepEqual(route?.destinations, [{ servicePath: ['/'], port: 80 }, { servicePath: ['/registry'], port: 5000 }])
    assert.deepEqual(route?.tcp, [{ srcPort: 2222, port: 22 }])
    assert.equal(route?.sticky, true)
  })

  it("DFP form: reqMode=tcp alone, and DFP's rule that it needs port and srcPort", async (t) => {
    const { app, store } = await startControl(t)
    assert.equal((await app.inject(dfp('serviceName=es&reqMode=tcp&srcPort=9200&port=9200&checkTcp=true'))).statusCode, 200)
    assert.deepEqual((await store.get('es'))?.route.tcp, [{ srcPort: 9200, port: 9200 }])
    const noSrc = await app.inject(dfp('serviceName=pg&reqMode=tcp&port=5432'))
    assert.equal(noSrc.statusCode, 400)
    assert.equal(noSrc.json().code, 'VALIDATION_FAILED')
    assert.match(noSrc.json().message, /^srcPort: is required with reqMode=tcp \(Docker Flow Proxy's rule: a TCP destination needs port and srcPort\)/)
    const noPort = await app.inject(dfp('serviceName=pg&servicePath=/x&port=80&reqMode.1=tcp&srcPort.1=5432'))
    assert.equal(noPort.statusCode, 400)
    assert.match(noPort.json().message, /^port\.1: is required with reqMode=tcp/)
    assert.equal(await store.get('pg'), null)
  })

  it("DFP form: reqMode=sni with pathType req_ssl_sni -m beg, -m reg ('^(api\\.)') and exact names", async (t) => {
    const { app, store } = await startControl(t)
    const cases: Array<[string, string[]]> = [
      ['serviceName=a&reqMode=sni&srcPort=443&port=443&pathType=req_ssl_sni%20-i%20-m%20reg&servicePath=%5E(api%5C.)', ['api.*']],
      ['serviceName=b&reqMode=sni&port=443&pathType=req_ssl_sni%20-m%20beg&servicePath=test.', ['test.*']],
      ['serviceName=c&reqMode=sni&port=443&pathType=req_ssl_sni%20-m%20reg&servicePath=%5Edb%5C.example%5C.com%24', ['db.example.com']],
      ['serviceName=d&reqMode=sni&port=443&pathType=req_ssl_sni%20-m%20end&servicePath=.example.org', ['*.example.org']],
      ['serviceName=e&reqMode=sni&port=8443&serviceDomain=E.example.net', ['e.example.net']],
    ]
    for (const [q, names] of cases) {
      const res = await app.inject(dfp(q))
      assert.equal(res.statusCode, 200, `${q}: ${res.body}`)
      const name = /serviceName=(\w)/.exec(q)![1]!
      assert.deepEqual((await store.get(name))?.route.sni?.[0]?.serverName, names, q)
    }
  })

  it('DFP form: a regular expression that is not an anchored literal is refused, naming the field and the rule', async (t) => {
    const { app, store } = await startControl(t)
    for (const regex of ['(a%2B)%2B', '%5Eapi.*', '%5E(api%7Cweb)%5C.', 'api%5C.']) {
      const res = await app.inject(dfp(`serviceName=a&reqMode=sni&port=443&pathType=req_ssl_sni%20-m%20reg&servicePath=${regex}`))
      assert.equal(res.statusCode, 400, regex)
      assert.equal(res.json().code, 'VALIDATION_FAILED')
      assert.match(res.json().message, /^servicePath: .* for reqMode=sni a regular expression \(-m reg\) must be an anchored literal/)
    }
    const bad = await app.inject(dfp('serviceName=a&reqMode=sni&port=443&pathType=req_ssl_sni%20-m%20sub&servicePath=api'))
    assert.match(bad.json().message, /^pathType: .* must be 'req_ssl_sni' optionally followed by -i and -m str\|beg\|end\|reg/)
    const otherPort = await app.inject(dfp('serviceName=a&reqMode=sni&srcPort=8443&port=443&servicePath=a.example.com'))
    assert.equal(otherPort.json().code, 'NOT_IMPLEMENTED')
    assert.match(otherPort.json().message, /^srcPort: .*served on the proxies' HTTPS port/)
    assert.equal(await store.version(), 0)
  })

  it('com.df.* labels: a service mixing HTTP and TCP destinations, and an SNI service', () => {
    const svc = (name: string, labels: Record<string, string>): SwarmService => ({ id: `id-${name}`, name, labels, mode: 'replicated', replicas: 1 })
    const { routes, problems } = routesFromServices([
      svc('gitlab', { 'com.df.notify': 'true', 'com.df.servicePath': '/', 'com.df.port': '80', 'com.df.reqMode.1': 'tcp', 'com.df.srcPort.1': '2222', 'com.df.port.1': '22' }),
      svc('api', { 'com.df.notify': 'true', 'com.df.reqMode': 'sni', 'com.df.srcPort': '443', 'com.df.port': '443', 'com.df.pathType': 'req_ssl_sni -i -m reg', 'com.df.servicePath': '^(api\\.)' }),
    ])
    assert.deepEqual(problems, [])
    assert.deepEqual(
      routes.map((r) => [r.serviceName, r.destinations, r.tcp, r.sni]),
      [
        ['api', [], undefined, [{ serverName: ['api.*'], port: 443 }]],
        ['gitlab', [{ servicePath: ['/'], port: 80 }], [{ srcPort: 2222, port: 22 }], undefined],
      ],
    )
  })
})

describe('TCP and SNI routes: refused input (400, nothing stored)', () => {
  const cases: Array<{ name: string; request: () => ReturnType<typeof put> | { method: 'POST'; url: string; headers: typeof api; payload: object }; message: RegExp }> = [
    { name: "the proxies' own HTTP port", request: () => put('/v1/reconfigure?serviceName=x&reqMode=tcp&srcPort=80&port=80'), message: /^srcPort: 80 is the proxies' HTTP listener/ },
    { name: "the proxies' own HTTPS port", request: () => put('/v1/reconfigure?serviceName=x&reqMode=tcp&srcPort=443&port=443'), message: /^srcPort: 443 is the proxies' HTTPS listener/ },
    { name: "the proxies' admin port (DFP form)", request: () => dfp('serviceName=x&reqMode=tcp&srcPort=8404&port=1') as never, message: /^srcPort: 8404 is the proxies' admin listener/ },
    { name: 'a TCP route without srcPort', request: () => put('/v1/reconfigure?serviceName=x&reqMode=tcp&port=6379'), message: /^srcPort: is required with reqMode=tcp/ },
    { name: 'a servicePath on a TCP route', request: () => put('/v1/reconfigure?serviceName=x&reqMode=tcp&srcPort=6379&port=6379&servicePath=/x'), message: /^servicePath: applies to HTTP routes/ },
    { name: 'an unknown reqMode', request: () => put('/v1/reconfigure?serviceName=x&reqMode=udp&port=53'), message: /^querystring\/reqMode|^reqMode/ },
    { name: 'srcPort on an HTTP route', request: () => put('/v1/reconfigure?serviceName=x&servicePath=/x&port=80&srcPort=6379'), message: /^srcPort: belongs to reqMode=tcp routes/ },
    { name: 'a bad server name', request: () => put('/v1/reconfigure?serviceName=x&reqMode=sni&serverName=a..b&port=443'), message: /^serverName: "a\.\.b" must be a TLS server name/ },
    {
      name: 'a bad server name in the JSON form, naming the rule (not "must match pattern")',
      request: () => ({ method: 'POST', url: '/v1/reconfigure', headers: api, payload: { serviceName: 'x', sni: [{ serverName: ['a..b'], port: 443 }] } }),
      message: /^sni\[0\]\.serverName\[0\]: "a\.\.b" must be a TLS server name/,
    },
    {
      name: 'a srcPort that is not a number in the JSON form, naming the rule',
      request: () => ({ method: 'POST', url: '/v1/reconfigure', headers: api, payload: { serviceName: 'x', tcp: [{ srcPort: '6379', port: 6379 }] } }),
      message: /^tcp\[0\]\.srcPort: "6379" must be an integer from 1 to 65535, a port the proxies listen on/,
    },
    {
      name: 'one srcPort twice in a route',
      request: () => ({ method: 'POST', url: '/v1/reconfigure', headers: api, payload: { serviceName: 'x', tcp: [{ srcPort: 6000, port: 1 }, { srcPort: 6000, port: 2 }] } }),
      message: /^tcp\[1\]\.srcPort: 6000 is given twice in this route/,
    },
    {
      name: 'a route with nothing to route',
      request: () => ({ method: 'POST', url: '/v1/reconfigure', headers: api, payload: { serviceName: 'x', sni: [] } }),
      message: /sni/,
    },
    { name: 'basic auth on a route with a TCP destination (it would stay open)', request: () => dfp('serviceName=x&servicePath=/a&port=80&users=u:p&reqMode.1=tcp&srcPort.1=6000&port.1=1') as never, message: /^users: basic authentication applies to HTTP destinations only/ },
    { name: 'an HTTP-only parameter on a TCP destination', request: () => dfp('serviceName=x&servicePath=/a&port=80&reqMode.1=tcp&srcPort.1=6000&port.1=1&allowedMethods.1=GET') as never, message: /^allowedMethods\.1: applies to HTTP destinations/ },
    // Found by the hostile-input fuzz (seed 4242): a TCP/SNI-only route stored denyHttp, httpsOnly, headers... and nothing applied them.
    {
      name: 'denyHttp on a route of TCP destinations only (JSON form: it would look like a restriction that is not there)',
      request: () => ({ method: 'POST', url: '/v1/reconfigure', headers: api, payload: { serviceName: 'x', tcp: [{ srcPort: 6000, port: 1 }], denyHttp: true } }),
      message: /^denyHttp: applies to HTTP destinations .*only tcp\/sni destinations/,
    },
    {
      name: 'httpsOnly on a route of SNI destinations only (resource form)',
      request: () => ({ method: 'PUT', url: '/v1/routes/x', headers: api, payload: { sni: [{ serverName: ['a.example'], port: 443 }], httpsOnly: true } }) as never,
      message: /^httpsOnly: applies to HTTP destinations/,
    },
    { name: 'a request header on a TCP-only route (DFP form)', request: () => dfp('serviceName=x&reqMode=tcp&srcPort=6000&port=1&addReqHeader=X-A%20b') as never, message: /^addReqHeader: applies to HTTP destinations/ },
    { name: 'denyHttp on a TCP-only route (DFP form)', request: () => dfp('serviceName=x&reqMode=tcp&srcPort=6000&port=1&denyHttp=true') as never, message: /^denyHttp: applies to HTTP destinations/ },
  ]
  for (const c of cases) {
    it(`refuses ${c.name}`, async (t) => {
      const { app, store } = await startControl(t)
      const res = await app.inject(c.request())
      assert.equal(res.statusCode, 400, res.body)
      assert.match(res.json().message, c.message)
      assert.equal(await store.version(), 0)
    })
  }
})

let redis: RedisServer
before(async () => {
  redis = await startRedisServer()
})
after(async () => {
  await redis?.stop()
})

let prefixes = 0
for (const kind of ['memory', 'redis'] as const) {
  describe(`TCP and SNI routes: 409 ROUTE_CONFLICT and takeover (${kind} store)`, () => {
    const control = async (t: Parameters<typeof startControl>[0]) => {
      if (kind === 'memory') return startControl(t)
      const store = createRedisRouteStore({ url: redis.url, prefix: `tcp-sni-${++prefixes}:` })
      t.after(() => store.close())
      return startControl(t, { store })
    }

    it('refuses a second service on a TCP listen port, naming the port and the holder, and stores nothing', async (t) => {
      const { app, store } = await control(t)
      assert.equal((await app.inject(put('/v1/reconfigure?serviceName=redis-a&reqMode=tcp&srcPort=6379&port=6379'))).statusCode, 200)
      const res = await app.inject({ method: 'PUT', url: '/v1/routes/redis-b', headers: api, payload: { servicePath: ['/b'], port: 80, tcp: [{ srcPort: 6379, port: 6380 }] } })
      assert.equal(res.statusCode, 409)
      assert.equal(res.json().code, 'ROUTE_CONFLICT')
      assert.match(res.json().message, /^srcPort: TCP port 6379 is already served by service "redis-a" \(one service per listen port\); nothing was stored\..*takeover=true/)
      assert.equal(await store.get('redis-b'), null)
      assert.equal(await store.version(), 1)
      // The holder may change its own route; another port is free.
      assert.equal((await app.inject(put('/v1/reconfigure?serviceName=redis-a&reqMode=tcp&srcPort=6379&port=7000'))).statusCode, 200)
      assert.equal((await app.inject(put('/v1/reconfigure?serviceName=redis-b&reqMode=tcp&srcPort=6380&port=6379'))).statusCode, 200)
    })

    it('refuses a second service on a TLS server name', async (t) => {
      const { app } = await control(t)
      assert.equal((await app.inject(put('/v1/reconfigure?serviceName=a&reqMode=sni&serverName=db.example.com&port=5432'))).statusCode, 200)
      const res = await app.inject(put('/v1/reconfigure?serviceName=b&reqMode=sni&serverName=DB.example.com&port=5432'))
      assert.equal(res.statusCode, 409)
      assert.match(res.json().message, /^serverName: TLS server name "db\.example\.com" is already passed through to service "a"/)
      // A wildcard covering it is another binding (exact names win): allowed.
      assert.equal((await app.inject(put('/v1/reconfigure?serviceName=b&reqMode=sni&serverName=*.example.com&port=5432'))).statusCode, 200)
    })

    it('takeover=true moves the port and keeps the holder\'s HTTP destinations', async (t) => {
      const { app, store } = await control(t)
      const blueRes = await app.inject({ method: 'PUT', url: '/v1/routes/blue', headers: api, payload: { servicePath: ['/blue'], port: 80, tcp: [{ srcPort: 5432, port: 5432 }] } })
      assert.equal(blueRes.statusCode, 200, blueRes.body)
      const res = await app.inject(put('/v1/reconfigure?serviceName=green&reqMode=tcp&srcPort=5432&port=5432&takeover=true'))
      assert.equal(res.statusCode, 200, res.body)
      assert.deepEqual(res.json().takenOver, [{ serviceName: 'blue', servicePath: ['tcp:5432'], removed: false }])
      const blue = (await store.get('blue'))?.route
      assert.deepEqual([blue?.destinations, blue?.tcp], [[{ servicePath: ['/blue'], port: 80 }], undefined])
      assert.deepEqual((await store.get('green'))?.route.tcp, [{ srcPort: 5432, port: 5432 }])
    })

    it('the DFP form shares a port the DFP way (first aclName serves) and says who is shadowed', async (t) => {
      const { app } = await control(t)
      assert.equal((await app.inject(dfp('serviceName=b&reqMode=tcp&srcPort=6000&port=1'))).statusCode, 200)
      const res = await app.inject(dfp('serviceName=a&reqMode=tcp&srcPort=6000&port=2'))
      assert.equal(res.statusCode, 200, res.body)
      assert.deepEqual(res.json().warnings, ['TCP port 6000 asked by "b" is shadowed: "a" holds it (Docker Flow Proxy order: aclName, else service name)'])
    })
  })
}
