/**
 * Docker Flow Swarm Listener's notifications, replayed exactly as its code builds them
 * (docker-flow-swarm-listener, service/parameters.go, service/notifier.go):
 * - the parameters: every `com.df.*` label of the service with the prefix cut, except the
 *   notify label itself (DF_NOTIFY_LABEL, filtered out by MinifySwarmService), plus
 *   `serviceName`, `replicas` (not for global services), `distribute=true` unless a label
 *   gives it; a remove carries the labels, `serviceName` and `distribute`;
 * - encoded with Go's url.Values.Encode (keys sorted, QueryEscape: space as '+', everything but
 *   letters, digits and - _ . ~ percent-encoded) and appended to DF_NOTIFY_*_SERVICE_URL;
 * - sent with the configured method (GET by default; PUT, POST or DELETE can be set) and no
 *   body, by Go's HTTP client, which turns the URL's userinfo into Basic credentials;
 * - its success rule: a create is done on 200 or 409, a remove only on 200 (else 50 retries).
 * Against a real listening control plane.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { request } from 'undici'
import { API_TOKEN, startControl } from './harness.ts'

/** Go's url.QueryEscape. */
export function goQueryEscape(s: string): string {
  let out = ''
  for (const byte of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(byte)
    if (/[A-Za-z0-9\-_.~]/.test(c)) out += c
    else if (c === ' ') out += '+'
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

/** Go's url.Values.Encode for single values: sorted by key. */
export function goEncode(params: Record<string, string>): string {
  return Object.keys(params)
    .sort()
    .map((k) => `${goQueryEscape(k)}=${goQueryEscape(params[k]!)}`)
    .join('&')
}

interface SwarmServiceMini {
  name: string
  labels: Record<string, string>
  replicas?: number // undefined: global
}

const NOTIFY_LABEL = 'com.df.notify'

function labelParams(ssm: SwarmServiceMini): Record<string, string> {
  const params: Record<string, string> = {}
  for (const [k, v] of Object.entries(ssm.labels)) {
    if (k === NOTIFY_LABEL || !k.startsWith('com.df.')) continue
    const key = k.slice('com.df.'.length)
    if (key.length > 0) params[key] = v
  }
  const stack = ssm.labels['com.docker.stack.namespace']
  params.serviceName = stack !== undefined && ssm.labels['com.df.shortName']?.toLowerCase() === 'true' ? ssm.name.replace(new RegExp(`^${stack}_`), '') : ssm.name
  return params
}

/** GetSwarmServiceMiniCreateParameters. */
export function createParams(ssm: SwarmServiceMini): Record<string, string> {
  const params = labelParams(ssm)
  if (ssm.replicas !== undefined) params.replicas = String(ssm.replicas)
  params.distribute ??= 'true'
  return params
}

/** GetSwarmServiceMiniRemoveParameters. */
export function removeParams(ssm: SwarmServiceMini): Record<string, string> {
  const params = labelParams(ssm)
  params.distribute ??= 'true'
  return params
}

/** Notifier.Create / Notifier.Remove: the URL's own query re-encoded, then '&' and the parameters; userinfo as Basic auth. */
async function notify(method: string, address: string, params: Record<string, string>): Promise<{ status: number; body: string; url: string }> {
  const url = new URL(address)
  const current = goEncode(Object.fromEntries(url.searchParams))
  const query = current.length > 0 ? `${current}&${goEncode(params)}` : goEncode(params)
  const headers: Record<string, string> = { 'user-agent': 'Go-http-client/1.1', 'accept-encoding': 'gzip' }
  if (url.username !== '') headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`
  const target = `${url.protocol}//${url.host}${url.pathname}?${query}`
  const res = await request(target, { method: method as 'GET', headers: method === 'GET' ? headers : { ...headers, 'content-length': '0' } })
  return { status: res.statusCode, body: await res.body.text(), url: target }
}

const created = (status: number): boolean => status === 200 || status === 409
const removed = (status: number): boolean => status === 200

// Realistic services of a DFP stack: go-demo with DFP's and Docker Flow Monitor's labels, a
// monitoring-only exporter, and a global service with a domain and no path.
const goDemo: SwarmServiceMini = {
  name: 'go-demo_main',
  replicas: 3,
  labels: {
    'com.docker.stack.namespace': 'go-demo',
    'com.df.notify': 'true',
    'com.df.shortName': 'true',
    'com.df.distribute': 'true',
    'com.df.servicePath': '/demo',
    'com.df.port': '8080',
    'com.df.reqPathSearchReplace': '/demo/v1/,/demo/',
    'com.df.addResHeader': 'X-Served-By tether',
    'com.df.sessionType': 'sticky-server',
    'com.df.scrapePort': '8080',
    'com.df.alertName.1': 'mem_limit',
    'com.df.alertIf.1': '@service_mem_limit:0.8',
    'com.df.alertFor.1': '5m',
    'com.df.alertName.2': 'resp_time',
    'com.df.alertIf.2': '@resp_time_above:0.1,5m,0.99',
  },
}
const exporter: SwarmServiceMini = { name: 'node-exporter', labels: { 'com.df.notify': 'true', 'com.df.scrapePort': '9100', 'com.df.alertName': 'node_mem', 'com.df.alertIf': '@node_mem_limit:0.8' } }
const site: SwarmServiceMini = { name: 'site', labels: { 'com.df.notify': 'true', 'com.df.serviceDomain': 'Site.Example.com', 'com.df.port': '80', 'com.df.users': 'admin:s3cret pass' } }

describe("Docker Flow Swarm Listener's notifications, as its code sends them", () => {
  for (const [createMethod, removeMethod] of [
    ['GET', 'GET'],
    ['PUT', 'DELETE'],
    ['POST', 'POST'],
    ['PUT', 'PUT'],
  ] as const) {
    it(`creates and removes with ${createMethod}/${removeMethod}, Basic credentials from the URL (the user name is the actor), 409 and 200 where DFSL needs them`, async (t) => {
      const { app, store } = await startControl(t)
      const address = await app.listen({ port: 0, host: '127.0.0.1' })
      const base = new URL(address)
      const createUrl = `http://ci:${encodeURIComponent(API_TOKEN)}@${base.host}/v1/docker-flow-proxy/reconfigure`
      const removeUrl = `http://ci:${encodeURIComponent(API_TOKEN)}@${base.host}/v1/docker-flow-proxy/remove`

      const demo = await notify(createMethod, createUrl, createParams(goDemo))
      assert.ok(created(demo.status), `${demo.url}: ${demo.status} ${demo.body}`)
      assert.equal(demo.status, 200)
      const demoAnswer = JSON.parse(demo.body)
      assert.equal(demoAnswer.warnings, undefined, 'bookkeeping and monitoring labels pass without a warning')
      assert.equal(demoAnswer.route.serviceName, 'main', 'shortName cut the stack name')
      assert.deepEqual(demoAnswer.route.destinations, [{ servicePath: ['/demo'], port: 8080, pathRewrite: [{ search: '/demo/v1/', replace: '/demo/' }] }])
      assert.equal(demoAnswer.route.sticky, true)

      const monitored = await notify(createMethod, createUrl, createParams(exporter))
      assert.ok(created(monitored.status), `${monitored.status} ${monitored.body}`)
      assert.equal(monitored.status, 409)
      assert.equal(JSON.parse(monitored.body).code, 'NOTHING_TO_ROUTE')

      const siteAnswer = await notify(createMethod, createUrl, { ...createParams({ ...site, replicas: undefined }) })
      assert.equal(siteAnswer.status, 200, siteAnswer.body)
      const siteRoute = JSON.parse(siteAnswer.body).route
      assert.deepEqual([siteRoute.serviceDomain, siteRoute.destinations], [['site.example.com'], [{ servicePath: ['/'], port: 80 }]])
      assert.ok(!siteAnswer.body.includes('s3cret'))

      const [first] = await store.changes(0, 1)
      assert.equal(first?.actor, 'ci')
      assert.equal(first?.source, 'dfp')

      // The same notification again (DFSL re-sends on every service update): nothing changes.
      const again = await notify(createMethod, createUrl, createParams(goDemo))
      assert.equal(JSON.parse(again.body).changed, false)

      const gone = await notify(removeMethod, removeUrl, removeParams(goDemo))
      assert.ok(removed(gone.status), `${gone.url}: ${gone.status} ${gone.body}`)
      assert.equal(JSON.parse(gone.body).removed.serviceName, 'main')
      assert.equal(JSON.parse(gone.body).warnings, undefined)
      const neverRouted = await notify(removeMethod, removeUrl, removeParams(exporter))
      assert.ok(removed(neverRouted.status), `${neverRouted.status} ${neverRouted.body}`)
      assert.equal(JSON.parse(neverRouted.body).removed, false)
      assert.deepEqual((await store.snapshot()).routes.map((r) => r.serviceName), ['site'])
    })
  }

  it('refuses a wrong token or a user name that is not the token’s name (401), storing nothing', async (t) => {
    const { app, store } = await startControl(t)
    const address = await app.listen({ port: 0, host: '127.0.0.1' })
    const host = new URL(address).host
    for (const userinfo of [`ci:wrong-token`, `someone-else:${API_TOKEN}`, `ci:`]) {
      const res = await notify('GET', `http://${userinfo}@${host}/v1/docker-flow-proxy/reconfigure`, createParams(goDemo))
      assert.equal(res.status, 401, userinfo)
      assert.equal(JSON.parse(res.body).code, 'UNAUTHORIZED')
    }
    assert.equal(await store.version(), 0)
  })

  it('encodes like Go: sorted keys, + for spaces, %XX for the rest', () => {
    assert.equal(goEncode({ b: 'x y', a: '@service_mem_limit:0.8', 'alertIf.1': '/a,/b' }), 'a=%40service_mem_limit%3A0.8&alertIf.1=%2Fa%2C%2Fb&b=x+y')
  })
})
