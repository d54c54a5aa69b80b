/**
 * The route planner (src/contracts/route-planner.ts): table-driven precedence and shadowing,
 * and a property that HAProxy's configuration, as rendered, binds exactly what the planner
 * decided and nothing it shadowed.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { normalizeRoute, type Route } from '../../src/contracts/route.ts'
import { bindingKeys, planRoutes } from '../../src/contracts/route-planner.ts'
import { backendName, render } from '../../src/proxy/haproxy/render.ts'
import { resolveSettings } from '../../src/proxy/haproxy/settings.ts'

const route = (serviceName: string, paths: string[], extra: { port?: number; domains?: string[]; aclName?: string; more?: Array<{ servicePath: string[]; port: number }> } = {}): Route =>
  normalizeRoute({
    serviceName,
    destinations: [{ servicePath: paths, port: extra.port ?? 80 }, ...(extra.more ?? [])],
    serviceDomain: extra.domains,
    aclName: extra.aclName,
  })

const served = (routes: Route[]) => planRoutes(routes).http.map((b) => `${b.host}${b.path}→${b.serviceName}:${b.port}`)
const shadowed = (routes: Route[]) => planRoutes(routes).shadowed.map((s) => `${s.host}${s.path} ${s.serviceName}<${s.shadowedBy}`)

describe('route planner: precedence', () => {
  const cases: Array<{ name: string; routes: Route[]; served: string[]; shadowed?: string[] }> = [
    {
      name: 'host rules come before host-less ones; among them, the longest path first',
      routes: [route('any', ['/', '/api/v2']), route('host', ['/api', '/'], { domains: ['a.example.com'] })],
      served: ['a.example.com/api→host:80', 'a.example.com/→host:80', '/→any:80', '/api/v2→any:80'],
    },
    {
      name: 'at equal length, an exact host before a wildcard, and a longer wildcard suffix first',
      routes: [route('wild', ['/x'], { domains: ['*.example.com'] }), route('deep', ['/x'], { domains: ['*.eu.example.com'] }), route('exact', ['/x'], { domains: ['eu.example.com'] })],
      served: ['eu.example.com/x→exact:80', '*.eu.example.com/x→deep:80', '*.example.com/x→wild:80'],
    },
    {
      name: 'one key held twice: the first aclName serves, the other is shadowed',
      routes: [route('alpha', ['/shop']), route('beta', ['/shop'], { aclName: '00-first' })],
      served: ['/shop→beta:80'],
      shadowed: ['/shop alpha<beta'],
    },
    {
      name: 'one key held twice without aclName: the service name decides',
      routes: [route('zeta', ['/shop']), route('eta', ['/shop'])],
      served: ['/shop→eta:80'],
      shadowed: ['/shop zeta<eta'],
    },
    {
      name: 'the same path on other hosts, or host-less, is not a clash',
      routes: [route('a', ['/demo'], { domains: ['a.example.com'] }), route('b', ['/demo'], { domains: ['b.example.com'] }), route('c', ['/demo'])],
      served: ['a.example.com/demo→a:80', 'b.example.com/demo→b:80', '/demo→c:80'],
    },
    {
      name: 'a path given for two ports of one route: the first destination serves, the second is reported',
      routes: [route('svc', ['/a'], { port: 80, more: [{ servicePath: ['/a', '/b'], port: 81 }] })],
      served: ['/a→svc:80', '/b→svc:81'],
      shadowed: ['/a svc<svc'],
    },
  ]
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(served(c.routes), c.served)
      assert.deepEqual(shadowed(c.routes), c.shadowed ?? [])
      assert.deepEqual(served([...c.routes].reverse()), c.served, 'the input order does not matter')
    })
  }

  it('gives every route its binding keys, sorted, one per (host, path)', () => {
    assert.deepEqual(bindingKeys(route('x', ['/b', '/a'], { domains: ['b.io', 'a.io'] })), ['http|a.io|/a', 'http|a.io|/b', 'http|b.io|/a', 'http|b.io|/b'])
    assert.deepEqual(bindingKeys(route('x', ['/'])), ['http||/'])
  })
})

describe('route planner: Docker Flow Proxy discriminators, redirects and the default backend', () => {
  const r = (input: Parameters<typeof normalizeRoute>[0]) => normalizeRoute(input)
  const matchers = (routes: Route[]) =>
    planRoutes(routes).http.map((b) => `${b.host}${b.path}${b.match === undefined ? '' : ` [${[...(b.match.userAgent ?? []).map((u) => `ua:${u}`), ...(b.match.serviceHeader ?? []).map((h) => `${h.name}=${h.value}`), ...(b.match.listener === undefined ? [] : [`listener=${b.match.listener}`])].join(' ')}]`}${b.exclude === undefined ? '' : ` -${b.exclude.join(',')}`}→${b.serviceName}:${b.port}`)

  const cases: Array<{ name: string; routes: Route[]; served: string[]; shadowed?: string[]; extras?: string[]; redirects?: string[]; defaultBackend?: string }> = [
    {
      name: 'on one path, destinations with userAgent or serviceHeader are tried before the one without (the catch-all)',
      routes: [
        r({
          serviceName: 'app',
          destinations: [
            { servicePath: ['/app'], port: 82 },
            { servicePath: ['/app'], port: 80, userAgent: ['iPhone'] },
            { servicePath: ['/app'], port: 81, serviceHeader: [{ name: 'X-Version', value: '3' }] },
          ],
        }),
      ],
      served: ['/app [X-Version=3]→app:81', '/app [ua:iPhone]→app:80', '/app→app:82'],
    },
    {
      name: 'the same discriminators on one path in two routes: one key, DFP order decides',
      routes: [
        r({ serviceName: 'b-mobile', destinations: [{ servicePath: ['/m'], port: 80, userAgent: ['Android'] }] }),
        r({ serviceName: 'a-mobile', destinations: [{ servicePath: ['/m'], port: 80, userAgent: ['Android'] }] }),
      ],
      served: ['/m [ua:Android]→a-mobile:80'],
      shadowed: ['/m b-mobile<a-mobile'],
    },
    {
      name: 'different discriminators on one path in two routes both serve, and the plain route stays the fallback',
      routes: [
        r({ serviceName: 'ios', destinations: [{ servicePath: ['/m'], port: 80, userAgent: ['iPhone'] }] }),
        r({ serviceName: 'droid', destinations: [{ servicePath: ['/m'], port: 80, userAgent: ['Android'] }] }),
        r({ serviceName: 'web', destinations: [{ servicePath: ['/m'], port: 80 }] }),
      ],
      served: ['/m [ua:Android]→droid:80', '/m [ua:iPhone]→ios:80', '/m→web:80'],
    },
    {
      name: "one path for plain HTTP and another port for HTTPS (DFP's srcPort.1=80 / srcPort.2=443): two bindings, no shadowing",
      routes: [
        r({
          serviceName: 'foo',
          destinations: [
            { servicePath: ['/'], port: 8080, listener: 'http' },
            { servicePath: ['/'], port: 8081, listener: 'https' },
          ],
        }),
      ],
      served: ['/ [listener=http]→foo:8080', '/ [listener=https]→foo:8081'],
    },
    {
      name: 'a per-destination domain (serviceDomain.N) replaces the route domain for that destination only',
      routes: [r({ serviceName: 'multi', serviceDomain: ['www.example.com'], destinations: [{ servicePath: ['/'], port: 80 }, { servicePath: ['/'], port: 81, serviceDomain: ['api.example.com'] }] })],
      served: ['api.example.com/→multi:81', 'www.example.com/→multi:80'],
    },
    {
      name: 'servicePathExclude keeps the key: the binding serves, minus the excluded prefixes',
      routes: [r({ serviceName: 'ex', destinations: [{ servicePath: ['/ex'], port: 80, servicePathExclude: ['/ex/metrics'] }] }), r({ serviceName: 'metrics', destinations: [{ servicePath: ['/ex/metrics'], port: 80 }] })],
      served: ['/ex -/ex/metrics→ex:80', '/ex/metrics→metrics:80'],
    },
    {
      name: 'two routes redirecting one host, two asking to be the default backend: DFP order holds each, the other is reported',
      routes: [
        r({ serviceName: 'new-b', isDefaultBackend: true, destinations: [{ servicePath: ['/'], port: 80, serviceDomain: ['b.example'], redirectFromDomain: ['old.example'] }] }),
        r({ serviceName: 'new-a', isDefaultBackend: true, destinations: [{ servicePath: ['/'], port: 80, serviceDomain: ['a.example'], redirectFromDomain: ['old.example', 'older.example'] }] }),
      ],
      served: ['a.example/→new-a:80', 'b.example/→new-b:80'],
      redirects: ['old.example→a.example (new-a)', 'older.example→a.example (new-a)'],
      defaultBackend: 'new-a',
      extras: ['new-b: the default backend (isDefaultBackend) < new-a', 'new-b: the redirect from old.example < new-a'],
    },
  ]
  for (const c of cases) {
    it(c.name, () => {
      for (const routes of [c.routes, [...c.routes].reverse()]) {
        const plan = planRoutes(routes)
        assert.deepEqual(matchers(routes), c.served)
        assert.deepEqual(shadowed(routes), c.shadowed ?? [])
        assert.deepEqual(plan.shadowedExtras.map((e) => `${e.serviceName}: ${e.what} < ${e.shadowedBy}`).sort(), c.extras ?? [])
        assert.deepEqual(plan.redirects.map((x) => `${x.from}→${x.to} (${x.serviceName})`), c.redirects ?? [])
        assert.equal(plan.defaultBackend?.serviceName, c.defaultBackend)
      }
    })
  }

  it('gives redirects and the default backend keys of their own, so the store refuses a second claim through Tether\'s forms', () => {
    const keys = bindingKeys(r({ serviceName: 'x', isDefaultBackend: true, destinations: [{ servicePath: ['/'], port: 80, serviceDomain: ['new.example'], redirectFromDomain: ['old.example'] }] }))
    assert.deepEqual(keys, ['default|', 'http|new.example|/', 'redirect|old.example'])
    const discriminated = bindingKeys(r({ serviceName: 'y', destinations: [{ servicePath: ['/m'], port: 80, userAgent: ['iPhone'], serviceHeader: [{ name: 'X-V', value: '1 2' }] }] }))
    assert.deepEqual(discriminated, ['http||/m|ua=iPhone;hdr=x-v:1%202'])
  })
})

describe('route planner and renderer agree (property)', () => {
  const settings = resolveSettings({ stateDir: '/tmp/tether-plan-property', cookieKey: 'property-test-key' })
  const name = fc.constantFrom('alpha', 'beta', 'gamma', 'delta')
  const path = fc.constantFrom('/', '/a', '/a/b', '/b', '/shop')
  const domain = fc.constantFrom('a.example.com', '*.example.com', 'b.example.com')
  const arbitraryRoute = fc
    .record({
      serviceName: name,
      paths: fc.uniqueArray(path, { minLength: 1, maxLength: 3 }),
      domains: fc.uniqueArray(domain, { maxLength: 2 }),
      port: fc.constantFrom(80, 81),
      aclName: fc.option(fc.constantFrom('00', 'zz'), { nil: undefined }),
    })
    .map((r) => route(r.serviceName, r.paths, { port: r.port, domains: r.domains, aclName: r.aclName }))
  const table = fc.uniqueArray(arbitraryRoute, { maxLength: 5, selector: (r) => r.serviceName })

  it('binds every served binding to its backend in haproxy.cfg, and never a shadowed one', () => {
    fc.assert(
      fc.property(table, (routes) => {
        const plan = planRoutes(routes)
        const out = render({ version: 1, routes }, settings)
        const mapText = out.files.find((f) => f.path.includes('/routes-'))?.text ?? ''
        const mapLines = new Set(mapText.split('\n').filter((l) => l !== ''))
        const rules = out.config.split('\n').filter((l) => l.startsWith('    use_backend svc_'))
        // `use_backend B if { var(txn.host) -m str|end H1 H2 } [{ var(txn.path) -m beg P/ }] ...`
        const hostRule = (host: string, p: string, backend: string) =>
          rules.some((l) => {
            const m = /^ {4}use_backend (\S+) if \{ var\(txn\.host\) -m (str|end) ([^}]*) \}(?: \{ var\(txn\.path\) -m beg (\S+) \})?/.exec(l)
            if (m === null || m[1] !== backend) return false
            const hosts = (m[3] ?? '').trim().split(' ')
            const hostMatches = host.startsWith('*.') ? m[2] === 'end' && hosts.includes(host.slice(1)) : m[2] === 'str' && hosts.includes(host)
            return hostMatches && (m[4] ?? '/') === (p === '/' ? '/' : `${p}/`)
          })
        for (const b of plan.http) {
          const backend = backendName(b.serviceName, b.port)
          if (b.host === '') assert.ok(mapLines.has(`${b.path === '/' ? '/' : `${b.path}/`} ${backend}`), `map binds ${b.path} to ${backend}`)
          else assert.ok(hostRule(b.host, b.path, backend), `a rule binds ${b.host}${b.path} to ${backend}`)
        }
        for (const s of plan.shadowed) {
          if (s.shadowedBy === s.serviceName) continue
          const backend = backendName(s.serviceName, s.port)
          const winner = plan.http.find((b) => b.host === s.host && b.path === s.path)
          assert.ok(winner !== undefined, 'a shadowed binding has a winner')
          if (backendName(winner.serviceName, winner.port) === backend) continue
          if (s.host === '') assert.ok(!mapLines.has(`${s.path === '/' ? '/' : `${s.path}/`} ${backend}`), `map never binds shadowed ${s.path} to ${backend}`)
          else assert.ok(!hostRule(s.host, s.path, backend), `no rule binds shadowed ${s.host}${s.path} to ${backend}`)
        }
        // Every key is either served once or shadowed: nothing is lost.
        const keys = new Set(routes.flatMap(bindingKeys))
        assert.equal(new Set(plan.http.map((b) => `${b.host}|${b.path}`)).size, keys.size)
      }),
      { numRuns: 300 },
    )
  })
})
