/**
 * Changes HAProxy takes without a reload: paths added to or removed from services it already
 * has (`add map` / `del map`) and endpoint changes (`add server` / `del server`). Structural
 * changes (a new service, a new domain rule) still reload. After a series of runtime changes
 * HAProxy must be in the state a fresh start from the same table gives.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import type { ConfigSnapshot } from '../../../src/contracts/config-snapshot.ts'
import { sendCommand } from '../../../src/proxy/haproxy/runtime.ts'
import { closeBackends, startBackends, type BackendReply } from '../../helpers/backends.ts'
import { createClient, createTestProxy, route, type TestProxy } from '../../helpers/haproxy.ts'

const probes = ['/', '/a', '/a/x', '/a2', '/a2/y', '/b', '/b/deep', '/b/deep/z', '/b/deeper', '/c', '/shop/a', '/other']

describe('changes applied without a reload', () => {
  it('adds and removes paths and endpoints of existing services over the runtime API, ending where a fresh start from the same table ends', async (t) => {
    const backends = await startBackends(3, { prefix: 'app-' })
    t.after(() => closeBackends(backends))
    const [one, two, three] = backends.map((b) => b.address) as [string, string, string]
    const proxy = await createTestProxy(t)
    const client = createClient({ reuse: false })
    t.after(() => client.close())

    /** Who answers each probe path (instance, or the status when not 200). */
    const answers = async (p: TestProxy): Promise<Record<string, string>> => {
      const out: Record<string, string> = {}
      for (const path of probes) {
        const reply = await client.get(`${p.url}${path}`, { cookies: false })
        out[path] = reply.status === 200 ? (reply.body as BackendReply).instance : String(reply.status)
      }
      return out
    }
    const table = (version: number, a: string[], b: string[], aEndpoints: string[]): ConfigSnapshot => ({
      version,
      routes: [route({ serviceName: 'a', paths: a, endpoints: aEndpoints }), route({ serviceName: 'b', paths: b, endpoints: [three] })],
    })

    await proxy.engine.apply(table(1, ['/a'], ['/b'], [one]))
    const steps: Array<[ConfigSnapshot, Record<string, string>]> = [
      [table(2, ['/a', '/a2'], ['/b'], [one]), { '/a2/y': 'app-1' }],
      [table(3, ['/a', '/a2'], ['/b', '/b/deep'], [one]), { '/b/deep/z': 'app-3' }],
      [table(4, ['/a2'], ['/b', '/b/deep'], [one]), { '/a/x': '404' }],
      [table(5, ['/a2'], ['/', '/b', '/b/deep'], [one]), { '/a/x': 'app-3', '/other': 'app-3' }],
      [table(6, ['/a2', '/b/deep'], ['/', '/b'], [one]), { '/b/deep/z': 'app-1', '/b/deeper': 'app-3' }],
      [table(7, ['/a2', '/b/deep'], ['/', '/b'], [two]), { '/a2': 'app-2' }],
    ]
    for (const [snapshot, expected] of steps) {
      await proxy.engine.apply(snapshot)
      const got = await answers(proxy)
      for (const [path, instance] of Object.entries(expected)) assert.equal(got[path], instance, `version ${snapshot.version}: ${path}`)
    }
    assert.equal(proxy.engine.counters.reloads, 1, 'no change reloaded HAProxy')
    assert.equal(proxy.engine.counters.runtimeChanges, steps.length)

    // A new service is structural: a reload.
    const final: ConfigSnapshot = { version: 8, routes: [...steps.at(-1)![0].routes, route({ serviceName: 'c', paths: ['/c'], endpoints: [three] })] }
    await proxy.engine.apply(final)
    assert.equal(proxy.engine.counters.reloads, 2)
    const more: ConfigSnapshot = { version: 9, routes: final.routes.map((r) => (r.serviceName === 'c' ? { ...r, destinations: [{ servicePath: ['/c', '/shop'], port: 80 }] } : r)) }
    await proxy.engine.apply(more)
    assert.equal(proxy.engine.counters.reloads, 2)

    const fresh = await createTestProxy(t)
    await fresh.engine.apply(more)
    assert.deepEqual(await answers(proxy), await answers(fresh))
    /** The routes map as HAProxy holds it: key → backend. */
    const map = async (p: TestProxy): Promise<string[]> => {
      const list = await sendCommand(p.engine.paths.adminSocket, 'show map')
      const file = /\((\S+\/routes-[0-9a-f]+\.map)\)/.exec(list)?.[1]
      assert.ok(file !== undefined, list)
      const text = await sendCommand(p.engine.paths.adminSocket, `show map ${file}`)
      return text.split('\n').filter((l) => l.trim() !== '').map((l) => l.split(' ').slice(1).join(' ')).sort()
    }
    assert.deepEqual(await map(proxy), await map(fresh))
    assert.deepEqual(await map(fresh), ['/ svc_b_80', '/a2/ svc_a_80', '/b/ svc_b_80', '/b/deep/ svc_a_80', '/c/ svc_c_80', '/shop/ svc_c_80'])
  })
})
