/**
 * The proxy's own task discovery against real HAProxy: tasks.<service> from a DNS server (the
 * test DNS helper standing in for Docker's embedded DNS, which cannot run outside a Swarm),
 * servers named after tasks, changed over the runtime API without a reload.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { sendCommand } from '../../../src/proxy/haproxy/runtime.ts'
import { closeBackends, startBackends, type BackendReply } from '../../helpers/backends.ts'
import { startDnsServer, type TestDnsServer } from '../../helpers/dns-server.ts'
import { createClient, createTestProxy, route, waitFor, type TestProxy } from '../../helpers/haproxy.ts'
import { freePort } from '../../helpers/redis-server.ts'
import type { TestContext } from 'node:test'

const hosts = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5']
const taskName = (i: number): string => `web.${i + 1}.task${i + 1}xyz.ingress`

/** Four "tasks" of service web on loopback addresses, a DNS server that knows the first `up` of them by name. */
async function swarm(t: TestContext, up: number) {
  const port = await freePort()
  const backends = await startBackends(4, { hosts, port, prefix: 'task-' })
  t.after(() => closeBackends(backends))
  const dns = await startDnsServer({ 'tasks.web': hosts.slice(0, up) })
  t.after(() => dns.close())
  hosts.forEach((h, i) => dns.setName(h, taskName(i)))
  return { port, dns }
}

async function proxyFor(t: TestContext, dns: TestDnsServer): Promise<TestProxy> {
  return createTestProxy(t, { resolvers: [dns.address], dnsIntervalMs: 200 })
}

