/**
 * Health-gated routing through a real HAProxy: tasks of `tasks.web` (loopback addresses from a
 * test DNS server standing in for Docker's, which cannot run outside a Swarm) answer their
 * health path with 200 or 503 as the test says. A task failing its check keeps its pinned clients
 * until HAProxy marks it down, then they move and new clients never reach it; a task added while
 * the proxy runs gets no request before its check passes; a route with no task answers 503 with
 * Retry-After and a body that says so.
 */
import { describe, it, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { normalizeRoute, type Route } from '../../../src/contracts/route.ts'
import { NO_TASK_BODY, spareKind } from '../../../src/proxy/haproxy/render.ts'
import { startCheckedTask } from '../../helpers/backends.ts'
import { startDnsServer } from '../../helpers/dns-server.ts'
import { createClient, createTestProxy, waitFor, type TestProxy } from '../../helpers/haproxy.ts'
import { freePort } from '../../helpers/redis-server.ts'

const hosts = ['127.0.0.21', '127.0.0.22', '127.0.0.23']
const names = ['web.1.aaa', 'web.2.bbb', 'web.3.ccc']

function webRoute(extra: Partial<Route> = {}): Route {
  return normalizeRoute({ serviceName: 'web', destinations: [{ servicePath: ['/'], port: 80 }], sticky: true, healthCheckPath: '/healthz', healthCheckInterval: 1, ...extra })
}

/** Three tasks on one port, a DNS server that knows the first `listed` of them, a proxy resolving through it. */
async function setup(t: TestContext, listed: number, healthy: boolean[]) {
  const port = await freePort()
  const tasks = await Promise.all(hosts.map((host, i) => startCheckedTask(t, { name: `task-${i + 1}`, host, port, healthy: healthy[i] ?? true })))
  const dns = await startDnsServer({ 'tasks.web': hosts.slice(0, listed) })
  t.after(() => dns.close())
  hosts.forEach((h, i) => dns.setName(h, names[i]!))
  const proxy = await createTestProxy(t, { resolvers: [dns.address], dnsIntervalMs: 200 })
  await proxy.engine.apply({ version: 1, routes: [webRoute({ destinations: [{ servicePath: ['/'], port }] })] })
  return { tasks, dns, proxy, port }
}

/** The status of each server of the route, by task name, as HAProxy reports it. */
async function states(proxy: TestProxy): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const b of await proxy.engine.health()) if (b.serviceName === 'web') for (const s of b.servers ?? []) out[s.name] = s.status
  return out
}

const waitStates = (proxy: TestProxy, want: Record<string, string>, timeoutMs = 15_000) =>
  waitFor(`servers ${JSON.stringify(want)}`, async () => {
    const now = await states(proxy)
    return JSON.stringify(now) === JSON.stringify(want) ? now : undefined
  }, timeoutMs)

/** `count` new clients (no cookie), one request each: which task each reached. */
async function newClients(proxy: TestProxy, count: number): Promise<string[]> {
  const out: string[] = []
  for (let i = 0; i < count; i++) {
    const client = createClient({ reuse: false })
    try {
      const reply = await client.get(`${proxy.url}/`)
      out.push(reply.status === 200 ? String(reply.body) : `status ${reply.status}`)
    } finally {
      await client.close()
    }
  }
  return out
}

