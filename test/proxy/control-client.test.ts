/**
 * The agent finds the control plane: several URLs, or one name resolved to every replica's
 * address, failing over when one is dead and following replicas that move. Real control
 * planes on loopback addresses; the engine only records versions.
 */
import { once } from 'node:events'
import { createServer as createHttpServer, request as httpRequest } from 'node:http'
import { createConnection, createServer, type Socket } from 'node:net'
import { describe, it, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createMemoryRouteStore } from '../../src/control/store/memory-route-store.ts'
import { normalizeRoute } from '../../src/contracts/route.ts'
import type { ProxyHeartbeat } from '../../src/contracts/proxy-status.ts'
import { ControlRejectedError, ControlUnavailableError, createControlClient } from '../../src/proxy/control-client.ts'
import type { RecordingEngine } from '../../src/proxy/recording-engine.ts'
import { waitFor } from '../helpers/haproxy.ts'
import { freePort } from '../helpers/redis-server.ts'
import { PROXY_TOKEN, startAgent, startControl } from './harness.ts'

const meta = { actor: 'test', source: 'api' } as const

/**
 * A TCP relay in front of a control replica that can be frozen: connections stay open but no
 * byte goes through any more, in either direction, and new ones are accepted and ignored — what
 * a paused container or a partition looks like to a client (no reset, no refusal, silence).
 */
