/**
 * `tether proxy` as an operator starts it: it serves what the control plane says and stops
 * cleanly; wrong settings and a missing HAProxy fail at once, clearly.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'undici'
import { closeBackends, startBackends, type BackendReply } from '../helpers/backends.ts'
import { waitFor } from '../helpers/haproxy.ts'
import { freePort } from '../helpers/redis-server.ts'
import { PROXY_TOKEN, reconfigureQuery, startControl } from './harness.ts'

async function runProxy(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'proxy'], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
  clearTimeout(timer)
  return { code, stderr }
}

describe('tether proxy (process)', () => {
  it('becomes ready, serves a route registered on the control plane, and stops HAProxy on SIGTERM', async (t) => {
    const control = await startControl(t)
    const backends = await startBackends(1, { prefix: 'web-' })
    t.after(() => closeBackends(backends))
    const dir = await mkdtemp(join(tmpdir(), 'tether-main-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    const [port, admin, tls] = [await freePort(), await freePort(), await freePort()]
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'proxy'], {
      env: {
        PATH: process.env.PATH ?? '',
        TETHER_CONTROL_URL: control.url,
        TETHER_PROXY_TOKEN: PROXY_TOKEN,
        TETHER_COOKIE_KEY: 'cookie-key-for-main-test',
        TETHER_PROXY_ID: 'main-test',
        TETHER_PROXY_LISTEN: `127.0.0.1:${port}`,
        TETHER_ADMIN_LISTEN: `127.0.0.1:${admin}`,
        TETHER_PROXY_LISTEN_TLS: `127.0.0.1:${tls}`,
        TETHER_STATE_DIR: dir,
        TETHER_DNS: '127.0.0.1:1',
        TETHER_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let stderr = ''
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    t.after(() => {
      if (child.exitCode === null) child.kill('SIGKILL')
    })
    const get = async (url: string): Promise<{ status: number; text: string }> => {
      const res = await request(url, { headersTimeout: 5000 })
      return { status: res.statusCode, text: await res.body.text() }
    }
    await waitFor('the admin listener to say ready', async () => ((await get(`http://127.0.0.1:${admin}/readyz`)).status === 200 ? true : undefined), 90_000)

    const res = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'web', path: '/web', endpoints: [backends[0]!.address] })}&wait=converged&timeout=10`)
    assert.equal(res.status, 200, `${JSON.stringify(res.body)}\n${stderr}`)
    const through = await get(`http://127.0.0.1:${port}/web`)
    assert.equal(through.status, 200)
    assert.equal((JSON.parse(through.text) as BackendReply).instance, 'web-1')
    // The per-route metrics, served by the agent through the admin listener, count it under the route's name.
    const metrics = await waitFor('the request in /metrics/tether', async () => {
      const m = await get(`http://127.0.0.1:${admin}/metrics/tether`)
      return m.status === 200 && /^tether_route_requests_total\{service="web",code_class="2xx"\} 1$/m.test(m.text) ? m.text : undefined
    }, 10_000)
    assert.match(metrics, /^tether_proxy_config_version 1$/m)
    const proxies = (await control.api('GET', '/v1/proxies')).body.proxies as Array<{ id: string; version: number; status: string; haproxyVersion: string }>
    assert.deepEqual(proxies.map((p) => [p.id, p.version, p.status]), [['main-test', 1, 'ok']])
    assert.match(proxies[0]?.haproxyVersion ?? '', /HAProxy/i)

    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
    const [code] = (await once(child, 'exit')) as [number | null]
    clearTimeout(timer)
    assert.equal(code, 0, stderr)
    await assert.rejects(request(`http://127.0.0.1:${port}/web`, { headersTimeout: 2000 }), /ECONNREFUSED/)
  })

  it('exits non-zero naming the variable when the configuration is wrong', async () => {
    const { code, stderr } = await runProxy({ TETHER_CONTROL_URL: 'http://127.0.0.1:9', TETHER_PROXY_TOKEN: 't', TETHER_COOKIE_KEY: 'cookie-key-1', TETHER_DNS_INTERVAL_MS: 'often' })
    assert.equal(code, 78)
    assert.match(stderr, /invalid configuration: TETHER_DNS_INTERVAL_MS: .*integer/)
  })

  it('exits non-zero and says how to install HAProxy when it is missing', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'tether-main-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    const { code, stderr } = await runProxy({
      TETHER_CONTROL_URL: 'http://127.0.0.1:9',
      TETHER_PROXY_TOKEN: 't',
      TETHER_COOKIE_KEY: 'cookie-key-1',
      TETHER_STATE_DIR: dir,
      TETHER_HAPROXY_BIN: join(dir, 'no-haproxy-here'),
    })
    assert.equal(code, 69)
    assert.match(stderr, /cannot start HAProxy/)
    assert.match(stderr, /apt-get install (-y )?haproxy/)
  })
})
