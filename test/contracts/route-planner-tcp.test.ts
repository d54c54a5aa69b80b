/**
 * The route planner's TCP and SNI bindings: keys (`tcp|<srcPort>`, `sni|<serverName>`) in the
 * same key space as HTTP ones, one service per port and per name (DFP order when shared), and
 * the matching order of SNI names. Table-driven.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { normalizeRoute, type Route, type RouteInput } from '../../src/contracts/route.ts'
import { bindingKeys, parseBindingKey, planRoutes } from '../../src/contracts/route-planner.ts'

const route = (serviceName: string, extra: Partial<RouteInput>): Route => normalizeRoute({ serviceName, destinations: [], ...extra })

describe('route planner: TCP and SNI keys', () => {
  const cases: Array<{ name: string; route: Route; keys: string[] }> = [
    { name: 'a TCP port', route: route('redis', { tcp: [{ srcPort: 6379, port: 6379 }] }), keys: ['tcp|6379'] },
    {
      name: 'HTTP, TCP and SNI destinations of one service',
      route: route('mix', { destinations: [{ servicePath: ['/ui'], port: 80 }], tcp: [{ srcPort: 2222, port: 22 }], sni: [{ serverName: ['Git.Example.com', '*.example.org', 'api.*'], port: 443 }] }),
      keys: ['http||/ui', 'sni|*.example.org', 'sni|api.*', 'sni|git.example.com', 'tcp|2222'],
    },
    { name: 'the same port as HTTP and TCP: different keys', route: route('x', { destinations: [{ servicePath: ['/'], port: 5000 }], tcp: [{ srcPort: 5000, port: 5000 }] }), keys: ['http||/', 'tcp|5000'] },
  ]
  for (const c of cases) {
    it(`keys of ${c.name}`, () => assert.deepEqual(bindingKeys(c.route), c.keys))
  }

  it('parses every kind of key back', () => {
    assert.deepEqual(parseBindingKey('tcp|6379'), { kind: 'tcp', host: '', path: '', match: '', srcPort: 6379 })
    assert.deepEqual(parseBindingKey('sni|*.example.com'), { kind: 'sni', host: '', path: '', match: '', serverName: '*.example.com' })
    assert.deepEqual(parseBindingKey('http|a.example.com|/x'), { kind: 'http', host: 'a.example.com', path: '/x', match: '' })
  })
})

describe('route planner: TCP and SNI plans', () => {
  const cases: Array<{ name: string; routes: Route[]; tcp?: string[]; sni?: string[]; extras?: string[] }> = [
    {
      name: 'ports sorted, each to its service and port',
      routes: [route('pg', { tcp: [{ srcPort: 5432, port: 5432 }] }), route('redis', { tcp: [{ srcPort: 6379, port: 6380 }, { srcPort: 16379, port: 16379 }] })],
      tcp: ['5432→pg:5432', '6379→redis:6380', '16379→redis:16379'],
    },
    {
      name: 'a port held by two routes (DFP form): the first aclName serves, the other is reported',
      routes: [route('b', { tcp: [{ srcPort: 6000, port: 1 }] }), route('a', { tcp: [{ srcPort: 6000, port: 2 }] }), route('c', { aclName: '00', tcp: [{ srcPort: 7000, port: 3 }] })],
      tcp: ['6000→a:2', '7000→c:3'],
      extras: ['b: TCP port 6000 < a'],
    },
    {
      name: 'SNI names: exact first, then wildcards (longer suffix first), then prefixes (longer first)',
      routes: [
        route('wild', { sni: [{ serverName: ['*.example.com'], port: 1 }] }),
        route('deep', { sni: [{ serverName: ['*.db.example.com'], port: 2 }] }),
        route('exact', { sni: [{ serverName: ['x.db.example.com'], port: 3 }] }),
        route('pre', { sni: [{ serverName: ['a*', 'api.*'], port: 4 }] }),
      ],
      sni: ['x.db.example.com→exact', '*.db.example.com→deep', '*.example.com→wild', 'api.*→pre', 'a*→pre'],
    },
    {
      name: 'an SNI name held by two routes: DFP order, the other reported',
      routes: [route('z', { sni: [{ serverName: ['db.example.com'], port: 1 }] }), route('y', { sni: [{ serverName: ['db.example.com'], port: 2 }] })],
      sni: ['db.example.com→y'],
      extras: ['z: TLS server name db.example.com (SNI passthrough) < y'],
    },
  ]
  for (const c of cases) {
    it(c.name, () => {
      const plan = planRoutes(c.routes)
      assert.deepEqual(
        plan.tcp.map((b) => `${b.srcPort}→${b.serviceName}:${b.port}`),
        c.tcp ?? [],
      )
      assert.deepEqual(
        plan.sni.map((b) => `${b.serverName}→${b.serviceName}`),
        c.sni ?? [],
      )
      assert.deepEqual(
        plan.shadowedExtras.map((e) => `${e.serviceName}: ${e.what} < ${e.shadowedBy}`),
        c.extras ?? [],
      )
      // HTTP bindings are not disturbed by TCP/SNI-only routes.
      assert.deepEqual(plan.http, [])
    })
  }
})