async function freezableRelay(t: TestContext, upstreamPort: number): Promise<{ url: string; freeze(): void; readonly bytesIn: number }> {
  let frozen = false
  let bytesIn = 0
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    sockets.add(client)
    client.on('data', (chunk: Buffer) => (bytesIn += chunk.length))
    client.on('close', () => sockets.delete(client))
    client.on('error', () => {})
    if (frozen) return
    const upstream = createConnection({ port: upstreamPort, host: '127.0.0.1' })
    sockets.add(upstream)
    upstream.on('close', () => sockets.delete(upstream))
    upstream.on('error', () => client.destroy())
    client.on('data', (chunk) => frozen || upstream.write(chunk))
    upstream.on('data', (chunk) => frozen || client.write(chunk))
    client.on('end', () => frozen || upstream.end())
    upstream.on('end', () => frozen || client.end())
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(async () => {
    for (const socket of sockets) socket.destroy()
    server.close()
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('relay has no port')
  return {
    url: `http://127.0.0.1:${address.port}`,
    freeze: () => void (frozen = true),
    get bytesIn() {
      return bytesIn
    },
  }
}
/**
 * An HTTP relay that drops the `x-tether-heartbeat` header both ways: the control plane as a
 * version from before heartbeats answers (a test double for the older release, which cannot
 * be run here). Records the status of each long poll and counts those the client cut.
 */
async function olderControlPlane(t: TestContext, upstreamPort: number): Promise<{ url: string; polls: number[]; readonly cut: number }> {
  const polls: number[] = []
  let cut = 0
  const server = createHttpServer((req, res) => {
    const headers = { ...req.headers }
    delete headers['x-tether-heartbeat']
    const longPoll = /[?&]wait=/.test(req.url ?? '')
    const upstream = httpRequest({ host: '127.0.0.1', port: upstreamPort, path: req.url, method: req.method, headers }, (answer) => {
      const back = { ...answer.headers }
      delete back['x-tether-heartbeat']
      res.writeHead(answer.statusCode ?? 502, back)
      answer.pipe(res)
      if (longPoll) answer.on('end', () => polls.push(answer.statusCode ?? 0))
    })
    upstream.on('error', () => res.destroy())
    res.on('close', () => {
      if (!res.writableFinished) {
        if (longPoll) cut += 1
        upstream.destroy()
      }
    })
    req.pipe(upstream)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => {
    server.closeAllConnections()
    server.close()
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('relay has no port')
  return {
    url: `http://127.0.0.1:${address.port}`,
    polls,
    get cut() {
      return cut
    },
  }
}

const route = (serviceName: string) => normalizeRoute({ serviceName, destinations: [{ servicePath: [`/${serviceName}`], port: 80 }] })

describe('control plane fail-over', () => {
  it('uses the second control URL when the first one is dead', async (t) => {
    const control = await startControl(t)
    await control.store.put(route('web'), meta)
    const dead = `http://127.0.0.1:${await freePort()}`
    // random: 0 makes the agent start with the first (dead) URL, so fail-over is exercised.
    const p = await startAgent(t, { id: 'proxy-a', controlUrls: [dead, control.url], engine: 'recording', client: { random: () => 0 } })
    await p.agent.waitForVersion(1)
    assert.deepEqual((p.engine as RecordingEngine).current?.routes.map((r) => r.serviceName), ['web'])
    // and it reports there: the heartbeat went through the live replica too
    await waitFor('the heartbeat', async () => ((await control.api('GET', '/v1/proxies')).body.proxies.length === 1 ? true : undefined))
  })

  it('resolves a control host name to every address, fails over between them, and follows replicas that move', async (t) => {
    const port = await freePort()
    const store = createMemoryRouteStore()
    await store.put(route('web'), meta)
    // Two replicas sharing one store, on two loopback addresses; nothing listens on 127.0.0.2.
    const replicaA = await startControl(t, { store, port, host: '127.0.0.3' })
    let addresses = ['127.0.0.2', '127.0.0.3']
    const resolved: string[] = []
    const p = await startAgent(t, {
      id: 'proxy-a',
      controlUrls: [`http://control.test:${port}`],
      engine: 'recording',
      client: {
        resolve: async (name) => {
          resolved.push(name)
          return addresses
        },
        resolveIntervalMs: 60_000,
        random: () => 0, // start with the dead address
      },
    })
    await p.agent.waitForVersion(1)
    assert.equal(resolved[0], 'control.test')

    // Swarm reschedules the control plane: the replica on .3 goes, a new one comes up on .4.
    const replicaB = await startControl(t, { store, port, host: '127.0.0.4' })
    addresses = ['127.0.0.4']
    await replicaA.stop()
    await store.put(route('api'), meta)
    await waitFor('the agent to follow the new replica', async () => ((p.engine as RecordingEngine).current?.version === 2 ? true : undefined))
    await waitFor('the heartbeat on the new replica', async () => ((await replicaB.api('GET', '/v1/proxies')).body.proxies[0]?.version === 2 ? true : undefined))
  })

  it('spreads a fleet of proxies over the control replicas instead of all picking the same one', async (t) => {
    const store = createMemoryRouteStore()
    await store.put(route('web'), meta)
    const replicas = [await startControl(t, { store }), await startControl(t, { store })]
    const urls = replicas.map((r) => r.url)
    // Two agents whose random pick lands on either end of the list.
    for (const [i, pick] of [0, 0.99].entries()) {
      const p = await startAgent(t, { id: `proxy-${i}`, controlUrls: urls, engine: 'recording', client: { random: () => pick } })
      await p.agent.waitForVersion(1)
    }
    await waitFor('one long poll waiting on each replica', async () =>
      replicas.every((r) => r.app?.feed.waiters() === 1) ? true : undefined,
    )
  })

  it('leaves a replica that froze mid long poll when its heartbeats stop, not at the end of the long poll', async (t) => {
    const store = createMemoryRouteStore()
    await store.put(route('web'), meta)
    const [a, b] = [await startControl(t, { store }), await startControl(t, { store })]
    const relay = await freezableRelay(t, a.port)
    const failovers: Array<{ failures: string[]; now: string }> = []
    const p = await startAgent(t, {
      id: 'proxy-a',
      controlUrls: [relay.url, b.url],
      engine: 'recording',
      // Starts on the relayed replica; long polls of 30 s, and no periodic heartbeat PUT within
      // the test (one goes after each apply): only the long poll's own liveness can move it.
      client: { random: () => 0, onFailover: (failures, now) => void failovers.push({ failures, now }) },
      agent: { heartbeatMs: 60_000 },
    })
    await p.agent.waitForVersion(1)
    await waitFor('the long poll waiting on the relayed replica', async () => (a.app?.feed.waiters() === 1 ? true : undefined))
    relay.freeze()
    const frozenAt = performance.now()
    await store.put(route('api'), meta)
    await waitFor('the new version through the other replica', async () => ((p.engine as RecordingEngine).current?.version === 2 ? true : undefined), 10_000, 10)
    process.stdout.write(`MEASURED control failover (frozen relay, in-process replicas): version 2 applied ${Math.round(performance.now() - frozenAt)} ms after the freeze\n`)
    await waitFor('the heartbeat on the other replica', async () => ((await b.api('GET', '/v1/proxies')).body.proxies[0]?.version === 2 ? true : undefined))
    // What the proxy logs (tether proxy: one warning): the frozen replica, why, and the one used now.
    assert.equal(failovers[0]?.now, b.url)
    assert.match(failovers[0]?.failures.join('; ') ?? '', new RegExp(`^${relay.url}: silent for \\d+ ms \\(no heartbeat\\)`))
  })

  it('sends a heartbeat to another replica when the one it last used froze, with no long poll there to notice', async (t) => {
    const store = createMemoryRouteStore()
    const [a, b] = [await startControl(t, { store }), await startControl(t, { store })]
    const relay = await freezableRelay(t, a.port)
    const client = createControlClient({ urls: [relay.url, b.url], token: PROXY_TOKEN, random: () => 0 })
    t.after(() => client.close())
    await client.fetchConfig({ since: null, waitSeconds: 1 })
    assert.match(client.lastTarget ?? '', new RegExp(relay.url))
    relay.freeze()
    const started = performance.now()
    const heartbeat: ProxyHeartbeat = { version: 0, status: 'starting', lastError: null, refusedRoutes: [], node: 'n1', haproxyVersion: 'test', startedAt: new Date().toISOString(), backends: [] }
    await client.heartbeat('proxy-a', heartbeat)
    process.stdout.write(`MEASURED heartbeat PUT with the last-used replica frozen: delivered to the other in ${Math.round(performance.now() - started)} ms (silence allowed: twice the 1.5 s liveness timeout)\n`)
    assert.equal((await b.api('GET', '/v1/proxies')).body.proxies[0]?.id, 'proxy-a')
    assert.equal(client.lastTarget, b.url)
    // The next heartbeat goes straight to the replica that answered, not first to the frozen one.
    const sentToFrozen = relay.bytesIn
    await client.heartbeat('proxy-a', { ...heartbeat, version: 1 })
    assert.equal((await b.api('GET', '/v1/proxies')).body.proxies[0]?.version, 1)
    assert.equal(relay.bytesIn, sentToFrozen, 'nothing more sent to the frozen replica')
  })

  it('does not take its own stall (a long synchronous render) for a silent replica', async (t) => {
    const store = createMemoryRouteStore()
    await store.put(route('web'), meta)
    const control = await startControl(t, { store })
    // One replica only: a poll dropped as silent would have nowhere to go and would reject.
    const client = createControlClient({ urls: [control.url], token: PROXY_TOKEN })
    t.after(() => client.close())
    await client.fetchConfig({ since: null, waitSeconds: 1 }) // learns that it sends heartbeats
    const poll = client.fetchConfig({ since: 1, waitSeconds: 30 })
    await waitFor('the long poll waiting', async () => (control.app?.feed.waiters() === 1 ? true : undefined))
    // Block this process past the liveness timeout (1.5 s), as a render of a huge table would:
    // the heartbeats sent meanwhile are read after the stall, before any verdict.
    const until = performance.now() + 2500
    while (performance.now() < until) {
      // busy: the stimulus, not a wait
    }
    await store.put(route('api'), meta)
    const answer = await poll
    assert.equal(answer.changed, true)
    assert.equal(answer.changed && answer.snapshot.version, 2)
  })

  it('long-polls a control plane that sends no heartbeats (an older version) as before, waiting out each poll', async (t) => {
    const store = createMemoryRouteStore()
    await store.put(route('web'), meta)
    const control = await startControl(t, { store })
    // This replica's answers without the heartbeat header, and requests without it: what a
    // control plane from before heartbeats looks like on the wire.
    const old = await olderControlPlane(t, control.port)
    const p = await startAgent(t, {
      id: 'proxy-a',
      controlUrls: [old.url],
      engine: 'recording',
      // Long polls of 2 s, twice the liveness timeout: dropped as silent, they would never end in a 304.
      client: { livenessTimeoutMs: 1000 },
      agent: { waitSeconds: 2, heartbeatMs: 60_000 },
    })
    await p.agent.waitForVersion(1)
    await waitFor('two long polls answered 304 at their deadline', async () => (old.polls.filter((s) => s === 304).length >= 2 ? true : undefined), 20_000)
    await store.put(route('api'), meta)
    await waitFor('version 2 through the long poll', async () => ((p.engine as RecordingEngine).current?.version === 2 ? true : undefined))
    assert.equal(old.cut, 0, 'no long poll was cut by the agent')
    assert.ok(old.polls.includes(200), 'a long poll answered the change')
  })

  it('names every address it tried when none answers', async () => {
    const ports = [await freePort(), await freePort()]
    const client = createControlClient({ urls: ports.map((p) => `http://127.0.0.1:${p}`), token: PROXY_TOKEN })
    try {
      await assert.rejects(client.fetchConfig({ since: null, waitSeconds: 1 }), (error: unknown) => {
        assert.ok(error instanceof ControlUnavailableError)
        for (const p of ports) assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${p}: ECONNREFUSED`))
        return true
      })
    } finally {
      await client.close()
    }
  })

  it('reports a wrong proxy token as a refusal, not as an outage', async (t) => {
    const control = await startControl(t)
    const client = createControlClient({ urls: [control.url], token: 'not-the-proxy-token' })
    t.after(() => client.close())
    await assert.rejects(client.fetchConfig({ since: null, waitSeconds: 1 }), (error: unknown) => {
      assert.ok(error instanceof ControlRejectedError)
      assert.equal(error.statusCode, 401)
      assert.match(error.message, /UNAUTHORIZED/)
      return true
    })
  })
})
