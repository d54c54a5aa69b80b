/**
 * Spare backends probed with requests a browser would not send but a client can: a route served
 * from a spare must answer as the same route on its own backend (a fresh start, no spares) does.
 * Requests are written on a raw socket, so the Host and Cookie headers are exactly as given.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import type { ConfigSnapshot } from '../../../src/contracts/config-snapshot.ts'
import { normalizeRoute } from '../../../src/contracts/route.ts'
import { closeBackends, startBackends, type BackendReply } from '../../helpers/backends.ts'
import { createTestProxy, route, waitFor, type TestProxy } from '../../helpers/haproxy.ts'

const SPARES = { spareFromRoutes: 1, spareBackends: 2 }

interface Answer {
  status: number
  /** The backend instance that answered, or the status when HAProxy answered itself. */
  instance: string
  /** The path the application saw. */
  path: string
  /** The Cookie header the application saw. */
  appCookie: string
  /** `name=value` of each Set-Cookie but the application's own session cookie. */
  setCookies: string[]
}

/** One HTTP/1.1 request on a new connection, with exactly these header lines. */
async function ask(port: number, target: string, headers: ReadonlyArray<[string, string]>): Promise<Answer> {
  const text = await new Promise<string>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let out = ''
    socket.setTimeout(10_000, () => socket.destroy(new Error(`no answer to ${target}`)))
    socket.on('data', (d: Buffer) => (out += d.toString('latin1')))
    socket.on('end', () => resolve(out))
    socket.on('error', reject)
    socket.write(`GET ${target} HTTP/1.1\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}Connection: close\r\n\r\n`)
  })
  const split = text.indexOf('\r\n\r\n')
  const head = text.slice(0, split).split('\r\n')
  const status = Number(head[0]?.split(' ')[1])
  const setCookies = head
    .filter((l) => /^set-cookie:/i.test(l))
    .map((l) => l.slice(l.indexOf(':') + 1).trim().split(';')[0]!)
    .filter((c) => !c.startsWith('sid='))
  if (status !== 200) return { status, instance: String(status), path: '', appCookie: '', setCookies }
  const body = JSON.parse(text.slice(split + 4)) as BackendReply
  return { status, instance: body.instance, path: body.path, appCookie: body.headers.cookie ?? '', setCookies }
}

/** Waits until every server of every route is up on `proxy`. */
async function allUp(proxy: TestProxy, routes: number): Promise<void> {
  await waitFor('every server up', async () => {
    const health = await proxy.engine.health()
    return health.length >= routes && health.every((h) => h.down === 0 && h.up > 0) ? true : undefined
  })
}

describe('spare backends answer as a route’s own backend does', () => {
  it('a slash in the Host header does not reach a spare’s exact-host route on paths it does not have, nor hide other routes', async (t) => {
    const backends = await startBackends(4, { prefix: 'app-' })
    t.after(() => closeBackends(backends))
    const at = (i: number): string[] => [backends[i - 1]!.address]
    const v1 = [
      route({ serviceName: 'api', paths: ['/api'], endpoints: at(1) }),
      route({ serviceName: 'wild', paths: ['/w'], domains: ['*.example.com'], endpoints: at(3) }),
      // A route without a host but with a discriminator: a rule of its own, which a longer spare prefix outranks.
      normalizeRoute({ serviceName: 'agent', destinations: [{ servicePath: ['/'], port: 80, userAgent: ['probe'] }], endpoints: at(4) }),
    ]
    const v2: ConfigSnapshot = { version: 2, routes: [...v1, route({ serviceName: 'xshop', paths: ['/shop'], domains: ['x.example.com'], endpoints: at(2) })] }
    const proxy = await createTestProxy(t, SPARES)
    await proxy.engine.apply({ version: 1, routes: v1 })
    await proxy.engine.apply(v2)
    assert.equal(proxy.engine.counters.reloads, 1, 'xshop took a spare')
    const fresh = await createTestProxy(t)
    await fresh.engine.apply(v2)
    await allUp(proxy, 4)
    await allUp(fresh, 4)
    const probes: Array<[host: string, path: string, userAgent: string, expected: string]> = [
      ['x.example.com', '/shop/a', 'curl', 'app-2'],
      // xshop serves /shop only: its application's /admin is not reachable through the proxy.
      ['x.example.com/shop', '/admin', 'curl', '404'],
      ['x.example.com/shop', '/', 'curl', '404'],
      ['x.example.com/shop/', '/api', 'curl', 'app-1'],
      // A host ending in .example.com with a slash in it: the wildcard's, as without spares.
      ['x.example.com/shop/.example.com', '/w/1', 'curl', 'app-3'],
      // The discriminated route's '/' is not outranked by a spare prefix the host only pretends to have.
      ['x.example.com/shop', '/', 'probe', 'app-4'],
    ]
    for (const [host, path, userAgent, expected] of probes) {
      const headers: Array<[string, string]> = [
        ['Host', host],
        ['User-Agent', userAgent],
      ]
      const fromFresh = await ask(fresh.port, path, headers)
      assert.equal(fromFresh.instance, expected, `${host} ${path} ${userAgent} (own backends)`)
      const fromSpare = await ask(proxy.port, path, headers)
      assert.equal(fromSpare.instance, expected, `${host} ${path} ${userAgent} (spares)`)
      assert.equal(fromSpare.path, fromFresh.path)
    }
  })
})
