/**
 * Refusals show their reason, through a real HAProxy: a request refused by a route's address rule
 * (403), rate limit (429), body limit (413) or basic authentication (401) has `refused` set to ip,
 * rate, size or auth in
 * its access-log line, and is counted once in tether_route_refused_requests_total{service,reason};
 * a request let through has `refused: ""` and counts nothing.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { normalizeRoute } from '../../src/contracts/route.ts'
import { startLogMetrics } from '../../src/proxy/log-metrics.ts'
import { startRouteMetrics } from '../../src/proxy/route-metrics.ts'
import { startBackend } from '../helpers/backends.ts'
import { createTestProxy, waitFor } from '../helpers/haproxy.ts'
import { valueOf } from '../helpers/prometheus-text.ts'

/** crypt(3) SHA-512 of 's3cret' (openssl passwd -6 -salt tethersalt s3cret). */
const S3CRET_HASH = '$6$tethersalt$igDKEU2kQB0/sdrV3JlyBanTfVltpwmxDdT780GrialRN11kHhMXKN0Sp1sPnRq95/CzpK0fl8.FOSqDXQgNN.'

describe('refusals with their reason, through a real HAProxy', () => {
  it('writes the reason in the access log line and counts it per route and reason', async (t) => {
    const logMetrics = await startLogMetrics()
    t.after(() => logMetrics.close())
    // The standard-output copy of the log goes to a file this test reads.
    const dir = await mkdtemp(join(tmpdir(), 'tether-refusals-'))
    const logPath = join(dir, 'access.log')
    const logFd = openSync(logPath, 'w')
    t.after(async () => {
      closeSync(logFd)
      await rm(dir, { recursive: true, force: true })
    })
    const proxy = await createTestProxy(t, { accessLog: { format: 'json', metricsAddress: logMetrics.address }, accessLogOutput: logFd })
    t.after(() => proxy.stop())
    const metrics = await startRouteMetrics(proxy.engine, undefined, logMetrics)
    t.after(() => metrics.close())
    const backend = await startBackend({ name: 'a' })
    t.after(() => backend.close())

    const endpoints = [backend.address]
    await proxy.engine.apply({
      version: 1,
      routes: [
        // Only 127.0.0.2 may come in: this test's requests (from 127.0.0.1) are refused.
        normalizeRoute({ serviceName: 'inside', destinations: [{ servicePath: ['/inside'], port: 80 }], endpoints, ipAllow: ['127.0.0.2/32'] }),
        normalizeRoute({ serviceName: 'limited', destinations: [{ servicePath: ['/limited'], port: 80 }], endpoints, rateLimit: 1, rateLimitBurst: 2 }),
        normalizeRoute({ serviceName: 'upload', destinations: [{ servicePath: ['/upload'], port: 80 }], endpoints, bodyLimit: 10 }),
        normalizeRoute({ serviceName: 'private', destinations: [{ servicePath: ['/private'], port: 80 }], endpoints, auth: { users: [{ name: 'admin', passwordHash: S3CRET_HASH }] } }),
      ],
    })

    const get = async (path: string, id: string, headers: Record<string, string> = {}): Promise<number> => {
      const res = await request(`${proxy.url}${path}`, { headers: { 'x-request-id': id, ...headers } })
      await res.body.dump()
      return res.statusCode
    }
    assert.equal(await get('/inside/x', 'ip-1'), 403)
    // Up to 2 at once, then refused: sent until one is (bounded; a slow machine may let a third through).
    const limited: number[] = []
    for (let i = 0; i < 20 && !limited.includes(429); i++) limited.push(await get('/limited/x', `rate-${i}`))
    assert.ok(limited.includes(429), `a 429 among ${limited.join(',')}`)
    assert.ok(limited.slice(0, -1).every((s) => s === 200), 'the requests before it went through')
    const upload = await request(`${proxy.url}/upload/x`, { method: 'POST', headers: { 'x-request-id': 'size-1' }, body: 'x'.repeat(11) })
    await upload.body.dump()
    assert.equal(upload.statusCode, 413)
    assert.equal(await get('/private/x', 'auth-1'), 401)
    assert.equal(await get('/private/x', 'auth-ok', { authorization: `Basic ${Buffer.from('admin:s3cret').toString('base64')}` }), 200)

    // The log lines: one a request, the refused ones with their reason, the others with "".
    const ids = ['ip-1', ...limited.map((_s, i) => `rate-${i}`), 'size-1', 'auth-1', 'auth-ok']
    const lines = await waitFor('a log line per request', async () => {
      const parsed = readFileSync(logPath, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>)
      const byId = new Map(parsed.map((l) => [l.request_id, l]))
      return ids.every((id) => byId.has(id)) ? byId : undefined
    })
    assert.deepEqual(
      ids.map((id) => [id, lines.get(id)?.status, lines.get(id)?.service, lines.get(id)?.refused]),
      [['ip-1', 403, 'inside', 'ip'], ...limited.map((s, i) => [`rate-${i}`, s, 'limited', s === 429 ? 'rate' : '']), ['size-1', 413, 'upload', 'size'], ['auth-1', 401, 'private', 'auth'], ['auth-ok', 200, 'private', '']],
    )

    // The counters: one a refusal, by route and reason; nothing for the requests let through.
    const text = await waitFor('the refusals counted', async () => {
      const res = await request(`${proxy.adminUrl}/metrics/tether`)
      const body = await res.body.text()
      return valueOf(body, 'tether_route_refused_requests_total', { service: 'private', reason: 'auth' }) === 1 ? body : undefined
    }, 15_000, 100)
    assert.equal(valueOf(text, 'tether_route_refused_requests_total', { service: 'inside', reason: 'ip' }), 1)
    assert.equal(valueOf(text, 'tether_route_refused_requests_total', { service: 'limited', reason: 'rate' }), 1)
    assert.equal(valueOf(text, 'tether_route_refused_requests_total', { service: 'upload', reason: 'size' }), 1)
    assert.equal(valueOf(text, 'tether_route_refused_requests_total', { service: 'limited', reason: 'ip' }), undefined, 'no reason the route did not refuse for')
    assert.equal(valueOf(text, 'tether_route_request_duration_seconds_count', { service: 'private' }), 2, 'both private requests seen, one refused')
  })
})
