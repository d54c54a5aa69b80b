import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { StoreUnavailableError } from '../../src/control/errors.ts'
import { createMemoryRouteStore } from '../../src/control/store/memory-route-store.ts'
import type { RouteStore } from '../../src/control/store/route-store.ts'
import { api, proxy, startControl } from './harness.ts'

/** A memory store whose every call fails the way `failure()` says. */
function failingStore(failure: () => Error): RouteStore {
  const store = createMemoryRouteStore()
  const fail = async (): Promise<never> => {
    throw failure()
  }
  return { ...store, snapshot: fail, version: fail, get: fail, list: fail, put: fail, remove: fail, changes: fail, rollback: fail, ping: fail, putProxy: fail, listProxies: fail }
}

describe('GET /healthz and /readyz', () => {
  it('answers healthz 200 and readyz 200 while the store answers', async (t) => {
    const { app } = await startControl(t)
    assert.equal((await app.inject({ url: '/healthz' })).statusCode, 200)
    const ready = await app.inject({ url: '/readyz' })
    assert.equal(ready.statusCode, 200)
    assert.deepEqual(ready.json(), { status: 'ready' })
  })

  it('answers readyz 503 STORE_UNAVAILABLE (healthz still 200) when the store is down', async (t) => {
    const { app } = await startControl(t, { store: failingStore(() => new StoreUnavailableError('Redis at 10.0.0.7:6379 is not reachable (ECONNREFUSED)')) })
    assert.equal((await app.inject({ url: '/healthz' })).statusCode, 200)
    const ready = await app.inject({ url: '/readyz' })
    assert.equal(ready.statusCode, 503)
    assert.equal(ready.json().code, 'STORE_UNAVAILABLE')
  })
})

describe('when the store is unavailable', () => {
  it('answers writes 503 STORE_UNAVAILABLE without internals (no Redis address)', async (t) => {
    const { app } = await startControl(t, { store: failingStore(() => new StoreUnavailableError('Redis at 10.0.0.7:6379 is not reachable (ECONNREFUSED)')) })
    const res = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=a&servicePath=/a&port=80', headers: api })
    assert.equal(res.statusCode, 503)
    assert.deepEqual(res.json(), { statusCode: 503, code: 'STORE_UNAVAILABLE', error: 'Service Unavailable', message: 'The route store is unavailable. Nothing was changed; retry later.' })
    const metrics = await app.inject({ url: '/metrics' })
    assert.match(metrics.body, /tether_store_errors_total\{operation="PUT \/v1\/reconfigure"\} 1/)
  })
})

describe('errors', () => {
  it('answers an unexpected failure 500 with a generic message, never the internals', async (t) => {
    const { app } = await startControl(t, { store: failingStore(() => new Error('secret internals: /etc/tether/passwd at line 3')) })
    const res = await app.inject({ url: '/v1/routes' })
    assert.equal(res.statusCode, 500)
    assert.deepEqual(res.json(), { statusCode: 500, code: 'INTERNAL_ERROR', error: 'Internal Server Error', message: 'Internal server error' })
  })

  it('answers an unknown endpoint 404 in the same shape', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ url: '/v2/nothing' })
    assert.equal(res.statusCode, 404)
    assert.equal(res.json().code, 'NOT_FOUND')
    assert.deepEqual(Object.keys(res.json()).sort(), ['code', 'error', 'message', 'statusCode'])
  })
})

describe('authentication', () => {
  it('answers 401 UNAUTHORIZED without detail for a missing, wrong, or malformed token', async (t) => {
    const { app, store } = await startControl(t)
    const url = '/v1/reconfigure?serviceName=a&servicePath=/a&port=80'
    for (const authorization of [undefined, 'Bearer wrong', `Bearer ${'x'.repeat(5000)}`, `Basic ${Buffer.from('ci:x').toString('base64')}`, 'Bearer', `Token ${api.authorization.slice(7)}`]) {
      const res = await app.inject({ method: 'PUT', url, headers: authorization === undefined ? {} : { authorization } })
      assert.equal(res.statusCode, 401, String(authorization))
      assert.deepEqual(res.json(), { statusCode: 401, code: 'UNAUTHORIZED', error: 'Unauthorized', message: 'Missing or invalid API token (Authorization: Bearer <token>, or Basic with the token as the password and its name as the user name)' })
    }
    assert.equal(await store.version(), 0)
  })

  it('checks the token before validating the request (no validation details to strangers)', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=%20bad' })
    assert.equal(res.statusCode, 401)
  })

  it('lets everyone read routes, changes, proxies and status without a token', async (t) => {
    const { app } = await startControl(t)
    for (const url of ['/v1/routes', '/v1/changes', '/v1/proxies', '/v1/status', '/healthz', '/readyz', '/metrics', '/openapi.json']) {
      assert.equal((await app.inject({ url })).statusCode, 200, url)
    }
  })

  it("with auth 'off', accepts writes without a token and logs 'anonymous' as the actor", async (t) => {
    const { app, store } = await startControl(t, { auth: { apiTokens: 'off' } })
    const res = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=a&servicePath=/a&port=80' })
    assert.equal(res.statusCode, 200)
    assert.equal((await store.changes(0, 1))[0]?.actor, 'anonymous')
    assert.equal((await app.inject({ url: '/v1/config' })).statusCode, 200)
  })
})

