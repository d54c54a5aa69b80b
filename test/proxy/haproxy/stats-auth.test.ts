/**
 * The admin listener of a real HAProxy with and without TETHER_STATS_AUTH: the stats page asks
 * for the password when one is set; health checks and Prometheus never do.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { request } from 'undici'
import { resolveSettings } from '../../../src/proxy/haproxy/settings.ts'
import { createTestProxy } from '../../helpers/haproxy.ts'

const AUTH = 'stats:0123456789abcdef0123'
const basic = (credentials: string): string => `Basic ${Buffer.from(credentials).toString('base64')}`

async function get(url: string, authorization?: string): Promise<{ status: number; body: string; realm: string | undefined }> {
  const res = await request(url, { headers: authorization === undefined ? {} : { authorization }, headersTimeout: 5000 })
  const body = await res.body.text()
  return { status: res.statusCode, body, realm: res.headers['www-authenticate'] as string | undefined }
}

describe('HAProxy stats page (admin listener)', () => {
  it('with statsAuth: /stats answers 401 without the password and with a wrong one, 200 with it; /healthz, /readyz, /metrics stay open', async (t) => {
    const proxy = await createTestProxy(t, { statsAuth: AUTH })
    await proxy.engine.apply({ version: 1, routes: [] })
    const none = await get(`${proxy.adminUrl}/stats`)
    assert.equal(none.status, 401)
    assert.match(String(none.realm), /Basic realm="Tether"/)
    assert.equal((await get(`${proxy.adminUrl}/stats`, basic('stats:wrong-password-000'))).status, 401)
    const ok = await get(`${proxy.adminUrl}/stats`, basic(AUTH))
    assert.equal(ok.status, 200)
    assert.match(ok.body, /Statistics Report/)
    assert.equal((await get(`${proxy.adminUrl}/healthz`)).status, 200)
    assert.equal((await get(`${proxy.adminUrl}/readyz`)).body, 'ready')
    assert.match((await get(`${proxy.adminUrl}/metrics`)).body, /haproxy_process_/)
  })

  it('without statsAuth: the stats page is open (the admin port must then stay unpublished)', async (t) => {
    const proxy = await createTestProxy(t)
    await proxy.engine.apply({ version: 1, routes: [] })
    const open = await get(`${proxy.adminUrl}/stats`)
    assert.equal(open.status, 200)
    assert.match(open.body, /Statistics Report/)
  })

  it('refuses a statsAuth HAProxy would misread (space, quote, #, short password), naming the setting', () => {
    for (const bad of ['stats:pass word 12345', 'stats:"0123456789abc', 'stats:0123456789#abc', 'stats:short', 'nocolon0123456789', 'us er:0123456789abcdef']) {
      assert.throws(() => resolveSettings({ stateDir: '/tmp/x', cookieKey: 'cookie-key-123', statsAuth: bad }), /haproxy engine setting statsAuth must be user:password/, bad)
    }
    assert.equal(resolveSettings({ stateDir: '/tmp/x', cookieKey: 'cookie-key-123', statsAuth: AUTH }).statsAuth, AUTH)
  })
})
