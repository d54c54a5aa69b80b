/**
 * Endpoint changes touch only the servers of the service that changed: no render of the table,
 * no `haproxy -c`, no reload — checked with HAProxy's own master (its reload counter and the
 * worker serving) and by who answers. The configuration file gets the new server lines, so a
 * later reload keeps them. A structural change after runtime changes is checked only for what
 * changed and still isolates a route HAProxy refuses.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import type { ConfigSnapshot } from '../../../src/contracts/config-snapshot.ts'
import type { Route } from '../../../src/contracts/route.ts'
import { closeBackends, startBackends, type BackendReply } from '../../helpers/backends.ts'
import { startDnsServer } from '../../helpers/dns-server.ts'
import { createClient, createTestProxy, route, waitFor, type TestProxy } from '../../helpers/haproxy.ts'
import { freePort } from '../../helpers/redis-server.ts'

const hosts = ['127.0.0.2', '127.0.0.3', '127.0.0.4']

/** Instances answering `path` over enough round-robin turns to see every server in rotation. */
async function instances(proxy: TestProxy, path: string): Promise<string[]> {
  const client = createClient({ reuse: false })
  try {
    const seen = new Set<string>()
    for (let i = 0; i < 12; i++) {
      const reply = await client.get(`${proxy.url}${path}`, { cookies: false })
      if (reply.status === 200) seen.add((reply.body as BackendReply).instance)
    }
    return [...seen].sort()
  } finally {
    await client.close()
  }
}

/** HAProxy's master: how many reloads it did, and which worker serves. */
async function master(proxy: TestProxy): Promise<{ reloads: number; worker: number | undefined }> {
  const info = await proxy.engine.process!.proc()
  return { reloads: info.master.reloads, worker: info.workers[0]?.pid }
}

describe('endpoint changes without a render or a reload', () => {
  it('serves a new fixed endpoint and a new task at once, with the same HAProxy worker, and a later reload keeps both', async (t) => {
    const port = await freePort()
    const tasks = await startBackends(3, { hosts, port, prefix: 'task-' })
    t.after(() => closeBackends(tasks))
    const fixed = await startBackends(2, { prefix: 'fixed-' })
    t.after(() => closeBackends(fixed))
    const dns = await startDnsServer({ 'tasks.web': hosts.slice(0, 1) })
    t.after(() => dns.close())
    const proxy = await createTestProxy(t, { resolvers: [dns.address], dnsIntervalMs: 200 })
    // Other services in the table: an endpoint change must not depend on them.
    const others: Route[] = Array.from({ length: 50 }, (_, i) => route({ serviceName: `other-${i}`, paths: [`/other/${i}`], endpoints: [`127.0.9.${i + 1}:9`] }))
    const table = (version: number, fixedEndpoints: string[], extra: Route[] = []): ConfigSnapshot => ({
      version,
      routes: [route({ serviceName: 'api', paths: ['/api'], endpoints: fixedEndpoints, sticky: true }), route({ serviceName: 'web', paths: ['/web'], port }), ...others, ...extra],
    })

    await proxy.engine.apply(table(1, [fixed[0]!.address]))
    assert.deepEqual(await instances(proxy, '/api'), ['fixed-1'])
    assert.deepEqual(await instances(proxy, '/web'), ['task-1'])
    const before = await master(proxy)
    assert.ok(before.worker !== undefined)

    // A fixed endpoint added through the snapshot.
    await proxy.engine.apply(table(2, [fixed[0]!.address, fixed[1]!.address]))
    assert.deepEqual(await instances(proxy, '/api'), ['fixed-1', 'fixed-2'])
    // A task added in DNS.
    dns.set('tasks.web', hosts.slice(0, 2))
    await waitFor('the new task served', async () => ((await instances(proxy, '/web')).join() === 'task-1,task-2' ? true : undefined), 5_000)
    // A task replaced: the old one leaves rotation, the new one serves.
    dns.set('tasks.web', [hosts[0]!, hosts[2]!])
    await waitFor('the replacement served', async () => ((await instances(proxy, '/web')).join() === 'task-1,task-3' ? true : undefined), 5_000)

    assert.deepEqual(await master(proxy), before, 'the same worker serves: HAProxy was not reloaded')
    assert.equal(proxy.engine.counters.reloads, 1)
    assert.ok(proxy.engine.counters.runtimeChanges >= 3, String(proxy.engine.counters.runtimeChanges))
    // The file HAProxy would reload from has the servers HAProxy holds now (written right after the change).
    const serverLines = (file: string, backend: string): string[] => (file.split(`backend ${backend}\n`)[1] ?? '').split('\n\n')[0]!.split('\n').filter((l) => l.startsWith('    server '))
    const wantApi = [fixed[0]!.address, fixed[1]!.address].sort().map((a) => `    server ${a} ${a} check inter 2s fall 2 rise 1`)
    const wantWeb = [hosts[0]!, hosts[2]!].map((h) => `    server ${h} ${h}:${port} check inter 2s fall 2 rise 1`)
    const file = await waitFor('the configuration file with the new servers', async () => {
      const text = await readFile(proxy.engine.paths.config, 'utf8')
      return serverLines(text, `svc_web_${port}`).join() === wantWeb.join() ? text : undefined
    }, 5_000)
    assert.deepEqual(serverLines(file, 'svc_api_80'), wantApi)
    assert.deepEqual(serverLines(file, `svc_web_${port}`), wantWeb)
    const health = await proxy.engine.health()
    assert.deepEqual(health.find((h) => h.serviceName === 'web')?.servers?.map((s) => s.name), [hosts[0], hosts[2]])

    // A new service is structural: a reload, after which every runtime change is still there.
    await proxy.engine.apply(table(3, [fixed[0]!.address, fixed[1]!.address], [route({ serviceName: 'late', paths: ['/late'], endpoints: [fixed[1]!.address] })]))
    const after = await master(proxy)
    assert.equal(after.reloads, before.reloads + 1)
    assert.notEqual(after.worker, before.worker)
    assert.deepEqual(await instances(proxy, '/api'), ['fixed-1', 'fixed-2'])
    assert.deepEqual(await instances(proxy, '/web'), ['task-1', 'task-3'])
    assert.deepEqual(await instances(proxy, '/late'), ['fixed-2'])
  })

  it('keeps a sticky client on its endpoint while other endpoints of its service come and go', async (t) => {
    const backends = await startBackends(3, { prefix: 'app-' })
    t.after(() => closeBackends(backends))
    const [one, two, three] = backends.map((b) => b.address) as [string, string, string]
    const proxy = await createTestProxy(t)
    const table = (version: number, endpoints: string[]): ConfigSnapshot => ({ version, routes: [route({ serviceName: 'app', paths: ['/'], endpoints, sticky: true })] })
    await proxy.engine.apply(table(1, [one, two]))
    const before = await master(proxy)
    const client = createClient({ reuse: false })
    t.after(() => client.close())
    const first = await client.get(`${proxy.url}/`)
    const pinned = (first.body as BackendReply).instance
    const other = pinned === 'app-1' ? two : one
    const mine = pinned === 'app-1' ? one : two
    for (const endpoints of [[one, two, three], [mine, three], [mine, three, other], [mine]]) {
      await proxy.engine.apply(table(proxy.engine.counters.runtimeChanges + 2, endpoints))
      for (let i = 0; i < 5; i++) assert.equal(((await client.get(`${proxy.url}/`)).body as BackendReply).instance, pinned, `with endpoints ${endpoints.join(',')}`)
    }
    assert.deepEqual(await master(proxy), before, 'no reload')
  })
})
