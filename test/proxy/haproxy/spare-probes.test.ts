/**
 * Spare backends probed with requests a browser would not send but a client can: a route served
 * from a spare must answer as the same route on its own backend (a fresh start, no spares) does.
 * Requests are written on a raw socket, so the Host and Cookie headers are exactly as given.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import fc from 'fast-check'
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

  it('a sticky spare reads its route’s cookie in every header shape HAProxy’s own cookie parser reads (separators, spaces, the first of two) as a route’s own backend does', async (t) => {
    const backends = await startBackends(3, { prefix: 'shop-' })
    t.after(() => closeBackends(backends))
    const base = route({ serviceName: 'base', paths: ['/base'], endpoints: [backends[0]!.address] })
    // A name with the characters a service name may have: none of them may act as a regex.
    const name = 'shop.v1-x_y'
    const shop = route({ serviceName: name, paths: ['/shop'], sticky: true, endpoints: backends.map((b) => b.address) })
    const proxy = await createTestProxy(t, SPARES)
    await proxy.engine.apply({ version: 1, routes: [base] })
    await proxy.engine.apply({ version: 2, routes: [base, shop] })
    assert.equal(proxy.engine.counters.reloads, 1, 'the sticky route took a spare')
    const fresh = await createTestProxy(t)
    await fresh.engine.apply({ version: 2, routes: [base, shop] })
    await allUp(proxy, 2)
    await allUp(fresh, 2)
    const ck = `TETHER_${name}`
    // Each task's cookie value, as any proxy issues it.
    const values = new Map<string, string>()
    for (let i = 0; i < 30 && values.size < 3; i++) {
      const a = await ask(fresh.port, '/shop', [['Host', 'a']])
      values.set(a.instance, a.setCookies.find((c) => c.startsWith(`${ck}=`))!.slice(ck.length + 1))
    }
    assert.equal(values.size, 3)
    const [v1, v2, v3] = ['shop-1', 'shop-2', 'shop-3'].map((i) => values.get(i)!) as [string, string, string]

    /** What a user notices: pinned (to which task) or balanced with a new cookie, and the Cookie header the application sees. */
    const seen = async (port: number, header: string): Promise<{ pinned: string; appCookie: string; issued: string[] }> => {
      const a = await ask(port, '/shop', [
        ['Host', 'a'],
        ['Cookie', header],
      ])
      assert.equal(a.status, 200)
      const issued = a.setCookies.map((c) => c.split('=')[0]!)
      return { pinned: issued.length === 0 ? a.instance : '(balanced)', appCookie: a.appCookie, issued }
    }
    const table: Array<[header: string, pinned: string]> = [
      [`${ck}=${v2}`, 'shop-2'],
      [`a=1;${ck}=${v2};b=2`, 'shop-2'],
      [`a=1;\t${ck}=${v3}`, 'shop-3'],
      [`a=1, ${ck}=${v2}`, 'shop-2'],
      [`a=1,${ck}=${v3}`, 'shop-3'],
      [`${ck} = ${v2}`, 'shop-2'],
      [`a=b=c; ${ck} =${v1}`, 'shop-1'],
      [`x${ck}=${v3}; ${ck}=${v2}`, 'shop-2'],
      [`x${ck}=${v3}`, '(balanced)'],
      [`${ck}x=${v3}`, '(balanced)'],
      [`${ck.toLowerCase()}=${v3}`, '(balanced)'],
      [`${ck}="${v2}"`, '(balanced)'],
      [`${ck}=; a=1`, '(balanced)'],
      [`${ck}=bogus`, '(balanced)'],
    ]
    for (const [header, pinned] of table) {
      const own = await seen(fresh.port, header)
      assert.equal(own.pinned, pinned, `${header} (own backend)`)
      assert.deepEqual(await seen(proxy.port, header), own, `${header} (spare)`)
    }
    // The route's cookie twice: the first one counts (the application may see the second).
    for (const [header, pinned] of [
      [`${ck}=${v3}; ${ck}=${v2}`, 'shop-3'],
      [`a=1; ${ck}=${v1}; b=2; ${ck}=${v3}`, 'shop-1'],
    ] as const) {
      assert.equal((await seen(fresh.port, header)).pinned, pinned, `${header} (own backend)`)
      assert.equal((await seen(proxy.port, header)).pinned, pinned, `${header} (spare)`)
    }

    // Any header with the route's cookie at most once: the same as the route's own backend.
    const cookie = fc.record({
      name: fc.constantFrom('a', `x${ck}`, `${ck}x`, ck.toLowerCase(), 'TETHER_base'),
      eq: fc.constantFrom('=', ' =', '= ', ' = '),
      value: fc.constantFrom(v1, v2, v3, 'bogus', '', `"${v1}"`, 'b=c'),
    })
    const separator = fc.constantFrom('; ', ';', ', ', ',', ' ; ', ';\t')
    const header = fc
      .record({
        others: fc.array(fc.tuple(separator, cookie), { minLength: 0, maxLength: 4 }),
        own: fc.option(fc.record({ at: fc.nat(4), separator, eq: fc.constantFrom('=', ' =', '= '), value: fc.constantFrom(v1, v2, v3, 'bogus', '') }), { nil: undefined }),
      })
      .map(({ others, own }) => {
        const parts = others.map(([sep, c]) => [sep, `${c.name}${c.eq}${c.value}`] as const)
        if (own !== undefined) parts.splice(Math.min(own.at, parts.length), 0, [own.separator, `${ck}${own.eq}${own.value}`])
        return parts.map(([sep, text], i) => (i === 0 ? text : `${sep}${text}`)).join('')
      })
      .filter((h) => h !== '')
    await fc.assert(
      fc.asyncProperty(header, async (h) => {
        assert.deepEqual(await seen(proxy.port, h), await seen(fresh.port, h), h)
      }),
      { numRuns: 60, seed: 8 },
    )
  })
})