describe('GET /metrics', () => {
  it('exposes requests, routes, version, long-poll waiters, live proxies and store errors in Prometheus text', async (t) => {
    const { app } = await startControl(t)
    await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=a&servicePath=/a&port=80', headers: api })
    await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=b&servicePath=/b&port=80', headers: api })
    await app.inject({ method: 'PUT', url: '/v1/proxies/p1', headers: proxy, payload: { version: 2, status: 'ok', lastError: null, refusedRoutes: [], node: 'n', haproxyVersion: '2.6', startedAt: '2024-01-01T00:00:00Z', backends: [] } })
    const res = await app.inject({ url: '/metrics' })
    assert.equal(res.statusCode, 200)
    assert.match(String(res.headers['content-type']), /^text\/plain/)
    assert.match(res.body, /tether_http_requests_total\{method="PUT",route="\/v1\/reconfigure",status_code="200"\} 2/)
    assert.match(res.body, /^tether_routes 2$/m)
    assert.match(res.body, /^tether_config_version 2$/m)
    assert.match(res.body, /^tether_long_poll_waiters 0$/m)
    assert.match(res.body, /^tether_live_proxies 1$/m)
    assert.match(res.body, /tether_store_errors_total/)
  })

  it("reports each proxy's old HAProxy workers from its heartbeat: in /v1/proxies, /v1/status and per proxy in /metrics", async (t) => {
    const { app } = await startControl(t)
    const oldWorkers = { count: 2, connections: 7, oldestAgeSeconds: 95, maxCount: 10, drainTimeoutSeconds: 3600, workers: [{ pid: 41, reloads: 2, ageSeconds: 95, connections: 5 }, { pid: 57, reloads: 1, ageSeconds: 30, connections: 2 }] }
    const beat = { version: 0, status: 'ok', lastError: null, refusedRoutes: [], node: 'n', haproxyVersion: '2.6', startedAt: '2024-01-01T00:00:00Z', backends: [] }
    assert.equal((await app.inject({ method: 'PUT', url: '/v1/proxies/p1', headers: proxy, payload: { ...beat, oldWorkers } })).statusCode, 204)
    assert.equal((await app.inject({ method: 'PUT', url: '/v1/proxies/p2', headers: proxy, payload: beat })).statusCode, 204)
    const listed = (await app.inject({ url: '/v1/proxies' })).json() as { proxies: Array<{ id: string; oldWorkers?: unknown }> }
    assert.deepEqual(listed.proxies.find((p) => p.id === 'p1')?.oldWorkers, oldWorkers)
    const status = (await app.inject({ url: '/v1/status' })).json() as { proxies: Array<{ id: string; oldWorkers?: unknown }> }
    assert.deepEqual(status.proxies.find((p) => p.id === 'p1')?.oldWorkers, oldWorkers)
    assert.equal(status.proxies.find((p) => p.id === 'p2')?.oldWorkers, undefined, 'a proxy that did not report them has none invented')
    const metrics = (await app.inject({ url: '/metrics' })).body
    assert.match(metrics, /^tether_proxy_old_workers\{proxy="p1"\} 2$/m)
    assert.match(metrics, /^tether_proxy_old_worker_connections\{proxy="p1"\} 7$/m)
    assert.match(metrics, /^tether_proxy_old_worker_oldest_seconds\{proxy="p1"\} 95$/m)
    assert.doesNotMatch(metrics, /proxy="p2"/)
    const bad = await app.inject({ method: 'PUT', url: '/v1/proxies/p3', headers: proxy, payload: { ...beat, oldWorkers: { ...oldWorkers, count: -1 } } })
    assert.equal(bad.statusCode, 400)
    assert.match(bad.body, /oldWorkers/)
  })

  it('keeps one registry per app, so two apps in one process do not clash', async (t) => {
    const one = await startControl(t)
    const two = await startControl(t)
    await one.app.inject({ url: '/healthz' })
    await two.app.inject({ url: '/readyz' })
    const metrics = (await two.app.inject({ url: '/metrics' })).body
    assert.match(metrics, /route="\/readyz"/, 'the second app counts its own requests')
    assert.doesNotMatch(metrics, /route="\/healthz"/, "and none of the first app's")
  })
})