describe('health-checked routes through HAProxy', () => {
  it('renders the HTTP check (path, interval, status, slow start) and keeps such a route out of spare backends', async (t) => {
    const { proxy, port } = await setup(t, 2, [true, true])
    await proxy.engine.apply({ version: 2, routes: [webRoute({ destinations: [{ servicePath: ['/'], port }], healthCheckStatus: 204, healthCheckSlowStart: 30, serviceDomain: ['shop.example.com'] })] })
    const config = await readFile(proxy.engine.paths.config, 'utf8')
    assert.match(config, /\n {4}option httpchk\n {4}http-check send meth GET uri \/healthz ver HTTP\/1\.1 hdr Host shop\.example\.com\n {4}http-check expect status 204\n/)
    assert.match(config, /\n {4}server web\.1\.aaa 127\.0\.0\.21:\d+ check inter 1s fall 2 rise 1 slowstart 30s\n/)
    assert.equal(spareKind(webRoute()), undefined, 'a spare backend has no check of its own')
    assert.notEqual(spareKind(normalizeRoute({ serviceName: 'plain', destinations: [{ servicePath: ['/p'], port: 80 }] })), undefined)
  })

  it('a task that starts failing keeps its pinned clients until HAProxy marks it down, then they move and no new client reaches it', async (t) => {
    const { tasks, proxy } = await setup(t, 2, [true, true])
    await waitStates(proxy, { [names[0]!]: 'up', [names[1]!]: 'up' })
    // A client pinned to task-1.
    const pinned = createClient()
    t.after(() => pinned.close())
    let first = await pinned.get(`${proxy.url}/`)
    for (let i = 0; i < 10 && first.body !== 'task-1'; i++) {
      pinned.jar.clear()
      first = await pinned.get(`${proxy.url}/`)
    }
    assert.equal(first.body, 'task-1')
    assert.equal((await pinned.get(`${proxy.url}/`)).body, 'task-1')

    tasks[0]!.healthy = false
    // One failed check is not "down" (fall 2): the pinned client is still on its task.
    assert.equal((await pinned.get(`${proxy.url}/`)).body, 'task-1', 'a task failing its first check keeps its pinned client')
    await waitStates(proxy, { [names[0]!]: 'down', [names[1]!]: 'up' })
    const servedBefore = tasks[0]!.served
    const moved = await pinned.get(`${proxy.url}/`)
    assert.equal(moved.status, 200)
    assert.equal(moved.body, 'task-2', 'once down, the pinned client goes to a task that passes')
    assert.ok(moved.setCookies.some((c) => c.startsWith('TETHER_web=')), 'and is pinned there with a new cookie')
    assert.equal((await pinned.get(`${proxy.url}/`)).body, 'task-2', 'and stays there')
    assert.deepEqual(new Set(await newClients(proxy, 8)), new Set(['task-2']), 'no new client reaches the failing task')
    assert.equal(tasks[0]!.served, servedBefore, 'the failing task got no request after it was marked down')

    // It passes again: back in rotation for new clients, the moved client stays where it is.
    tasks[0]!.healthy = true
    await waitStates(proxy, { [names[0]!]: 'up', [names[1]!]: 'up' })
    assert.deepEqual(new Set(await newClients(proxy, 8)), new Set(['task-1', 'task-2']))
    assert.equal((await pinned.get(`${proxy.url}/`)).body, 'task-2')
  })

  it('a task added while the proxy runs gets no request before its check passes', async (t) => {
    const { tasks, dns, proxy } = await setup(t, 1, [true, true, false])
    await waitStates(proxy, { [names[0]!]: 'up' })
    const reloads = proxy.engine.counters.reloads
    dns.set('tasks.web', hosts)
    // Discovered over the runtime API, and down from the start: seen down before its check could fail twice.
    const seen = await waitFor('the new tasks', async () => {
      const now = await states(proxy)
      return now[names[2]!] !== undefined && now[names[2]!] !== 'maint' ? now : undefined
    })
    assert.equal(seen[names[2]!], 'down', 'a new task starts down, not up until its check fails')
    await waitStates(proxy, { [names[0]!]: 'up', [names[1]!]: 'up', [names[2]!]: 'down' })
    assert.equal(proxy.engine.counters.reloads, reloads, 'new tasks are added without a reload')
    assert.deepEqual(new Set(await newClients(proxy, 12)), new Set(['task-1', 'task-2']), 'the task whose check fails gets no client')
    assert.equal(tasks[2]!.served, 0, 'not one request reached it')
    tasks[2]!.healthy = true
    await waitStates(proxy, { [names[0]!]: 'up', [names[1]!]: 'up', [names[2]!]: 'up' })
    assert.deepEqual(new Set(await newClients(proxy, 12)), new Set(['task-1', 'task-2', 'task-3']), 'once it passes it takes new clients')
  })

  it('the tasks of a new route count as down until their check passes (wait=healthy relies on it)', async (t) => {
    const { tasks, proxy, port } = await setup(t, 3, [false, false, false])
    // The route came with a reload (its servers from the configuration, not the runtime API), and
    // they are down at once: HAProxy alone would count them up until two checks (1 s apart) failed.
    assert.deepEqual(await states(proxy), { [names[0]!]: 'down', [names[1]!]: 'down', [names[2]!]: 'down' })
    assert.deepEqual(tasks.map((x) => x.served), [0, 0, 0], 'no task got a request before passing')
    tasks[1]!.healthy = true
    await waitStates(proxy, { [names[0]!]: 'down', [names[1]!]: 'up', [names[2]!]: 'down' })
    assert.deepEqual(new Set(await newClients(proxy, 6)), new Set(['task-2']))
    assert.ok(port > 0)
  })

  it('a change of the interval or slow start reaches HAProxy (a reload), and the tasks keep their state through it', async (t) => {
    const { proxy, port } = await setup(t, 2, [false, true])
    await waitStates(proxy, { [names[0]!]: 'down', [names[1]!]: 'up' })
    const reloads = proxy.engine.counters.reloads
    await proxy.engine.apply({ version: 2, routes: [webRoute({ destinations: [{ servicePath: ['/'], port }], healthCheckInterval: 3, healthCheckSlowStart: 10 })] })
    assert.equal(proxy.engine.counters.reloads, reloads + 1, 'server options live in the server lines: a change is a reload, never silently skipped')
    const config = await readFile(proxy.engine.paths.config, 'utf8')
    assert.match(config, /\n {4}default-server inter 3s fall 2 rise 1 slowstart 10s\n/)
    assert.match(config, /\n {4}server web\.2\.bbb 127\.0\.0\.22:\d+ check inter 3s fall 2 rise 1 slowstart 10s\n/)
    // Read at once: the failing task did not come back up with the new worker, the passing one did not go down.
    assert.deepEqual(await states(proxy), { [names[0]!]: 'down', [names[1]!]: 'up' })
  })

  it('a proxy restarted with the server state of its previous run keeps the tasks that passed up (no 503 until the next checks)', async (t) => {
    const port = await freePort()
    const tasks = await Promise.all(hosts.slice(0, 2).map((host, i) => startCheckedTask(t, { name: `task-${i + 1}`, host, port, healthy: i === 0 })))
    const dns = await startDnsServer({ 'tasks.web': hosts.slice(0, 2) })
    t.after(() => dns.close())
    hosts.forEach((h, i) => dns.setName(h, names[i]!))
    const stateDir = await mkdtemp(join(tmpdir(), 'tether-health-restart-'))
    t.after(() => rm(stateDir, { recursive: true, force: true }))
    const snapshot = { version: 1, routes: [webRoute({ destinations: [{ servicePath: ['/'], port }], healthCheckInterval: 30 })] }
    const first = await createTestProxy(undefined, { resolvers: [dns.address], dnsIntervalMs: 200, stateDir })
    await first.engine.apply(snapshot)
    // Interval 30 s: the first checks (spread over it) decide, then nothing changes for the rest of the test.
    await waitStates(first, { [names[0]!]: 'up', [names[1]!]: 'down' }, 40_000)
    // A reload (another route) writes the server state file, as every reload of a running proxy does.
    const next = { version: 2, routes: [...snapshot.routes, normalizeRoute({ serviceName: 'other', destinations: [{ servicePath: ['/other'], port: 80 }] })] }
    await first.engine.apply(next)
    await first.engine.stop()
    const second = await createTestProxy(t, { resolvers: [dns.address], dnsIntervalMs: 200, stateDir })
    await second.engine.apply(next)
    assert.deepEqual(await states(second), { [names[0]!]: 'up', [names[1]!]: 'down' }, 'up from the saved state, not set down as a new server')
    assert.deepEqual(new Set(await newClients(second, 4)), new Set(['task-1']))
    assert.equal(tasks[1]!.served, 0)
  })

  it('a route with no task passing answers 503 with Retry-After and a body that says so, with or without a health check', async (t) => {
    const { proxy, port } = await setup(t, 2, [false, false])
    await waitStates(proxy, { [names[0]!]: 'down', [names[1]!]: 'down' })
    await proxy.engine.apply({
      version: 2,
      routes: [
        webRoute({ destinations: [{ servicePath: ['/'], port }] }),
        // No health check and no task at all (a service scaled to 0 / not started yet).
        normalizeRoute({ serviceName: 'empty', destinations: [{ servicePath: ['/empty'], port: 80 }] }),
      ],
    })
    const client = createClient({ reuse: false })
    t.after(() => client.close())
    for (const path of ['/', '/empty/x']) {
      const reply = await client.get(`${proxy.url}${path}`)
      assert.equal(reply.status, 503, path)
      assert.equal(reply.headers['retry-after'], '5', path)
      assert.equal(reply.headers['content-type'], 'application/json', path)
      assert.deepEqual(reply.body, JSON.parse(NO_TASK_BODY), path)
      assert.match((reply.body as { message: string }).message, /No task of this service can take the request now/)
    }
  })
})
