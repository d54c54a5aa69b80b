import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { normalizeRoute } from '../../../src/contracts/route.ts'
import { planDescriptors, parseNofileLimit } from '../../../src/proxy/haproxy/descriptors.ts'
import { diffServers, endpointsOf, serverName, type Endpoint } from '../../../src/proxy/haproxy/servers.ts'

const dnsRoute = normalizeRoute({ serviceName: 'web', destinations: [{ servicePath: ['/'], port: 8080 }] })

describe('servers of a backend', () => {
  for (const [name, tasks, want] of [
    ['named after the task from its PTR answer', [{ address: '10.0.1.5', name: 'web.1.abc.net.' }], ['web.1.abc.net 10.0.1.5:8080']],
    ['named by address without a PTR answer', [{ address: '10.0.1.5' }], ['10.0.1.5 10.0.1.5:8080']],
    ['one server per address, sorted by name', [{ address: '10.0.1.9', name: 'web.2.x' }, { address: '10.0.1.5', name: 'web.1.y' }, { address: '10.0.1.9', name: 'web.2.x' }], ['web.1.y 10.0.1.5:8080', 'web.2.x 10.0.1.9:8080']],
    ['two tasks with one name both kept', [{ address: '10.0.1.5', name: 'same' }, { address: '10.0.1.6', name: 'same' }], ['same 10.0.1.5:8080', 'same-10.0.1.6 10.0.1.6:8080']],
    ['none before DNS answered', undefined, []],
  ] as const) {
    it(name, () => {
      assert.deepEqual(endpointsOf(dnsRoute, 8080, tasks as never).map((e) => `${e.name} ${e.address}:${e.port}`), want)
    })
  }

  it('names fixed endpoints after host:port and ignores tasks for them', () => {
    const fixed = normalizeRoute({ serviceName: 'legacy', destinations: [{ servicePath: ['/'], port: 80 }], endpoints: ['10.1.0.5:8080', 'legacy.internal:9000', '[fd00::5]:8080'] })
    assert.deepEqual(endpointsOf(fixed, 80, [{ address: '10.9.9.9' }]).map((e) => `${e.name}=${e.address}/${e.port}`), ['10.1.0.5:8080=10.1.0.5/8080', 'fd00::5.8080=fd00::5/8080', 'legacy.internal:9000=legacy.internal/9000'])
  })

  it('keeps server names to the characters HAProxy accepts', () => {
    assert.equal(serverName('web.1.a b/c"d'), 'web.1.a_b_c_d')
    assert.equal(serverName(''), '_')
  })

  it('diffs current and wanted servers into adds, removals and restores', () => {
    const e = (name: string, address = '10.0.0.1'): Endpoint => ({ name, address, port: 80 })
    const current = new Map([['a', e('a')], ['b', e('b')], ['c', e('c')], ['moved', e('moved', '10.0.0.2')]])
    const diff = diffServers(current, new Set(['c']), [e('a'), e('c'), e('d'), e('moved', '10.0.0.3')])
    assert.deepEqual(diff, { add: [e('d')], remove: ['b', 'moved'], restore: ['c'], reweight: [] })
    assert.deepEqual(diffServers(current, new Set(), [...current.values()]), { add: [], remove: [], restore: [], reweight: [] })
  })
})

describe('descriptor plan', () => {
  const base = { maxconn: 4096, maxconnFixed: false, threads: 2 }
  for (const [name, input, want] of [
    ['fits: nothing given up', { ...base, servers: 3000, limit: 20_000 }, { maxconn: 4096, checkBudget: 3000, needed: 11_262, problem: null }],
    ['lowers a default maxconn to fit', { ...base, servers: 15_000, limit: 20_000 }, { maxconn: 2465, checkBudget: 15_000, needed: 23_262, problem: /maxconn lowered to 2465/ }],
    ['then leaves checks off the servers beyond the limit', { ...base, servers: 30_000, limit: 20_000 }, { maxconn: 1024, checkBudget: 17_882, needed: 38_262, problem: /12118 servers run without a health check; raise the proxy's nofile limit to at least 38262/ }],
    ['never lowers a maxconn the operator set: HAProxy will refuse', { ...base, maxconnFixed: true, servers: 15_000, limit: 20_000 }, { maxconn: 4096, checkBudget: 15_000, needed: 23_262, problem: /lower TETHER_MAXCONN/ }],
  ] as const) {
    it(name, () => {
      const plan = planDescriptors(input)
      assert.equal(plan.maxconn, want.maxconn)
      assert.equal(plan.checkBudget, want.checkBudget)
      assert.equal(plan.needed, want.needed)
      if (want.problem === null) assert.equal(plan.problem, null)
      else assert.match(plan.problem ?? '', want.problem)
    })
  }

  it('reads the hard nofile limit from /proc/self/limits', () => {
    const text = 'Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 20000                files\n'
    assert.equal(parseNofileLimit(text), 20_000)
    assert.equal(parseNofileLimit('Max open files            unlimited            unlimited            files'), Number.MAX_SAFE_INTEGER)
    assert.equal(parseNofileLimit('nothing here'), undefined)
  })
})
