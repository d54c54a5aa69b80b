/**
 * Spare backends probed with requests a browser would not send but a client can: a route served
 * from a spare must answer as the same route on its own backend (a fresh start, no spares) does.
 * Requests are written on a raw socket, so the Host and Cookie headers are exactly as given.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readdir, readFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import fc from 'fast-check'
import type { ConfigSnapshot } from '../../../src/contracts/config-snapshot.ts'
import { normalizeRoute } from '../../../src/contracts/route.ts'
import { closeBackends, startBackends, type BackendReply } from '../../helpers/backends.ts'
import { startDnsServer } from '../../helpers/dns-server.ts'
import { createTestProxy, route, waitFor, type TestProxy } from '../../helpers/haproxy.ts'
import { freePort } from '../../helpers/redis-server.ts'

const SPARES = { spareFromRoutes: 1, spareBackends: 2 }
/** Runs a command without blocking the event loop (the backends answer from this process). */
const run = promisify(execFile)

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

    // HTTP/2 (prior knowledge, as curl sends it): the cookie split over two header fields, which
    // HAProxy joins into one before the spare's rules read it.
    for (const [cookie, task] of [...values].map(([task, value]) => [`${ck}=${value}`, task] as const)) {
      for (const p of [fresh, proxy]) {
        const { stdout } = await run('curl', ['-s', '-i', '--max-time', '10', '--http2-prior-knowledge', '-H', 'Cookie: lang=en', '-H', `Cookie: ${cookie}`, `${p.url}/shop`])
        const [head = '', body = ''] = stdout.split('\r\n\r\n')
        assert.match(head, /^HTTP\/2 200/)
        assert.doesNotMatch(head, new RegExp(`set-cookie: ${ck.replace(/\./g, '\\.')}=`, 'i'), 'pinned: no new cookie')
        const reply = JSON.parse(body) as BackendReply
        assert.equal(reply.instance, task, p === proxy ? 'spare' : 'own backend')
        assert.equal(reply.headers.cookie, 'lang=en')
      }
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

  it('a route in a spare through its life: tasks from DNS come and go without a reload, the route goes, the spare takes another route, HAProxy dies and is restarted, and the next change is served', async (t) => {
    const hosts = ['127.0.0.2', '127.0.0.3', '127.0.0.4']
    const port = await freePort()
    const tasks = await startBackends(3, { hosts, port, prefix: 'task-' })
    t.after(() => closeBackends(tasks))
    const others = await startBackends(2, { prefix: 'app-' })
    t.after(() => closeBackends(others))
    const dns = await startDnsServer({ 'tasks.web': hosts.slice(0, 2) })
    t.after(() => dns.close())
    hosts.forEach((h, i) => dns.setName(h, `web.${i + 1}.task${i + 1}.ingress`))
    const settings = { resolvers: [dns.address], dnsIntervalMs: 200, restartBackoffMs: { min: 50, max: 500 } }
    // One spare of each kind: the second sticky route can only have the first one's.
    const proxy = await createTestProxy(t, { ...settings, spareFromRoutes: 1, spareBackends: 1 })
    const fresh = await createTestProxy(t, settings)
    const base = route({ serviceName: 'base', paths: ['/base'], endpoints: [others[0]!.address] })
    const web = route({ serviceName: 'web', paths: ['/web'], sticky: true, port })
    await proxy.engine.apply({ version: 1, routes: [base] })
    await proxy.engine.apply({ version: 2, routes: [base, web] })
    await fresh.engine.apply({ version: 2, routes: [base, web] })
    assert.equal(proxy.engine.counters.reloads, 1, 'web took the sticky spare')
    await allUp(proxy, 2)
    await allUp(fresh, 2)
    // health(): the placed route under its own name, never a spare.
    const served = async (p: TestProxy): Promise<Array<[string, number]>> => (await p.engine.health()).map((h) => [h.serviceName, h.up] as [string, number]).sort()
    assert.deepEqual(await served(proxy), [
      ['base', 1],
      ['web', 2],
    ])

    /** The cookie each task gets, on `p`: task → `TETHER_web=value`. */
    const cookies = async (p: TestProxy, count: number): Promise<Map<string, string>> => {
      const out = new Map<string, string>()
      for (let i = 0; i < 30 && out.size < count; i++) {
        const a = await ask(p.port, '/web', [['Host', 'a']])
        const c = a.setCookies.find((x) => x.startsWith('TETHER_web='))
        assert.ok(c !== undefined, `no cookie from ${a.instance}`)
        out.set(a.instance, c)
      }
      assert.equal(out.size, count)
      return out
    }
    // A third task appears: a server of the spare, without a reload, with the cookie value every proxy gives it.
    dns.set('tasks.web', hosts)
    await waitFor('three tasks on both', async () => ((await served(proxy)).some(([s, up]) => s === 'web' && up === 3) && (await fresh.engine.health()).some((h) => h.serviceName === 'web' && h.up === 3) ? true : undefined))
    assert.equal(proxy.engine.counters.reloads, 1)
    const own = await cookies(fresh, 3)
    assert.deepEqual(await cookies(proxy, 3), own)
    for (const [task, cookie] of own) assert.equal((await ask(proxy.port, '/web', [['Host', 'a'], ['Cookie', cookie]])).instance, task)
    // One goes: its server leaves the spare; a client pinned to it moves, and is told so.
    dns.set('tasks.web', hosts.slice(1))
    await waitFor('task-1 gone', async () => ((await served(proxy)).some(([s, up]) => s === 'web' && up === 2) ? true : undefined))
    const moved = await ask(proxy.port, '/web', [['Host', 'a'], ['Cookie', own.get('task-1')!]])
    assert.notEqual(moved.instance, 'task-1')
    assert.deepEqual(moved.setCookies, [own.get(moved.instance)])

    // The route goes: 404 at once, nothing listed for it, no reload.
    await proxy.engine.apply({ version: 3, routes: [base] })
    assert.equal((await ask(proxy.port, '/web', [['Host', 'a']])).status, 404)
    assert.deepEqual(await served(proxy), [['base', 1]])
    // Another sticky route takes the freed spare: its own cookie name; web's cookie is just another cookie to it.
    const shop = route({ serviceName: 'shop', paths: ['/shop'], sticky: true, endpoints: others.map((b) => b.address) })
    const v4: ConfigSnapshot = { version: 4, routes: [base, shop] }
    await proxy.engine.apply(v4)
    await fresh.engine.apply(v4)
    assert.equal(proxy.engine.counters.reloads, 1, 'shop took the freed spare')
    await allUp(proxy, 2)
    await allUp(fresh, 2)
    const first = await ask(proxy.port, '/shop', [['Host', 'a']])
    const shopCookie = first.setCookies.find((c) => c.startsWith('TETHER_shop='))
    assert.ok(shopCookie !== undefined, JSON.stringify(first.setCookies))
    assert.equal((await ask(fresh.port, '/shop', [['Host', 'a'], ['Cookie', shopCookie]])).instance, first.instance, 'the value any proxy gives that task')
    const webCookie = own.get('task-2')!
    const withWeb = await ask(proxy.port, '/shop', [['Host', 'a'], ['Cookie', `${webCookie}; ${shopCookie}`]])
    assert.equal(withWeb.instance, first.instance)
    assert.equal(withWeb.appCookie, webCookie)

    // HAProxy dies: the supervisor restarts it from the configuration file, the route still in its spare.
    const master = proxy.engine.process!.pid!
    process.kill(master, 'SIGKILL')
    await waitFor('restarted', async () => (proxy.engine.process!.restarts === 1 && proxy.engine.process!.pid !== master ? true : undefined))
    await waitFor('serving again', async () => ((await ask(proxy.port, '/base', [['Host', 'a']]).catch(() => undefined))?.instance === 'app-1' ? true : undefined))
    const pinned = await ask(proxy.port, '/shop', [['Host', 'a'], ['Cookie', shopCookie]])
    assert.equal(pinned.instance, first.instance)
    assert.deepEqual(pinned.setCookies, [])
    // The next change after the restart (runtime API or reload, whichever the engine can) is served, the pinned client kept.
    const plain = route({ serviceName: 'plain', paths: ['/plain'], endpoints: [others[1]!.address] })
    await proxy.engine.apply({ version: 5, routes: [base, shop, plain] })
    await waitFor('plain served', async () => ((await ask(proxy.port, '/plain', [['Host', 'a']])).instance === 'app-2' ? true : undefined))
    assert.equal((await ask(proxy.port, '/shop', [['Host', 'a'], ['Cookie', shopCookie]])).instance, first.instance)
    assert.deepEqual(await served(proxy), [
      ['base', 1],
      ['plain', 1],
      ['shop', 2],
    ])
  })

  it('random tables: after new routes are added (from spares where they fit), every (host, path, user agent) probe answers as on a proxy without spares', async (t) => {
    const backends = await startBackends(6, { prefix: 'r' })
    t.after(() => closeBackends(backends))
    const proxy = await createTestProxy(t, SPARES)
    const plain = await createTestProxy(t)
    const paths = fc.subarray(['/', '/a', '/a/b', '/b', '/ab'], { minLength: 1, maxLength: 2 })
    const shape = fc.record({
      paths,
      domains: fc.constantFrom<string[]>([], [], ['x.example.com'], ['y.example.com'], ['x.example.com', 'y.example.com'], ['*.example.com']),
      sticky: fc.boolean(),
      // A discriminator: a rule of its own (never in a spare), which spare prefixes must rank against.
      userAgent: fc.constantFrom<string | undefined>(undefined, undefined, undefined, 'probe'),
    })
    // New routes of the kind a spare takes (no wildcard, no discriminator); the table before has every kind.
    const spareable = fc.record({
      paths,
      domains: fc.constantFrom<string[]>([], ['x.example.com'], ['y.example.com'], ['x.example.com', 'y.example.com']),
      sticky: fc.boolean(),
      userAgent: fc.constant(undefined),
    })
    // Route i is served by backend r<i+1> alone, so an answer names the route that took the request.
    const routeOf = (i: number, s: { paths: string[]; domains: string[]; sticky: boolean; userAgent: string | undefined }) =>
      normalizeRoute({
        serviceName: `r${i + 1}`,
        destinations: [{ servicePath: s.paths, port: 80, ...(s.userAgent === undefined ? {} : { userAgent: [s.userAgent] }) }],
        serviceDomain: s.domains,
        sticky: s.sticky,
        endpoints: [backends[i]!.address],
      })
    let version = 0
    let placed = 0
    await fc.assert(
      fc.asyncProperty(fc.array(shape, { minLength: 1, maxLength: 3 }), fc.array(spareable, { minLength: 1, maxLength: 3 }), async (before, added) => {
        const v1 = before.map((s, i) => routeOf(i, s))
        const v2: ConfigSnapshot = { version: version + 2, routes: [...v1, ...added.map((s, i) => routeOf(before.length + i, s))] }
        await proxy.engine.apply({ version: ++version, routes: v1 })
        const reloads = proxy.engine.counters.reloads
        await proxy.engine.apply(v2)
        if (proxy.engine.counters.reloads === reloads) placed++
        await plain.engine.apply(v2)
        version++
        await allUp(proxy, v2.routes.length)
        await allUp(plain, v2.routes.length)
        for (const host of ['x.example.com', 'Y.Example.COM.', 'z.example.com'])
          for (const path of ['/', '/a', '/a/b/c', '/ab', '/b/x'])
            for (const userAgent of ['probe', 'curl']) {
              const headers: Array<[string, string]> = [
                ['Host', host],
                ['User-Agent', userAgent],
              ]
              const expected = (await ask(plain.port, path, headers)).instance
              assert.equal((await ask(proxy.port, path, headers)).instance, expected, `${host} ${path} ${userAgent}\n${JSON.stringify(v2.routes)}`)
            }
      }),
      { numRuns: 8, seed: 42 },
    )
    assert.ok(placed >= 4, `${placed} of 8 runs served their new routes from spares`)
  })

  it('routes placed in spares and removed again over the runtime API leave only the map files the served configuration names (each change writes new ones)', async (t) => {
    const backends = await startBackends(1, { prefix: 'app-' })
    t.after(() => closeBackends(backends))
    const proxy = await createTestProxy(t, SPARES)
    const base = route({ serviceName: 'base', paths: ['/base'], endpoints: [backends[0]!.address] })
    await proxy.engine.apply({ version: 1, routes: [base] })
    let version = 1
    for (let i = 0; i < 6; i++) {
      const added = route({ serviceName: `new${i}`, paths: [`/new${i}`], domains: i % 2 === 0 ? [] : [`n${i}.example.com`], sticky: i % 3 === 0, endpoints: [backends[0]!.address] })
      await proxy.engine.apply({ version: ++version, routes: [base, added] })
      assert.equal((await ask(proxy.port, `/new${i}`, [['Host', `n${i}.example.com`]])).instance, 'app-1')
      await proxy.engine.apply({ version: ++version, routes: [base] })
    }
    assert.equal(proxy.engine.counters.reloads, 1, 'every change went over the runtime API')
    const config = await readFile(proxy.engine.paths.config, 'utf8')
    const named = new Set([...config.matchAll(/\/maps\/([^\s),]+)/g)].map((m) => m[1]!))
    assert.ok(named.size >= 4, `maps named: ${[...named].join(' ')}`)
    assert.deepEqual((await readdir(join(proxy.stateDir, 'maps'))).sort(), [...named].sort())
  })
})
