import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import autocannon from 'autocannon'
import { closeBackends, startBackends } from '../../helpers/backends.ts'
import { createTestProxy, route, waitFor } from '../../helpers/haproxy.ts'

describe('reloading under load', () => {
  it('serves every request while 50 configuration changes are applied', async (t) => {
    const backends = await startBackends(3)
    t.after(() => closeBackends(backends))
    const proxy = await createTestProxy(t)
    const endpoints = backends.map((b) => b.address)
    const snapshot = (version: number) => ({
      version,
      routes: [
        route({ serviceName: 'app', paths: ['/app'], sticky: true, endpoints }),
        // Something changes on every version: routes come and go.
        ...Array.from({ length: version % 7 }, (_, i) => route({ serviceName: `extra-${version}-${i}`, paths: [`/extra/${version}/${i}`], endpoints })),
      ],
    })
    await proxy.engine.apply(snapshot(1))
    await waitFor('backends up', async () => ((await proxy.engine.health())[0]?.up === 3 ? true : undefined))
    const reloadsBefore = (await proxy.engine.process!.proc()).master.reloads

    let load!: autocannon.Instance
    const finished = new Promise<autocannon.Result>((resolve, reject) => {
      load = autocannon({ url: `${proxy.url}/app/x`, connections: 6, overallRate: 600, duration: 60 }, (err, result) => (err ? reject(err) : resolve(result)))
    })
    t.after(() => load.stop())
    let applied = 0
    try {
      for (let v = 2; v <= 51; v++) {
        const result = await proxy.engine.apply(snapshot(v))
        assert.deepEqual(result.refused, [])
        applied++
      }
    } finally {
      load.stop()
    }
    const result = await finished
    const reloads = (await proxy.engine.process!.proc()).master.reloads - reloadsBefore
    assert.equal(applied, 50)
    assert.equal(reloads, 50, 'every apply reloaded HAProxy')
    assert.ok(result.requests.total > 300, `load generator made only ${result.requests.total} requests`)
    assert.equal(result.errors, 0, `${result.errors} connection errors (${result.timeouts} timeouts, ${result.resets ?? 0} resets)`)
    assert.equal(result.non2xx, 0, `${result.non2xx} non-2xx answers`)
  })
})
