/**
 * The change log and the other public reads with every route feature in the table: nothing
 * answers 500 on a hidden password hash, no hash reaches a reader without a token, the proxies
 * still get the hashes they need, and no plain password is answered anywhere.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { AuthSchema, DestinationSchema, RouteSchema, SniDestinationSchema, TcpDestinationSchema, type Route } from '../../src/contracts/route.ts'
import { HIDDEN_HASH } from '../../src/control/app.ts'
import { api, proxy, startControl } from './harness.ts'

const PASSWORD = 's3cretpassw0rd'
const BODY_PASSWORD = 'b0dy-passw0rd-x'
// A crypt(3) hash given as such (usersPassEncrypted / passwordHash): must not reach public readers either.
const GIVEN_HASH = '$6$saltsalt$8u1nMQYyfEAQs4Cm1kCJ3VbFmbFMxRUIMsgXnAHj5xq9wTg.w0yWKiMDB/VOQ7PzrlqIF3sznKEBgsfxsJYIS/'

/** A JSON route with every field of the route contract (contracts/route.ts), checked below against the schema. */
const everything = {
  destinations: [
    {
      servicePath: ['/all', '/every'],
      port: 8080,
      serviceDomain: ['all.example.com'],
      userAgent: ['iphone'],
      serviceHeader: [{ name: 'X-Tenant', value: 'blue' }],
      listener: 'https',
      servicePathExclude: ['/all/private'],
      pathRewrite: [{ search: '^/all/(.*)', replace: '/\\1' }],
      stripPrefix: true,
      allowedMethods: ['GET', 'POST'],
      deniedMethods: ['DELETE'],
      ignoreAuthorization: true,
      timeoutServer: 30,
      timeoutTunnel: 3600,
      redirectFromDomain: ['old.example.com'],
    },
    { servicePath: ['/all-admin'], port: 8081 },
  ],
  serviceDomain: ['everything.example.com'],
  sticky: true,
  stickyCookie: 'EVERY',
  endpoints: ['127.0.0.1:3001'],
  httpsOnly: true,
  redirectWhenHttpProto: true,
  httpsRedirectCode: 308,
  acme: true,
  hstsMaxAge: 31536000,
  hstsIncludeSubDomains: true,
  hstsPreload: true,
  addReqHeader: [{ name: 'X-Add-Req', value: 'a' }],
  setReqHeader: [{ name: 'X-Set-Req', value: '%[dst_port]' }],
  delReqHeader: ['X-Del-Req'],
  addResHeader: [{ name: 'X-Add-Res', value: 'b' }],
  setResHeader: [{ name: 'X-Set-Res', value: 'c' }],
  delResHeader: ['X-Powered-By'],
  auth: {
    users: [
      { name: 'alice', password: BODY_PASSWORD },
      { name: 'carol', passwordHash: GIVEN_HASH },
    ],
    usersSecret: 'admins',
    usersSecretEncrypted: true,
    usersFromSecret: ['bob'],
    realm: 'Every feature',
  },
  isDefaultBackend: true,
  ipAllow: ['10.0.0.0/8', '2001:db8::/32'],
  ipDeny: ['10.1.0.0/16'],
  compressionAlgo: ['gzip'],
  compressionType: ['text/html'],
  backendScheme: 'h2',
  backendCaSecret: 'internal_ca',
  healthCheckPath: '/healthz',
  healthCheckInterval: 5,
  healthCheckStatus: 200,
  healthCheckSlowStart: 30,
  rateLimit: 10,
  rateLimitBurst: 50,
  rateLimitTotal: 1000,
  bodyLimit: 1048576,
}

/** TCP and SNI destinations (basic auth is refused beside them, so they are a route of their own). */
const streams = {
  tcp: [{ srcPort: 6379, port: 6379, sendProxyProtocol: true, timeoutClient: 60, timeoutServer: 60 }],
  sni: [{ serverName: ['db.example.com'], port: 5432, sendProxyProtocol: true }],
  sticky: true,
  // HTTP refused rather than redirected: exclusive with httpsOnly's redirect, so here.
  destinations: [{ servicePath: ['/streams'], port: 80 }],
  denyHttp: true,
  // TLS to the tasks without verification: exclusive with the other route's backendCaSecret.
  sslVerifyNone: true,
}

const fieldsOf = (schema: { properties: Record<string, unknown> }): string[] => Object.keys(schema.properties).sort()
const hashesIn = (text: string): string[] => text.match(/\$(?:1|2[abxy]|5|6|y|gy|7)\$[./0-9A-Za-z$=,]{8,}/g) ?? []

