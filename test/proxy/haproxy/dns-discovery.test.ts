import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { closeBackends, startBackends, type BackendReply } from '../../helpers/backends.ts'
import { startDnsServer } from '../../helpers/dns-server.ts'
import { createClient, createTestProxy, route, waitFor } from '../../helpers/haproxy.ts'
import { freePort } from '../../helpers/redis-server.ts'

describe('discovering tasks.<service> through DNS', () => {
  it('follows the DNS answer as the service scales up and down, with no reconfigure', async (t) => {
    const port = await freePort()
    const hosts = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5']
    const backends = await startBackends(4, { hosts, port, prefix: 'task-' })
    t.after(() => closeBackends(backends))
    const dns = await startDnsServer({ 'tasks.web': hosts.slice(0, 2) })
    t.after(() => dns.close())
    const proxy = await createTestProxy(t, { resolvers: [dns.address], slots: 8 })
    await proxy.engine.apply({ version: 1, routes: [route({ serviceName: 'web', paths: ['/'], port })] })
    const client = createClient()
    t.after(() => client.close())

    /** Instances answering over enough round-robin turns to see every server in rotation. */
    const instances = async (): Promise<string[]> => {
      const seen = new Set<string>()
      for (let i = 0; i < 12; i++) {
        const reply = await client.get(`${proxy.url}/`, { cookies: false })
        if (reply.status === 200) seen.add((reply.body as BackendReply).instance)
      }
      return [...seen].sort()
    }
    const until = (want: string[], timeoutMs: number) =>
      waitFor(`instances ${want.join(',')}`, async () => {
        const got = await instances()
        return got.join() === want.join() ? got : undefined
      }, timeoutMs)

    // First resolution after start (init-addr none): the two tasks appear.
    await until(['task-1', 'task-2'], 5_000)
    const applied = await proxy.engine.health()
    assert.deepEqual(applied, [{ serviceName: 'web', up: 2, down: 0, slots: 8 }])

    dns.set('tasks.web', hosts) // scale 2 → 4
    await until(['task-1', 'task-2', 'task-3', 'task-4'], 2_000)

    dns.set('tasks.web', hosts.slice(2, 3)) // scale 4 → 1
    await until(['task-3'], 2_000)
    assert.deepEqual(await proxy.engine.health(), [{ serviceName: 'web', up: 1, down: 0, slots: 8 }])
  })

  it('reports a service with more tasks than slots, and stops once it fits again', async (t) => {
    const port = await freePort()
    const hosts = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5']
    const backends = await startBackends(4, { hosts, port, prefix: 'task-' })
    t.after(() => closeBackends(backends))
    const dns = await startDnsServer({ 'tasks.web': hosts })
    t.after(() => dns.close())
    const proxy = await createTestProxy(t, { resolvers: [dns.address], slots: 2 })
    await proxy.engine.apply({ version: 1, routes: [route({ serviceName: 'web', paths: ['/'], port })] })
    const health = await waitFor('both slots up', async () => {
      const h = await proxy.engine.health()
      return h[0]?.up === 2 ? h : undefined
    }, 5_000)
    assert.deepEqual(health, [{ serviceName: 'web', up: 2, down: 0, slots: 2, tasks: 4 }])

    dns.set('tasks.web', hosts.slice(0, 2)) // scaled down to what the slots hold
    await waitFor('no overflow reported', async () => ((await proxy.engine.health())[0]?.tasks === undefined ? true : undefined), 5_000)
  })

  it('carries resolved tasks across a reload, even while DNS does not answer', async (t) => {
    const port = await freePort()
    const hosts = ['127.0.0.2', '127.0.0.3']
    const backends = await startBackends(2, { hosts, port, prefix: 'task-' })
    t.after(() => closeBackends(backends))
    const dns = await startDnsServer({ 'tasks.web': hosts })
    t.after(() => dns.close())
    const proxy = await createTestProxy(t, { resolvers: [dns.address], slots: 4 })
    const snapshot = (version: number, paths: string[]) => ({ version, routes: [route({ serviceName: 'web', paths, port })] })
    await proxy.engine.apply(snapshot(1, ['/']))
    await waitFor('both tasks up', async () => ((await proxy.engine.health())[0]?.up === 2 ? true : undefined), 5_000)

    dns.pause() // Docker's DNS stops answering from here on
    await proxy.engine.apply(snapshot(2, ['/', '/more']))
    // Right after the reload, from the server-state file: both tasks known and up, no empty backend.
    assert.deepEqual(await proxy.engine.health(), [{ serviceName: 'web', up: 2, down: 0, slots: 4 }])
    const client = createClient()
    t.after(() => client.close())
    const seen = new Set<string>()
    for (let i = 0; i < 4; i++) {
      const reply = await client.get(`${proxy.url}/more`, { cookies: false })
      assert.equal(reply.status, 200)
      seen.add((reply.body as BackendReply).instance)
    }
    assert.deepEqual([...seen].sort(), ['task-1', 'task-2'])
  })
})
