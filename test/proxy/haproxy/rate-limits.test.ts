/**
 * Per-route rate limits (rateLimit, rateLimitBurst, rateLimitTotal) through a real HAProxy: clients
 * on different loopback addresses (127.0.0.0/8 binds on Linux) send requests one after another; past
 * its budget a client gets 429 with Retry-After while another client, and another route, are served.
 * The budgets are set so that a whole test takes a small part of the counting window: HAProxy counts
 * over a sliding window, and a window that ended in the middle of a burst could let one request more
 * through, which the assertions allow only where it can happen (the request right after the budget).
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { normalizeRoute } from '../../../src/contracts/route.ts'
import { render } from '../../../src/proxy/haproxy/render.ts'
import { closeBackends, startBackends } from '../../helpers/backends.ts'
import { createTestProxy, type TestProxy } from '../../helpers/haproxy.ts'

/** One GET over a fresh connection from `source`: the status and Retry-After. */
async function from(proxy: TestProxy, source: string, path: string): Promise<{ status: number; retryAfter?: string }> {
  const req = httpRequest(`${proxy.url}${path}`, { localAddress: source, headers: { connection: 'close' }, timeout: 10_000 })
  req.end()
  const [res] = (await once(req, 'response')) as [IncomingMessage]
  res.resume()
  await once(res, 'end')
  const retryAfter = res.headers['retry-after']
  return retryAfter === undefined ? { status: res.statusCode ?? 0 } : { status: res.statusCode ?? 0, retryAfter }
}

async function statuses(proxy: TestProxy, source: string, path: string, count: number): Promise<Array<{ status: number; retryAfter?: string }>> {
  const out = []
  for (let i = 0; i < count; i++) out.push(await from(proxy, source, path))
  return out
}

const at = (endpoint: string) => [
  // 1 a second on average, 10 at once: a window of 10 s.
  normalizeRoute({ serviceName: 'api', destinations: [{ servicePath: ['/api'], port: 80 }], endpoints: [endpoint], rateLimit: 1, rateLimitBurst: 10 }),
  normalizeRoute({ serviceName: 'shared', destinations: [{ servicePath: ['/shared'], port: 80 }], endpoints: [endpoint], rateLimitTotal: 3 }),
  normalizeRoute({ serviceName: 'free', destinations: [{ servicePath: ['/free'], port: 80 }], endpoints: [endpoint] }),
]

describe('per-route rate limits through HAProxy', () => {
  it('answers 429 with Retry-After to a client past its burst, and serves another client and another route meanwhile', async (t) => {
    const backends = await startBackends(1)
    t.after(() => closeBackends(backends))
    const proxy = await createTestProxy(t)
    t.after(() => proxy.stop())
    await proxy.engine.apply({ version: 1, routes: at(backends[0]!.address) })

    const first = await statuses(proxy, '127.0.0.4', '/api/x', 12)
    assert.deepEqual(first.slice(0, 10).map((a) => a.status), Array(10).fill(200), 'the burst of 10 is served')
    assert.deepEqual(first[11], { status: 429, retryAfter: '10' }, 'past the burst: 429, retry after the 10 s window')
    assert.deepEqual((await from(proxy, '127.0.0.5', '/api/x')).status, 200, 'another client has a budget of its own')
    assert.deepEqual((await statuses(proxy, '127.0.0.4', '/free', 3)).map((a) => a.status), [200, 200, 200], 'a route without a limit serves the limited client')
  })

  it('limits the total of every client with rateLimitTotal', async (t) => {
    const backends = await startBackends(1)
    t.after(() => closeBackends(backends))
    const proxy = await createTestProxy(t)
    t.after(() => proxy.stop())
    await proxy.engine.apply({ version: 1, routes: at(backends[0]!.address) })
    // Five clients, one request each, at once: three a second in total.
    const answers = await Promise.all(['127.0.0.11', '127.0.0.12', '127.0.0.13', '127.0.0.14', '127.0.0.15'].map((source) => from(proxy, source, '/shared')))
    const served = answers.filter((a) => a.status === 200).length
    const refused = answers.filter((a) => a.status === 429)
    assert.ok(served >= 3 && served <= 4, `three served (a window ending among them: four); got ${JSON.stringify(answers)}`)
    assert.equal(served + refused.length, 5, 'the others are refused')
    assert.ok(refused.every((a) => a.retryAfter === '1'), 'with Retry-After: 1')
  })

  it('renders one table per route, counting only what it let through', () => {
    const config = render({ version: 1, routes: at('127.0.0.1:1') }, { stateDir: '/tmp/x', listen: ':80', adminListen: ':8404', cookieKey: 'k'.repeat(16), secureCookie: false, maxconn: 100, hardStopAfterMs: 0, maxReloads: 5, nbthread: undefined }).config
    assert.ok(config.includes('backend tether.rate.api\n    stick-table type ipv6 size 100k expire 20000ms store gpc0_rate(10000ms)\n'), config)
    assert.ok(config.includes('backend tether.ratetotal.shared\n    stick-table type integer size 1 expire 60s store gpc0_rate(1s)\n'))
    assert.ok(config.includes('    http-request deny deny_status 429 hdr Retry-After 10 if { sc1_gpc0_rate ge 10 }\n    http-request sc-inc-gpc0(1)\n'))
    assert.ok(!config.includes('tether.rate.free'), 'no table for a route without a limit')
  })
})