/** Instances answering over enough round-robin turns to see every server in rotation. */
async function instances(proxy: TestProxy, path = '/'): Promise<string[]> {
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

const until = (proxy: TestProxy, want: string[], timeoutMs = 5_000) =>
  waitFor(`instances ${want.join(',')}`, async () => ((await instances(proxy)).join() === want.join() ? true : undefined), timeoutMs)

describe('discovering tasks.<service> through DNS', () => {
  it('serves the tasks from the first apply, named after the tasks, and follows scaling without a reload', async (t) => {
    const { port, dns } = await swarm(t, 2)
    const proxy = await proxyFor(t, dns)
    await proxy.engine.apply({ version: 1, routes: [route({ serviceName: 'web', paths: ['/'], port })] })
    // Resolved before the configuration was written: served at once, no wait for DNS.
    assert.deepEqual(await instances(proxy), ['task-1', 'task-2'])
    const health = await proxy.engine.health()
    assert.deepEqual(health, [
      {
        serviceName: 'web',
        port,
        up: 2,
        down: 0,
        servers: [
          { name: taskName(0), status: 'up' },
          { name: taskName(1), status: 'up' },
        ],
      },
    ])

    dns.set('tasks.web', hosts) // scale 2 → 4
    await until(proxy, ['task-1', 'task-2', 'task-3', 'task-4'])
    dns.set('tasks.web', hosts.slice(2, 3)) // scale 4 → 1
    await until(proxy, ['task-3'])
    assert.deepEqual(await proxy.engine.health(), [{ serviceName: 'web', port, up: 1, down: 0, servers: [{ name: taskName(2), status: 'up' }] }])
    // Put in maintenance at once, deleted once HAProxy lets go of their connections.
    const state = await waitFor('the removed servers deleted', async () => {
      const text = await sendCommand(proxy.engine.paths.adminSocket, `show servers state svc_web_${port}`)
      return /task1xyz|task2xyz|task4xyz/.test(text) ? undefined : text
    }, 20_000, 250)
    assert.match(state, new RegExp(` ${taskName(2).replace(/\./g, '\\.')} 127\\.0\\.0\\.4 `))
    assert.equal(proxy.engine.counters.reloads, 1, 'scaling never reloaded HAProxy')
    assert.ok(proxy.engine.counters.runtimeChanges >= 2)
  })

  it('names a task by its address when DNS gives no name for it', async (t) => {
    const { port, dns } = await swarm(t, 1)
    dns.setName(hosts[0]!, undefined)
    const proxy = await proxyFor(t, dns)
    await proxy.engine.apply({ version: 1, routes: [route({ serviceName: 'web', paths: ['/'], port })] })
    assert.deepEqual((await proxy.engine.health())[0]?.servers, [{ name: hosts[0], status: 'up' }])
  })

  it('shows a task on a wrong port as down', async (t) => {
    const { dns } = await swarm(t, 2)
    const proxy = await proxyFor(t, dns)
    const wrongPort = await freePort() // nothing listens there
    await proxy.engine.apply({ version: 1, routes: [route({ serviceName: 'web', paths: ['/'], port: wrongPort })] })
    // fall 2 × inter 2 s.
    const health = await waitFor('both down', async () => {
      const h = await proxy.engine.health()
      return h[0]?.down === 2 ? h : undefined
    }, 10_000, 200)
    assert.deepEqual(health, [
      {
        serviceName: 'web',
        port: wrongPort,
        up: 0,
        down: 2,
        servers: [
          { name: taskName(0), status: 'down' },
          { name: taskName(1), status: 'down' },
        ],
      },
    ])
  })

  it('carries the tasks across a reload, even while DNS does not answer', async (t) => {
    const { port, dns } = await swarm(t, 2)
    const proxy = await proxyFor(t, dns)
    // A second service makes version 2 a structural change: a reload.
    const snapshot = (version: number, more: boolean) => ({
      version,
      routes: [route({ serviceName: 'web', paths: ['/'], port }), ...(more ? [route({ serviceName: 'more', paths: ['/more'], endpoints: [`${hosts[0]}:${port}`] })] : [])],
    })
    await proxy.engine.apply(snapshot(1, false))
    dns.pause() // Docker's DNS stops answering from here on
    await proxy.engine.apply(snapshot(2, true))
    assert.equal(proxy.engine.counters.reloads, 2)
    const health = await proxy.engine.health()
    assert.deepEqual(health.map((h) => [h.serviceName, h.up, h.down, h.servers?.map((x) => x.name)]), [
      ['more', 1, 0, [`${hosts[0]}:${port}`]],
      ['web', 2, 0, [taskName(0), taskName(1)]],
    ])
    assert.deepEqual(await instances(proxy, '/'), ['task-1', 'task-2'])
  })

  it('ends up in the same state after runtime changes as a fresh start from the same table and tasks', async (t) => {
    const { port, dns } = await swarm(t, 1)
    const changed = await proxyFor(t, dns)
    const routes = [route({ serviceName: 'web', paths: ['/'], port, sticky: true })]
    await changed.engine.apply({ version: 1, routes })
    // Six task changes, each through the runtime API.
    for (const up of [[0, 1], [0, 1, 2, 3], [1, 3], [1, 2, 3], [3], [0, 2, 3]]) {
      dns.set('tasks.web', up.map((i) => hosts[i]!))
      const want = up.map((i) => `task-${i + 1}`)
      await until(changed, want)
    }
    // The route's servers only: the admin listener's tether.metrics backend has a server of its own.
    const ofWeb = (l: string): boolean => /^\d+ /.test(l) && (l.split(' ')[1] ?? '').startsWith('svc_web_')
    await waitFor('removals done', async () => ((await sendCommand(changed.engine.paths.adminSocket, 'show servers state')).split('\n').filter(ofWeb).length === 3 ? true : undefined), 20_000, 250)
    assert.equal(changed.engine.counters.reloads, 1)

    const fresh = await proxyFor(t, dns)
    await fresh.engine.apply({ version: 1, routes })
    /** Backend, server name, address, port and admin state of every server; ids and timers aside. */
    const servers = async (p: TestProxy): Promise<string[]> => {
      const text = await sendCommand(p.engine.paths.adminSocket, 'show servers state')
      return text
        .split('\n')
        .filter((l) => ofWeb(l) && l.split(' ').length > 10)
        .map((l) => {
          const f = l.split(' ')
          return [f[1], f[3], f[4], f[18], `admin=${f[6]}`].join(' ')
        })
        .sort()
    }
    assert.deepEqual(await servers(changed), await servers(fresh))
    assert.equal((await servers(fresh)).length, 3)
    /** The configuration on disk, without what differs between two proxies on one machine. */
    const onDisk = async (p: TestProxy): Promise<string> =>
      (await readFile(p.engine.paths.config, 'utf8')).replace(/^# .*\n/, '').replaceAll(p.stateDir, 'STATE').replace(/127\.0\.0\.1:\d+/g, 'LISTEN')
    assert.equal(await onDisk(changed), await onDisk(fresh), 'the configuration on disk holds the current servers')
  })
})

describe('stickiness with discovered tasks', () => {
  const COOKIE = 'TETHER_web'

  it('keeps a client on its task across scale-up, scale-down of other tasks, a reload and another replica', async (t) => {
    const { port, dns } = await swarm(t, 2)
    const a = await proxyFor(t, dns)
    // Version 2 adds a service: a structural change, so a reload.
    const snapshot = (version: number) => ({
      version,
      routes: [route({ serviceName: 'web', paths: ['/'], port, sticky: true }), ...(version > 1 ? [route({ serviceName: 'x', paths: ['/x'], endpoints: [`${hosts[3]}:${port}`] })] : [])],
    })
    await a.engine.apply(snapshot(1))
    const client = createClient()
    t.after(() => client.close())
    const first = await client.get(`${a.url}/`)
    const pinned = (first.body as BackendReply).instance
    const cookie = client.jar.get(COOKIE)
    assert.ok(cookie !== undefined)
    const stays = async (p: TestProxy, why: string): Promise<void> => {
      for (let i = 0; i < 5; i++) {
        const reply = await client.get(`${p.url}/`)
        assert.equal((reply.body as BackendReply).instance, pinned, `moved off ${pinned} ${why}`)
      }
      assert.equal(client.jar.get(COOKIE), cookie, `cookie changed ${why}`)
    }

    dns.set('tasks.web', hosts) // runtime: two servers added
    await until(a, ['task-1', 'task-2', 'task-3', 'task-4'])
    await stays(a, 'after a scale-up')
    await a.engine.apply(snapshot(2)) // a reload
    assert.equal(a.engine.counters.reloads, 2)
    await stays(a, 'after a reload')
    const other = pinned === 'task-1' ? hosts[1]! : hosts[0]!
    dns.set('tasks.web', hosts.filter((h) => h !== other)) // runtime: another task removed
    await until(a, ['task-1', 'task-2', 'task-3', 'task-4'].filter((x) => x !== (pinned === 'task-1' ? 'task-2' : 'task-1')))
    await stays(a, 'after another task was removed')

    // Another replica started now, holding the same tasks from its configuration.
    const b = await proxyFor(t, dns)
    await b.engine.apply(snapshot(2))
    await stays(b, 'on another replica')
  })

  it('gives a server added at runtime the cookie a configured server with the same address gets', async (t) => {
    const { port, dns } = await swarm(t, 1)
    const a = await proxyFor(t, dns)
    const snapshot = { version: 1, routes: [route({ serviceName: 'web', paths: ['/'], port, sticky: true })] }
    await a.engine.apply(snapshot)
    dns.set('tasks.web', hosts.slice(0, 2)) // task-2 joins a at runtime
    await until(a, ['task-1', 'task-2'])
    const b = await proxyFor(t, dns) // task-2 is in b's configuration
    await b.engine.apply(snapshot)

    /** The cookie a proxy issues for `instance` (fresh clients until one lands there). */
    const cookieFor = async (p: TestProxy, instance: string): Promise<string> => {
      for (let i = 0; i < 20; i++) {
        const client = createClient()
        try {
          const reply = await client.get(`${p.url}/`)
          if ((reply.body as BackendReply).instance === instance) {
            const value = client.jar.get(COOKIE)
            assert.ok(value !== undefined && value !== '', `no ${COOKIE} cookie for ${instance}: ${JSON.stringify(reply.setCookies)}`)
            return value
          }
        } finally {
          await client.close()
        }
      }
      throw new Error(`never balanced to ${instance}`)
    }
    const added = await cookieFor(a, 'task-2')
    assert.equal(added, await cookieFor(b, 'task-2'))
    assert.notEqual(added, await cookieFor(a, 'task-1'))
    assert.equal(a.engine.counters.reloads, 1, 'task-2 was added without a reload')
  })
})
