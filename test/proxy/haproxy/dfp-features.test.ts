/**
 * Docker Flow Proxy's HTTP features, as stored routes, through a real HAProxy to real backends:
 * path rewriting, header rules, basic auth, method rules, exclusions, host redirects, the
 * default backend, per-destination domains, User-Agent and header routing, timeouts, and host
 * matching (case, port, trailing dot, DFP's '*example.com').
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server, type Socket } from 'node:net'
import { once } from 'node:events'
import { request } from 'undici'
import { normalizeRoute, type RouteInput } from '../../../src/contracts/route.ts'
import { closeBackends, startBackends, type Backend, type BackendReply } from '../../helpers/backends.ts'
import { createTestProxy, type TestProxy } from '../../helpers/haproxy.ts'

/** crypt(3) SHA-512 of 's3cret' (openssl passwd -6 -salt tethersalt s3cret). */
const S3CRET_HASH = '$6$tethersalt$igDKEU2kQB0/sdrV3JlyBanTfVltpwmxDdT780GrialRN11kHhMXKN0Sp1sPnRq95/CzpK0fl8.FOSqDXQgNN.'
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

describe('Docker Flow Proxy features through HAProxy', () => {
  let proxy: TestProxy
  let backends: Backend[]
  let silent: Server
  let silentPort = 0
  const silentSockets = new Set<Socket>()

  const call = async (path: string, options: { host?: string; method?: string; headers?: Record<string, string> } = {}) => {
    const res = await request(`${proxy.url}${path}`, {
      method: (options.method ?? 'GET') as 'GET',
      headers: { connection: 'close', ...(options.host === undefined ? {} : { host: options.host }), ...options.headers },
    })
    const text = await res.body.text()
    let body: unknown = text
    try {
      body = JSON.parse(text)
    } catch {
      /* not JSON */
    }
    return { status: res.statusCode, headers: res.headers, body: body as BackendReply }
  }
  const reach = async (path: string, options: Parameters<typeof call>[1] = {}): Promise<BackendReply> => {
    const r = await call(path, options)
    assert.equal(r.status, 200, `${options.host ?? ''}${path} answered ${r.status}: ${JSON.stringify(r.body)}`)
    return r.body
  }

  before(async () => {
    backends = await startBackends(10, { prefix: 'b' })
    // A server that accepts and never answers: the timeoutServer test.
    silent = createServer((socket) => {
      socket.on('error', () => {}) // HAProxy resets it after the timeout
      silentSockets.add(socket)
    })
    silent.listen(0, '127.0.0.1')
    await once(silent, 'listening')
    silentPort = (silent.address() as { port: number }).port
    const at = (i: number): string[] => [backends[i]!.address]
    const r = (input: RouteInput) => normalizeRoute(input)
    proxy = await createTestProxy(undefined)
    await proxy.engine.apply({
      version: 1,
      routes: [
        r({ serviceName: 'strip', destinations: [{ servicePath: ['/strip', '/also.strip'], port: 80, stripPrefix: true }], endpoints: at(1) }),
        r({
          serviceName: 'rewrite',
          destinations: [{ servicePath: ['/rw'], port: 80, pathRewrite: [{ search: '^/rw/v1/(.*)', replace: '/api/\\1' }, { search: '^/rw/old', replace: '/new' }] }],
          endpoints: at(2),
        }),
        r({
          serviceName: 'headers',
          destinations: [{ servicePath: ['/h'], port: 80 }],
          endpoints: at(3),
          addReqHeader: [{ name: 'X-Added', value: 'from %[src] at 100% "quoted" $HOME' }],
          setReqHeader: [{ name: 'X-Set', value: 'fixed' }],
          delReqHeader: ['X-Secret'],
          addResHeader: [{ name: 'X-Res-Added', value: 'yes' }],
          setResHeader: [{ name: 'Content-Type', value: 'text/x-tether' }],
          delResHeader: ['Set-Cookie'],
        }),
        r({
          serviceName: 'private',
          destinations: [
            { servicePath: ['/private'], port: 80, allowedMethods: ['GET', 'HEAD'] },
            { servicePath: ['/private/public'], port: 80, ignoreAuthorization: true, deniedMethods: ['DELETE'] },
          ],
          endpoints: at(4),
          auth: { users: [{ name: 'admin', passwordHash: S3CRET_HASH }], realm: 'Private area' },
        }),
        r({ serviceName: 'excl', destinations: [{ servicePath: ['/ex'], port: 80, servicePathExclude: ['/ex/metrics'] }], endpoints: at(5) }),
        r({
          serviceName: 'agents',
          destinations: [
            // One endpoint serves every port here: each destination tags the path to show which one served.
            { servicePath: ['/app'], port: 80, userAgent: ['iPhone', 'Android'], pathRewrite: [{ search: '^/app', replace: '/by-agent' }] },
            { servicePath: ['/app'], port: 81, serviceHeader: [{ name: 'X-Version', value: '3' }], pathRewrite: [{ search: '^/app', replace: '/by-header' }] },
            { servicePath: ['/app'], port: 82, pathRewrite: [{ search: '^/app', replace: '/catch-all' }] },
          ],
          endpoints: at(6),
        }),
        r({
          serviceName: 'domains',
          destinations: [
            { servicePath: ['/'], port: 80, serviceDomain: ['a.example.com'], redirectFromDomain: ['old.example.com'] },
            { servicePath: ['/'], port: 81, serviceDomain: ['*dfp.example'] },
          ],
          endpoints: at(7),
        }),
        r({ serviceName: 'fallback', destinations: [{ servicePath: ['/fallback-only'], port: 80, serviceDomain: ['fb.example'] }], endpoints: at(8), isDefaultBackend: true }),
        // Values starting with '-' (HAProxy would read an ACL option without '--'; found by the fuzz).
        r({
          serviceName: 'dashes',
          destinations: [
            { servicePath: ['/dash'], port: 80, serviceHeader: [{ name: 'X-Tag', value: '-v2' }], pathRewrite: [{ search: '^/dash', replace: '/by-dash-header' }] },
            { servicePath: ['/dash'], port: 81, userAgent: ['-bot'], pathRewrite: [{ search: '^/dash', replace: '/by-dash-agent' }] },
          ],
          endpoints: at(9),
        }),
        r({ serviceName: 'slow', destinations: [{ servicePath: ['/slow'], port: 80, timeoutServer: 1 }], endpoints: [`127.0.0.1:${silentPort}`] }),
      ],
    })
  })
  after(async () => {
    await proxy?.stop()
    await closeBackends(backends ?? [])
    for (const socket of silentSockets) socket.destroy()
    silent?.close()
  })

  it('strips the matched prefix (stripPrefix): /strip/x reaches the service as /x, /strip as /', async () => {
    assert.deepEqual([(await reach('/strip/x?q=1')).path, (await reach('/strip')).path, (await reach('/also.strip/y/z')).path], ['/x?q=1', '/', '/y/z'])
    assert.equal((await reach('/strip/x')).instance, 'b2')
    // '/also.strip' is literal: '.' is not a regex wildcard.
    assert.equal((await reach('/alsoXstrip/y')).path, '/alsoXstrip/y')
  })

  it('rewrites the path with regular expressions in order (reqPathSearchReplace)', async () => {
    assert.equal((await reach('/rw/v1/users?id=2')).path, '/api/users?id=2')
    assert.equal((await reach('/rw/old/thing')).path, '/new/thing')
    assert.equal((await reach('/rw/other')).path, '/rw/other')
  })

  it('adds, sets and deletes request and response headers; only the allowed sample expression is evaluated', async () => {
    const r = await call('/h', { headers: { 'x-secret': 'token', 'x-set': 'client value' } })
    assert.equal(r.status, 200)
    assert.equal(r.body.headers['x-added'], 'from 127.0.0.1 at 100% "quoted" $HOME')
    assert.equal(r.body.headers['x-set'], 'fixed')
    assert.equal(r.body.headers['x-secret'], undefined, 'X-Secret deleted')
    assert.equal(r.headers['x-res-added'], 'yes')
    assert.equal(r.headers['content-type'], 'text/x-tether')
    assert.equal(r.headers['set-cookie'], undefined, "the backend's Set-Cookie deleted")
    assert.equal(r.body.instance, 'b4')
  })

  it('asks for basic-auth credentials, strips them before the service, and leaves ignoreAuthorization destinations open', async () => {
    const none = await call('/private')
    assert.equal(none.status, 401)
    assert.match(String(none.headers['www-authenticate']), /^Basic realm="Private area"/)
    assert.equal((await call('/private', { headers: { authorization: basic('admin', 'wrong') } })).status, 401)
    assert.equal((await call('/private', { headers: { authorization: basic('nobody', 's3cret') } })).status, 401)
    const ok = await reach('/private/x', { headers: { authorization: basic('admin', 's3cret') } })
    assert.equal(ok.instance, 'b5')
    assert.equal(ok.headers.authorization, undefined, 'the credentials do not reach the service')
    assert.equal((await reach('/private/public/x')).instance, 'b5')
  })

  it('refuses methods with 403 as Docker Flow Proxy does (allowedMethods, deniedMethods)', async () => {
    const auth = { authorization: basic('admin', 's3cret') }
    assert.equal((await call('/private', { method: 'POST', headers: auth })).status, 403)
    assert.equal((await call('/private', { method: 'HEAD', headers: auth })).status, 200)
    assert.equal((await call('/private/public', { method: 'DELETE' })).status, 403)
    assert.equal((await reach('/private/public', { method: 'PUT' })).method, 'PUT')
  })

  it('takes excluded paths out of a route (servicePathExclude): they fall through to the next route', async () => {
    assert.equal((await reach('/ex/users')).instance, 'b6')
    assert.equal((await reach('/ex/metrics')).instance, 'b9', 'no other route: the default backend')
    assert.equal((await reach('/ex/metrics/cpu')).instance, 'b9')
    assert.equal((await reach('/ex/metricsx')).instance, 'b6')
  })

  it('routes by User-Agent and by header before the destination without them (userAgent, serviceHeader)', async () => {
    const path = async (headers: Record<string, string>) => (await reach('/app/x', { headers })).path
    assert.equal(await path({ 'user-agent': 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)' }), '/by-agent/x')
    assert.equal(await path({ 'user-agent': 'some android phone' }), '/by-agent/x', 'case-insensitive substring')
    assert.equal(await path({ 'user-agent': 'curl/8', 'x-version': '3' }), '/by-header/x')
    assert.equal(await path({ 'user-agent': 'curl/8', 'x-version': '4' }), '/catch-all/x')
    assert.equal(await path({ 'user-agent': 'curl/8' }), '/catch-all/x')
  })

  it("matches header and User-Agent values that start with '-' (not read as ACL options)", async () => {
    assert.equal((await reach('/dash', { headers: { 'x-tag': '-v2' } })).path, '/by-dash-header')
    assert.equal((await reach('/dash', { headers: { 'user-agent': 'my -bot 1.0' } })).path, '/by-dash-agent')
    // Neither: nothing matches, so the default backend (the 'fallback' route) answers.
    assert.equal((await reach('/dash', { headers: { 'x-tag': 'v2' } })).instance, 'b9')
  })

  it('serves per-destination domains, ignores case, port and the trailing dot, and reads *dfp.example as the name and its subdomains', async () => {
    assert.equal((await reach('/x', { host: 'A.Example.COM.:8080' })).instance, 'b8')
    assert.equal((await reach('/x', { host: 'dfp.example' })).instance, 'b8')
    assert.equal((await reach('/x', { host: 'www.dfp.example.' })).instance, 'b8')
    assert.equal((await reach('/x', { host: 'notdfp.example' })).instance, 'b9', 'not a subdomain: no route, so the default backend')
  })

  it('redirects a host to the destination host with 301, keeping path and query (redirectFromDomain)', async () => {
    const r = await call('/some/page?x=1', { host: 'old.example.com' })
    assert.equal(r.status, 301)
    assert.equal(r.headers.location, 'http://a.example.com/some/page?x=1')
  })

  it('sends what no route matches to the default backend instead of a 404 (isDefaultBackend)', async () => {
    const r = await reach('/nothing/here', { host: 'unknown.example' })
    assert.equal(r.instance, 'b9')
    assert.equal(r.path, '/nothing/here')
  })

  it('times a silent service out after timeoutServer (504)', async () => {
    const r = await call('/slow')
    assert.equal(r.status, 504)
  })
})
