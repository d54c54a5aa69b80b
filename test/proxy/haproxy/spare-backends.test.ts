/**
 * Spare backends: at 10,000 routes a reload takes HAProxy 2.6 two seconds and more, so a large
 * table keeps a few empty backends, and a new route with one plain destination is served from a
 * free one over the runtime API (add server, add map), without a reload. What a user must not
 * notice: the affinity cookie keeps the route's own name, its values are those every other
 * proxy gives (so a client moves between proxies, and across the reload that later gives the
 * route its own backend, without losing its task), and the application never sees it.
 *
 * The threshold is lowered here (spareFromRoutes: 1) so a small table has spares; a large one
 * is bench/scale.ts.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import type { ConfigSnapshot } from '../../../src/contracts/config-snapshot.ts'
import { normalizeRoute, type Route } from '../../../src/contracts/route.ts'
import { closeBackends, startBackends, type BackendReply } from '../../helpers/backends.ts'
import { createClient, createTestProxy, route, waitFor, type TestProxy } from '../../helpers/haproxy.ts'
import { httpsGet } from '../../helpers/https.ts'
import { freePort } from '../../helpers/redis-server.ts'

const SPARES = { spareFromRoutes: 1, spareBackends: 2 }

/** Waits until HAProxy's checks see `up` servers of `serviceName`. */
async function upCount(proxy: TestProxy, serviceName: string, up: number): Promise<void> {
  await waitFor(`${serviceName}: ${up} up`, async () => ((await proxy.engine.health()).some((h) => h.serviceName === serviceName && h.up === up) ? true : undefined))
}

/** One request with exactly this Cookie header (or none); the instance that answered and what the app saw. */
async function ask(url: string, cookie?: string, host?: string): Promise<{ status: number; instance: string; appCookie: string; setCookies: string[] }> {
  const client = createClient({ reuse: false })
  try {
    const reply = await client.get(url, { cookies: false, ...(cookie === undefined ? {} : { headers: { cookie } }), ...(host === undefined ? {} : { host }) })
    const body = reply.body as BackendReply
    return { status: reply.status, instance: reply.status === 200 ? body.instance : String(reply.status), appCookie: body?.headers?.cookie ?? '', setCookies: reply.setCookies }
  } finally {
    await client.close()
  }
}

/** The server lines of backend `name` in a configuration file. */
function serversOf(config: string, name: string): string[] {
  const start = config.indexOf(`\nbackend ${name}\n`)
  assert.ok(start >= 0, `no backend ${name}`)
  const end = config.indexOf('\n\n', start + 1)
  return config.slice(start, end < 0 ? undefined : end).split('\n').filter((l) => l.startsWith('    server '))
}

/** `name=value` of the affinity cookie in a response, or undefined. */
function issued(setCookies: string[], name: string): string | undefined {
  return setCookies.find((c) => c.startsWith(`${name}=`))?.split(';')[0]
}