describe('the change log with every route feature', () => {
  it('GET /v1/changes, /v1/routes, /v1/status and the DFP config answer 200 with hashes hidden; GET /v1/config gives proxies the hashes; no password anywhere', async (t) => {
    const { app } = await startControl(t)
    const put = async (method: string, url: string, payload?: Record<string, unknown>): Promise<void> => {
      const res = await app.inject({ method: method as 'PUT', url, headers: api, ...(payload === undefined ? {} : { payload }) })
      assert.equal(res.statusCode, 200, `${method} ${url}: ${res.body}`)
    }
    // The reproduction (DFP users=, with aclName) and a route with every feature, changed and removed,
    // so that hashes sit in both 'before' and 'after' of the log.
    await put('PUT', `/v1/reconfigure?serviceName=app&servicePath=/app&port=80&users=admin:${PASSWORD}`)
    await put('GET', `/v1/docker-flow-proxy/reconfigure?serviceName=dfp&servicePath=/dfp&port=80&aclName=00-dfp&users=admin:${PASSWORD}&usersPassEncrypted=false`)
    await put('PUT', '/v1/routes/everything', everything)
    await put('PUT', '/v1/routes/everything', { ...everything, hstsMaxAge: 63072000 })
    await put('PUT', '/v1/routes/streams', streams)
    await put('PUT', '/v1/routes/gone', { servicePath: ['/gone'], port: 80, auth: { users: [{ name: 'dave', passwordHash: GIVEN_HASH }] } })
    await put('DELETE', '/v1/routes/gone')
    await put('DELETE', '/v1/remove?serviceName=app')
    // A release: a canary of another service's path, then a takeover with drain (the old route keeps 'drain').
    await put('PUT', '/v1/reconfigure?serviceName=blue&servicePath=/blue&port=80&sticky=true')
    await put('PUT', '/v1/reconfigure?serviceName=canary&servicePath=/blue&port=80&canary=30')
    await put('PUT', '/v1/reconfigure?serviceName=green&servicePath=/blue&port=80&takeover=true&drain=600')

    // The test holds every field of the contract: a field added to the contract and missing here fails.
    const config = await app.inject({ url: '/v1/config', headers: proxy })
    assert.equal(config.statusCode, 200, config.body)
    const routes = (JSON.parse(config.body) as { routes: Route[] }).routes
    const all = routes.find((r) => r.serviceName === 'everything')
    const dfp = routes.find((r) => r.serviceName === 'dfp')
    const tcpSni = routes.find((r) => r.serviceName === 'streams')
    const canary = routes.find((r) => r.serviceName === 'canary')
    const draining = routes.find((r) => r.serviceName === 'blue')
    assert.ok(all !== undefined && dfp !== undefined && tcpSni !== undefined && canary?.canary === 30 && draining?.drain?.to === 'green', config.body)
    assert.deepEqual([...new Set([...Object.keys(all), ...Object.keys(dfp), ...Object.keys(tcpSni), ...Object.keys(canary), ...Object.keys(draining)])].sort(), fieldsOf(RouteSchema))
    assert.deepEqual(Object.keys(all.destinations[0]!).sort(), fieldsOf(DestinationSchema))
    assert.deepEqual(Object.keys(tcpSni.tcp![0]!).sort(), fieldsOf(TcpDestinationSchema))
    assert.deepEqual(Object.keys(tcpSni.sni![0]!).sort(), fieldsOf(SniDestinationSchema))
    assert.deepEqual(Object.keys(all.auth!).sort(), fieldsOf(AuthSchema))
    // Proxies need the hashes (they render them): the proxy token reads them.
    assert.equal(hashesIn(config.body).length, 3, config.body)
    assert.ok(config.body.includes(GIVEN_HASH))

    const reads: Array<[string, Record<string, string>]> = [
      ['/v1/changes?since=0', {}],
      ['/v1/changes?since=0', api],
      ['/v1/changes?since=0', proxy],
      ['/v1/changes?since=0&limit=1', {}],
      ['/v1/routes', {}],
      ['/v1/routes/everything', {}],
      ['/v1/routes/dfp', api],
      ['/v1/routes/streams', {}],
      ['/v1/status', {}],
      ['/v1/docker-flow-proxy/config', {}],
    ]
    for (const [url, headers] of reads) {
      const res = await app.inject({ url, headers })
      assert.equal(res.statusCode, 200, `GET ${url}: ${res.body}`)
      assert.deepEqual(hashesIn(res.body), [], `GET ${url} shows no password hash`)
      assert.ok(!res.body.includes(PASSWORD) && !res.body.includes(BODY_PASSWORD), `GET ${url} shows no password`)
    }

    // What the change log shows: every change, users named, hashes hidden.
    const changes = (await app.inject({ url: '/v1/changes?since=0' })).json() as { version: number; changes: Array<{ operation: string; serviceName: string; before: Route | null; after: Route | null }> }
    assert.deepEqual(
      changes.changes.map((c) => `${c.operation} ${c.serviceName}`),
      ['put app', 'put dfp', 'put everything', 'put everything', 'put streams', 'put gone', 'remove gone', 'remove app', 'put blue', 'put canary', 'put blue', 'put green'],
    )
    const removedApp = changes.changes[7]!
    assert.equal(removedApp.after, null)
    assert.deepEqual(removedApp.before?.auth?.users, [{ name: 'admin', passwordHash: HIDDEN_HASH }])
    const changedAll = changes.changes[3]!
    assert.deepEqual(
      changedAll.after?.auth?.users.map((u) => `${u.name} ${u.passwordHash}`),
      [`alice ${HIDDEN_HASH}`, `carol ${HIDDEN_HASH}`],
    )
    assert.equal(changedAll.before?.hstsMaxAge, 31536000)
    assert.equal(changedAll.after?.hstsMaxAge, 63072000)
    assert.equal(changedAll.after?.auth?.usersSecret, 'admins')
  })
})
