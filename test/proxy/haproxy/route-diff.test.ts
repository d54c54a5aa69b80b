import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { normalizeRoute, type Route } from '../../../src/contracts/route.ts'
import { compareRoutes, sameJson } from '../../../src/proxy/haproxy/route-diff.ts'

const route = (serviceName: string, options: { paths?: string[]; endpoints?: string[]; sticky?: boolean } = {}): Route =>
  normalizeRoute({ serviceName, destinations: [{ servicePath: options.paths ?? [`/${serviceName}`], port: 80 }], endpoints: options.endpoints, sticky: options.sticky })

describe('sameJson', () => {
  const cases: Array<[string, unknown, unknown, boolean]> = [
    ['equal scalars', 1, 1, true],
    ['different scalars', 1, 2, false],
    ['number and string', 1, '1', false],
    ['null and object', null, {}, false],
    ['arrays in order', [1, [2]], [1, [2]], true],
    ['arrays in another order', [1, 2], [2, 1], false],
    ['array and object', [], {}, false],
    ['keys in another order', { a: 1, b: 2 }, { b: 2, a: 1 }, true],
    ['a key set to undefined is absent', { a: 1, b: undefined }, { a: 1 }, true],
    ['a missing key', { a: 1, b: 2 }, { a: 1 }, false],
    ['an extra key', { a: 1 }, { a: 1, c: 3 }, false],
    ['nested difference', { a: { b: [1, { c: 2 }] } }, { a: { b: [1, { c: 3 }] } }, false],
  ]
  for (const [name, a, b, want] of cases) it(name, () => assert.equal(sameJson(a, b), want))
})

describe('compareRoutes', () => {
  const served = new Map([route('a', { endpoints: ['10.0.0.1:80'] }), route('b'), route('c')].map((r) => [r.serviceName, r]))
  const cases: Array<{ name: string; routes: Route[]; added: string[]; removed: string[]; changed: string[]; endpointsOnly: boolean }> = [
    { name: 'nothing changed (new objects)', routes: [route('a', { endpoints: ['10.0.0.1:80'] }), route('b'), route('c')], added: [], removed: [], changed: [], endpointsOnly: true },
    { name: 'an endpoint added', routes: [route('a', { endpoints: ['10.0.0.1:80', '10.0.0.2:80'] }), route('b'), route('c')], added: [], removed: [], changed: ['a'], endpointsOnly: true },
    { name: 'fixed endpoints to DNS tasks', routes: [route('a'), route('b'), route('c')], added: [], removed: [], changed: ['a'], endpointsOnly: true },
    { name: 'a path added', routes: [route('a', { endpoints: ['10.0.0.1:80'] }), route('b', { paths: ['/b', '/b2'] }), route('c')], added: [], removed: [], changed: ['b'], endpointsOnly: false },
    { name: 'an endpoint and stickiness', routes: [route('a', { endpoints: ['10.0.0.2:80'], sticky: true }), route('b'), route('c')], added: [], removed: [], changed: ['a'], endpointsOnly: false },
    { name: 'a service added', routes: [route('a', { endpoints: ['10.0.0.1:80'] }), route('b'), route('c'), route('d')], added: ['d'], removed: [], changed: [], endpointsOnly: false },
    { name: 'a service removed', routes: [route('a', { endpoints: ['10.0.0.1:80'] }), route('c')], added: [], removed: ['b'], changed: [], endpointsOnly: false },
    { name: 'one removed, one added', routes: [route('a', { endpoints: ['10.0.0.1:80'] }), route('b'), route('d')], added: ['d'], removed: ['c'], changed: [], endpointsOnly: false },
  ]
  for (const c of cases) {
    it(c.name, () => {
      const got = compareRoutes(served, c.routes)
      assert.deepEqual(
        { added: got.added.map((r) => r.serviceName), removed: got.removed, changed: got.changed.map((r) => r.serviceName), endpointsOnly: got.endpointsOnly },
        { added: c.added, removed: c.removed, changed: c.changed, endpointsOnly: c.endpointsOnly },
      )
    })
  }
})