describe('spare backends: new routes without a reload', () => {
  it('serves a new sticky route from a spare: no reload, its own cookie name and values, honoured by every proxy and across the reload that gives it its own backend', async (t) => {
    const backends = await startBackends(3, { prefix: 'shop-' })
    t.after(() => closeBackends(backends))
    const addresses = backends.map((b) => b.address)
    const proxy = await createTestProxy(t, SPARES)
    // Another replica of the fleet that never had the route in a spare (a fresh start: its own backend).
    const replica = await createTestProxy(t)
    const base = route({ serviceName: 'base', paths: ['/base'], endpoints: [addresses[0]!] })
    const shop = route({ serviceName: 'shop', paths: ['/shop'], sticky: true, endpoints: addresses })

    await proxy.engine.apply({ version: 1, routes: [base] })
    const v2: ConfigSnapshot = { version: 2, routes: [base, shop] }
    await proxy.engine.apply(v2)
    await replica.engine.apply(v2)
    assert.equal(proxy.engine.counters.reloads, 1, 'the new route took a spare: no reload')
    const config = await readFile(proxy.engine.paths.config, 'utf8')
    assert.equal(serversOf(config, 'tether.spare.sticky.1').length, 3)
    assert.doesNotMatch(config, /backend svc_shop_80/)
    await upCount(proxy, 'shop', 3)
    await upCount(replica, 'shop', 3)

    // A new visitor gets the route's own cookie, HttpOnly and SameSite as on any sticky route.
    const first = await ask(`${proxy.url}/shop`)
    assert.equal(first.status, 200)
    const cookie = issued(first.setCookies, 'TETHER_shop')
    assert.ok(cookie !== undefined, `no TETHER_shop cookie in ${JSON.stringify(first.setCookies)}`)
    assert.equal(issued(first.setCookies, 'TETHER_SPARE'), undefined, 'the spare’s internal cookie name leaked')
    assert.match(first.setCookies.join('\n'), /TETHER_shop=[^;]+; path=\/; HttpOnly; SameSite=Lax/)

    // Pinned: 20 requests on one task, the cookie not issued again, and the application never
    // sees it (its own cookies pass).
    for (let i = 0; i < 20; i++) {
      const again = await ask(`${proxy.url}/shop/page/${i}`, `lang=en; ${cookie}`)
      assert.equal(again.instance, first.instance, `request ${i} moved`)
      assert.equal(issued(again.setCookies, 'TETHER_shop'), undefined, 'cookie issued again while pinned')
      assert.equal(again.appCookie, 'lang=en')
    }
    // The same value on the replica reaches the same task, and a cookie from the replica pins on the proxy.
    assert.equal((await ask(`${replica.url}/shop`, cookie)).instance, first.instance)
    const fromReplica = await ask(`${replica.url}/shop`)
    const replicaCookie = issued(fromReplica.setCookies, 'TETHER_shop')
    assert.ok(replicaCookie !== undefined)
    assert.equal((await ask(`${proxy.url}/shop`, replicaCookie)).instance, fromReplica.instance)

    // Exactly the route's cookie counts: another route's cookie holding another task's value,
    // before it in the header, does not move the client.
    const values = new Map<string, string>()
    for (let i = 0; i < 30 && values.size < 3; i++) {
      const r = await ask(`${replica.url}/shop`)
      values.set(r.instance, issued(r.setCookies, 'TETHER_shop')!.split('=')[1]!)
    }
    const other = [...values].find(([instance]) => instance !== first.instance)
    assert.ok(other !== undefined, 'round robin reached a second task')
    assert.equal((await ask(`${proxy.url}/shop`, `TETHER_sho=${other[1]}; TETHER_shopx=${other[1]}; ${cookie}`)).instance, first.instance)
    assert.equal((await ask(`${proxy.url}/shop`, `${cookie.replace('TETHER_shop', 'TETHER_base')}`)).setCookies.some((c) => c.startsWith('TETHER_shop=')), true, 'another route’s cookie is not this one')

    // A structural change reloads, and the route moves to its own backend: the client stays on its task.
    // (A wildcard host needs a rule of its own: no spare.)
    const withDomain = route({ serviceName: 'admin', paths: ['/admin'], domains: ['*.admin.example.com'], endpoints: [addresses[1]!] })
    await proxy.engine.apply({ version: 3, routes: [base, shop, withDomain] })
    assert.equal(proxy.engine.counters.reloads, 2)
    const reloaded = await readFile(proxy.engine.paths.config, 'utf8')
    assert.match(reloaded, /backend svc_shop_80\n/)
    assert.equal(serversOf(reloaded, 'svc_shop_80').length, 3)
    assert.deepEqual(serversOf(reloaded, 'tether.spare.sticky.1'), [], 'the spare is free again')
    await upCount(proxy, 'shop', 3)
    const after = await ask(`${proxy.url}/shop`, cookie)
    assert.equal(after.instance, first.instance)
    assert.equal(issued(after.setCookies, 'TETHER_shop'), undefined)
  })

  it('places plain routes, frees a spare when its route goes, reloads only when the spares run out, and ends where a fresh start ends', async (t) => {
    const backends = await startBackends(3, { prefix: 'app-' })
    t.after(() => closeBackends(backends))
    const [one, two, three] = backends.map((b) => b.address) as [string, string, string]
    const proxy = await createTestProxy(t, SPARES)
    const plain = (name: string, endpoints: string[]): Route => route({ serviceName: name, paths: [`/${name}`], endpoints })
    const base = plain('base', [one])

    await proxy.engine.apply({ version: 1, routes: [base] })
    // Two new routes at once, one of each kind: both placed.
    const a = plain('a', [one, two])
    const b = route({ serviceName: 'b', paths: ['/b'], sticky: true, endpoints: [three] })
    await proxy.engine.apply({ version: 2, routes: [base, a, b] })
    assert.equal(proxy.engine.counters.reloads, 1)
    await upCount(proxy, 'a', 2)
    const seen = new Set<string>()
    for (let i = 0; i < 6; i++) {
      const r = await ask(`${proxy.url}/a`)
      assert.deepEqual(r.setCookies.filter((c) => c.startsWith('TETHER_')), [], 'a route that is not sticky gets no affinity cookie')
      assert.ok(r.setCookies.some((c) => c.startsWith('sid=')), 'the application’s own cookie passes')
      seen.add(r.instance)
    }
    assert.deepEqual([...seen].sort(), ['app-1', 'app-2'])
    assert.equal((await ask(`${proxy.url}/b/x`)).instance, 'app-3')

    // Its endpoints change over the runtime API as any route's do.
    await proxy.engine.apply({ version: 3, routes: [base, plain('a', [three]), b] })
    await waitFor('a served by app-3 only', async () => ((await ask(`${proxy.url}/a`)).instance === 'app-3' ? true : undefined))

    // The route goes: its path answers 404 at once, its spare is free again, no reload.
    await proxy.engine.apply({ version: 4, routes: [base, b] })
    assert.equal((await ask(`${proxy.url}/a`)).status, 404)
    assert.equal((await ask(`${proxy.url}/base`)).instance, 'app-1')
    const c = plain('c', [two])
    const d = plain('d', [one])
    await proxy.engine.apply({ version: 5, routes: [base, b, c, d] })
    assert.equal(proxy.engine.counters.reloads, 1, 'the freed spare and the second one took c and d')
    assert.equal((await ask(`${proxy.url}/c`)).instance, 'app-2')
    assert.equal((await ask(`${proxy.url}/d`)).instance, 'app-1')

    // A third plain route finds no free spare: a reload, which gives every route its own backend.
    const e = plain('e', [three])
    const last: ConfigSnapshot = { version: 6, routes: [base, b, c, d, e] }
    await proxy.engine.apply(last)
    assert.equal(proxy.engine.counters.reloads, 2)
    const config = await readFile(proxy.engine.paths.config, 'utf8')
    for (const name of ['base', 'b', 'c', 'd', 'e']) assert.match(config, new RegExp(`backend svc_${name}_80\\n`))

    // A route with a rule of its own never takes a spare (the spare would not apply the rule).
    const ruled = normalizeRoute({ serviceName: 'f', destinations: [{ servicePath: ['/f'], port: 80, allowedMethods: ['GET'] }], endpoints: [one] })
    await proxy.engine.apply({ version: 7, routes: [...last.routes, ruled] })
    assert.equal(proxy.engine.counters.reloads, 3)
    const client = createClient({ reuse: false })
    t.after(() => client.close())
    assert.equal((await client.get(`${proxy.url}/f`)).status, 200)

    const fresh = await createTestProxy(t)
    await fresh.engine.apply({ version: 7, routes: [...last.routes, ruled] })
    for (const path of ['/base', '/b', '/c', '/d', '/e', '/a', '/nowhere']) {
      assert.equal((await ask(`${proxy.url}${path}`)).instance, (await ask(`${fresh.url}${path}`)).instance, path)
    }
  })

  it('over HTTPS a spare’s affinity cookie is Secure, as on a route’s own backend, and over HTTP it is not', async (t) => {
    const backends = await startBackends(2, { prefix: 'web-' })
    t.after(() => closeBackends(backends))
    const tlsPort = await freePort()
    const proxy = await createTestProxy(t, { ...SPARES, tlsListen: `127.0.0.1:${tlsPort}` })
    const base = route({ serviceName: 'base', paths: ['/base'], endpoints: [backends[0]!.address] })
    await proxy.engine.apply({ version: 1, routes: [base] })
    await proxy.engine.apply({ version: 2, routes: [base, route({ serviceName: 'web', paths: ['/web'], sticky: true, endpoints: backends.map((b) => b.address) })] })
    assert.equal(proxy.engine.counters.reloads, 1)
    await upCount(proxy, 'web', 2)
    const secure = await httpsGet({ port: tlsPort, host: 'web.example.com', path: '/web' })
    const cookie = secure.setCookies.find((c) => c.startsWith('TETHER_web='))
    assert.ok(cookie !== undefined, JSON.stringify(secure.setCookies))
    assert.match(cookie, /; HttpOnly; SameSite=Lax; Secure$/)
    const again = await httpsGet({ port: tlsPort, host: 'web.example.com', path: '/web', headers: { cookie: cookie.split(';')[0]! } })
    assert.equal((again.body as BackendReply).instance, (secure.body as BackendReply).instance)
    const plain = await ask(`${proxy.url}/web`)
    const plainCookie = plain.setCookies.find((c) => c.startsWith('TETHER_web='))
    assert.ok(plainCookie !== undefined)
    assert.doesNotMatch(plainCookie, /Secure/i)
  })

  it('serves new routes with exact hosts from spares in the planner’s order among routes with host rules, wildcards and longer plain prefixes, as a fresh start does', async (t) => {
    const backends = await startBackends(6, { prefix: 'app-' })
    t.after(() => closeBackends(backends))
    const at = (i: number): string[] => [backends[i - 1]!.address]
    const proxy = await createTestProxy(t, SPARES)
    const v1 = [
      route({ serviceName: 'api', paths: ['/api'], endpoints: at(1) }),
      route({ serviceName: 'x-root', paths: ['/'], domains: ['x.example.com'], endpoints: at(2) }),
      route({ serviceName: 'wild', paths: ['/w'], domains: ['*.example.com'], endpoints: at(3) }),
    ]
    await proxy.engine.apply({ version: 1, routes: v1 })
    const v2: ConfigSnapshot = {
      version: 2,
      routes: [
        ...v1,
        route({ serviceName: 'x-shop', paths: ['/shop'], domains: ['x.example.com', 'www.x.example.com'], endpoints: at(4) }),
        route({ serviceName: 'x-w', paths: ['/w'], domains: ['x.example.com'], endpoints: at(5) }),
        route({ serviceName: 'y', paths: ['/'], domains: ['y.example.com'], sticky: true, endpoints: at(6) }),
      ],
    }
    await proxy.engine.apply(v2)
    assert.equal(proxy.engine.counters.reloads, 1, 'the three host routes took spares')
    const config = await readFile(proxy.engine.paths.config, 'utf8')
    assert.doesNotMatch(config, /backend svc_(x-shop|x-w|y)_80/)
    const fresh = await createTestProxy(t)
    await fresh.engine.apply(v2)
    const probes: Array<[string, string, string]> = [
      ['x.example.com', '/shop/cart', 'app-4'], // the spare's longer prefix beats the host's '/'
      ['WWW.X.example.com.', '/shop', 'app-4'], // any case, trailing root dot
      ['x.example.com:8080', '/other', 'app-2'],
      ['x.example.com', '/api/v1', 'app-1'], // a longer plain prefix beats the host's '/'
      ['x.example.com', '/w/1', 'app-5'], // same length: the exact host before the wildcard
      ['z.example.com', '/w/1', 'app-3'],
      ['y.example.com', '/', 'app-6'],
      ['y.example.com', '/shop', 'app-6'],
      ['y.example.com', '/w', 'app-3'], // the wildcard's longer prefix beats y's '/'
      ['y.example.com', '/api', 'app-1'],
      ['z.example.com', '/shop', '404'],
      ['x.example.com', '/shopping', 'app-2'], // whole segments: /shop is no prefix of /shopping
    ]
    for (const [host, path, expected] of probes) {
      await waitFor(`${host}${path} served`, async () => ((await ask(`${fresh.url}${path}`, undefined, host)).instance.startsWith('app-') || expected === '404' ? true : undefined))
      assert.equal((await ask(`${proxy.url}${path}`, undefined, host)).instance, expected, `${host}${path} (spares)`)
      assert.equal((await ask(`${fresh.url}${path}`, undefined, host)).instance, expected, `${host}${path} (fresh start, own backends)`)
    }
    // The sticky one issues its own cookie.
    assert.ok((await ask(`${proxy.url}/`, undefined, 'y.example.com')).setCookies.some((c) => c.startsWith('TETHER_y=')))
    // One goes: its host and path fall back to the routes left, at once and without a reload.
    await proxy.engine.apply({ version: 3, routes: v2.routes.filter((r) => r.serviceName !== 'x-shop') })
    assert.equal((await ask(`${proxy.url}/shop/cart`, undefined, 'x.example.com')).instance, 'app-2')
    assert.equal((await ask(`${proxy.url}/shop`, undefined, 'www.x.example.com')).instance, '404')
    assert.equal((await ask(`${proxy.url}/w/1`, undefined, 'x.example.com')).instance, 'app-5')
    assert.equal(proxy.engine.counters.reloads, 1)
  })
})
