/**
 * TCP routes end to end, with real clients: the control plane stores the route, a real agent
 * renders it into a real HAProxy, and `redis-cli` talks to a real redis-server through the
 * proxy's listen port, while the same service's HTTP destination answers on the HTTP port.
 * Tasks come from a DNS server on loopback (as Docker's DNS answers tasks.<service>), so each
 * destination reaches the task's address on its own port. Also: affinity by client address,
 * the PROXY protocol to the backend, and a port the proxy cannot bind, shown in its status
 * while everything else is served.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { connect, createServer, type Server } from 'node:net'
import { describe, it, type TestContext } from 'node:test'
import { promisify } from 'node:util'
import { startBackend, type Backend } from '../helpers/backends.ts'
import { startDnsServer } from '../helpers/dns-server.ts'
import { freePort, startRedisServer } from '../helpers/redis-server.ts'
import { API_TOKEN, proxyUrl, startAgent, startControl, type TestAgent } from './harness.ts'

const run = promisify(execFile)

async function redisCli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10_000 })
  return stdout.trim()
}

/** A TCP server on `host:port` that answers each connection with its name, and 'proxy-v2' when the connection starts with a PROXY protocol v2 header. */
async function nameServer(t: TestContext, name: string, host: string, port: number): Promise<Server> {
  const server = createServer((socket) => {
    socket.once('data', (data) => {
      const v2 = data.subarray(0, 12).equals(Buffer.from('0d0a0d0a000d0a515549540a', 'hex'))
      socket.end(`${name}${v2 ? ' proxy-v2' : ''}\n`)
    })
    socket.on('error', () => undefined)
  })
  await new Promise<void>((resolve) => server.listen(port, host, resolve))
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return server
}

/** Connects to 127.0.0.1:port, sends a line, reads the answer until the server closes. */
function ask(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = ''
    const socket = connect(port, '127.0.0.1', () => socket.write('hello\n'))
    socket.setTimeout(5000, () => socket.destroy(new Error('timeout')))
    socket.on('data', (d) => (text += d.toString()))
    socket.on('end', () => resolve(text.trim()))
    socket.on('error', reject)
  })
}

/** The proxy's own ports: bound only with its first configuration, so a port free now may be one of them. */
function ownPorts(agent: TestAgent): number[] {
  return [agent.proxy!.port, Number(new URL(agent.proxy!.adminUrl).port)]
}

/** A free port that is none of `taken`. Bounded. */
async function freePortBut(taken: number[]): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await freePort()
    if (!taken.includes(port)) return port
  }
  throw new Error(`no free port besides ${taken.join(', ')}`)
}

describe('TCP routes through a real HAProxy', () => {
  it('redis-cli reaches a real redis-server through the listen port, while the same service answers HTTP on its other destination', async (t) => {
    const redis = await startRedisServer()
    t.after(() => redis.stop())
    const ui: Backend = await startBackend({ name: 'ui' })
    t.after(() => ui.close())
    const dns = await startDnsServer({ 'tasks.cache': ['127.0.0.1'] })
    t.after(() => dns.close())
    const control = await startControl(t)
    const proxy = await startAgent(t, { id: 'p1', controlUrls: [control.url], proxy: { resolvers: [dns.address], dnsIntervalMs: 200 } })
    const srcPort = await freePortBut(ownPorts(proxy))

    // DFP's indexed form: destination 0 is HTTP, destination 1 is TCP (DFP's rule: port.1 and srcPort.1).
    const put = await control.api('GET', `/v1/docker-flow-proxy/reconfigure?serviceName=cache&servicePath=/ui&port=${ui.port}&reqMode.1=tcp&srcPort.1=${srcPort}&port.1=${redis.port}&wait=converged&timeout=20`)
    assert.equal(put.status, 200, JSON.stringify(put.body))

    assert.equal(await redisCli(srcPort, 'SET', 'greeting', 'through-tether'), 'OK')
    assert.equal(await redisCli(srcPort, 'GET', 'greeting'), 'through-tether')
    // It is the real redis-server that holds it.
    assert.equal(await redisCli(redis.port, 'GET', 'greeting'), 'through-tether')
    const http = await fetch(`${proxyUrl(proxy)}/ui/x`)
    assert.equal(http.status, 200)
    assert.equal(((await http.json()) as { instance: string }).instance, 'ui')

    // The TCP backend is health-checked and reported like any other.
    let health: Array<{ serviceName: string; port: number; up: number }> = []
    for (let i = 0; i < 50 && !health.some((b) => b.port === redis.port && b.up === 1); i++) {
      await new Promise((r) => setTimeout(r, 200))
      health = (await control.api('GET', '/v1/proxies')).body.proxies?.[0]?.backends ?? []
    }
    assert.deepEqual(
      health.map((b) => [b.serviceName, b.port, b.up]).sort(),
      [
        ['cache', redis.port, 1],
        ['cache', ui.port, 1],
      ].sort(),
    )

    // Removing the route closes the listener (the set of ports follows the table).
    assert.equal((await control.api('DELETE', '/v1/routes/cache?wait=converged&timeout=20')).status, 200)
    await assert.rejects(redisCli(srcPort, 'PING').then((out) => (out.includes('PONG') ? out : Promise.reject(new Error(out)))))
  })

  it('pins a client address to one task when sticky, balances otherwise, and sends the PROXY protocol when asked', async (t) => {
    const port = await freePort()
    await nameServer(t, 'task-a', '127.0.0.2', port)
    await nameServer(t, 'task-b', '127.0.0.3', port)
    const dns = await startDnsServer({ 'tasks.pinned': ['127.0.0.2', '127.0.0.3'], 'tasks.spread': ['127.0.0.2', '127.0.0.3'] })
    t.after(() => dns.close())
    const control = await startControl(t)
    const agent = await startAgent(t, { id: 'p1', controlUrls: [control.url], proxy: { resolvers: [dns.address], dnsIntervalMs: 200 } })
    const own = ownPorts(agent)
    const pinned = await freePortBut(own)
    const spread = await freePortBut([...own, pinned])
    const p = await control.api('PUT', `/v1/reconfigure?serviceName=pinned&reqMode=tcp&srcPort=${pinned}&port=${port}&sticky=true&wait=converged&timeout=20`)
    assert.equal(p.status, 200, JSON.stringify(p.body))
    const r = await control.api('PUT', `/v1/reconfigure?serviceName=spread&reqMode=tcp&srcPort=${spread}&port=${port}&sendProxyProtocol=true&wait=converged&timeout=20`)
    assert.equal(r.status, 200, JSON.stringify(r.body))

    const sticky = new Set<string>()
    for (let i = 0; i < 6; i++) sticky.add(await ask(pinned))
    assert.equal(sticky.size, 1, [...sticky].join(', '))
    assert.match([...sticky][0]!, /^task-[ab]$/)
    const balanced = new Set<string>()
    for (let i = 0; i < 6; i++) balanced.add(await ask(spread))
    assert.deepEqual([...balanced].sort(), ['task-a proxy-v2', 'task-b proxy-v2'])
  })

  it("a TCP route whose port a proxy cannot bind is not 'converged': 502 ROUTE_NOT_SERVED naming the proxy and the port (curl --fail-with-body fails), shown in the proxy's status, everything else served", async (t) => {
    const blocked = await freePort()
    const blocker = createServer()
    await new Promise<void>((resolve) => blocker.listen(blocked, '127.0.0.1', resolve))
    const web = await startBackend({ name: 'web' })
    t.after(() => web.close())
    const control = await startControl(t)
    const proxy = await startAgent(t, { id: 'p1', controlUrls: [control.url] })
    const free = await freePortBut(ownPorts(proxy))
    for (const q of [`serviceName=web&servicePath=/web&port=80&endpoints=${web.address}`, `serviceName=ok&reqMode=tcp&srcPort=${free}&port=${web.port}&endpoints=${web.address}`]) {
      const res = await control.api('PUT', `/v1/reconfigure?${q}&wait=converged&timeout=20`)
      assert.equal(res.status, 200, JSON.stringify(res.body))
    }

    // As a pipeline sees it: curl --fail-with-body exits non-zero, with the reason in the body.
    const url = `${control.url}/v1/reconfigure?serviceName=taken&reqMode=tcp&srcPort=${blocked}&port=1&endpoints=127.0.0.1:1&wait=converged&timeout=20`
    const curl = await run('curl', ['-sS', '--fail-with-body', '-X', 'PUT', '-H', `authorization: Bearer ${API_TOKEN}`, url], { timeout: 30_000 }).then(
      () => ({ code: 0, stdout: '' }),
      (err: { code: number; stdout: string }) => ({ code: err.code, stdout: err.stdout }),
    )
    assert.equal(curl.code, 22, curl.stdout)
    const answer = JSON.parse(curl.stdout) as { statusCode: number; code: string; message: string }
    assert.equal(answer.statusCode, 502)
    assert.equal(answer.code, 'ROUTE_NOT_SERVED')
    assert.match(answer.message, new RegExp(`proxy p1: TCP port ${blocked} is not served by this proxy: it cannot be bound \\(EADDRINUSE`))
    assert.match(answer.message, /The change itself is stored \(version \d+\)/)
    // Stored, as the answer says, and the proxy's status shows it.
    assert.equal((await control.api('GET', '/v1/routes/taken')).status, 200)
    const status = (await control.api('GET', '/v1/proxies')).body.proxies?.[0] as { status: string; routeProblems?: Array<{ serviceName: string; problem: string }> }
    assert.equal(status.status, 'degraded')
    assert.deepEqual(status.routeProblems?.map((p) => p.serviceName), ['taken'])
    // The same request again (a CI retry) answers the same: the route is still not served.
    const again = await control.api('PUT', url.slice(control.url.length))
    assert.equal(again.status, 502, JSON.stringify(again.body))
    assert.equal(again.body.code, 'ROUTE_NOT_SERVED')

    // Everything else is served: the HTTP route and the TCP route on a free port.
    assert.equal((await fetch(`${proxyUrl(proxy)}/web`)).status, 200)
    const viaTcp = await fetch(`http://127.0.0.1:${free}/web`)
    assert.equal(viaTcp.status, 200)
    assert.equal(((await viaTcp.json()) as { instance: string }).instance, 'web')

    // Once the port is free, the next version binds it, and converged means served again.
    await new Promise<void>((resolve) => blocker.close(() => resolve()))
    const bump = await control.api('PUT', `/v1/reconfigure?serviceName=taken&reqMode=tcp&srcPort=${blocked}&port=${web.port}&endpoints=${web.address}&wait=converged&timeout=20`)
    assert.equal(bump.status, 200, JSON.stringify(bump.body))
    assert.equal(bump.body.convergence.converged, 1)
    const now = await fetch(`http://127.0.0.1:${blocked}/web`)
    assert.equal(now.status, 200)
  })

  it("refuses a TCP route on a live proxy's own HTTP or admin port with 409 LISTENER_CONFLICT naming the field, the proxy and the listener, and stores nothing", async (t) => {
    const control = await startControl(t)
    const adminPort = await freePort()
    const proxy = await startAgent(t, { id: 'p1', controlUrls: [control.url], proxy: { adminListen: `127.0.0.1:${adminPort}` } })
    const httpPort = Number(new URL(proxyUrl(proxy)).port)
    // The proxy reports its listeners with its first heartbeat.
    for (let i = 0; i < 100 && (await control.api('GET', '/v1/proxies')).body.proxies?.[0]?.listeners === undefined; i++) await new Promise((r) => setTimeout(r, 100))
    const before = (await control.api('GET', '/v1/routes')).body
    for (const [port, listener] of [
      [adminPort, 'admin listener \\(TETHER_ADMIN_LISTEN\\)'],
      [httpPort, 'HTTP listener \\(TETHER_PROXY_LISTEN\\)'],
    ] as const) {
      for (const path of [`/v1/reconfigure?serviceName=clash&reqMode=tcp&srcPort=${port}&port=1&endpoints=127.0.0.1:1`, `/v1/docker-flow-proxy/reconfigure?serviceName=clash&reqMode=tcp&srcPort=${port}&port=1`]) {
        const res = await control.api('PUT', path)
        assert.equal(res.status, 409, `${path}: ${JSON.stringify(res.body)}`)
        assert.equal(res.body.code, 'LISTENER_CONFLICT')
        assert.match(res.body.message, new RegExp(`^srcPort: TCP port ${port} is the ${listener} of live proxy p1; .*Nothing was stored`))
      }
    }
    assert.deepEqual((await control.api('GET', '/v1/routes')).body, before)
    assert.equal((await control.api('GET', '/v1/routes/clash')).status, 404)
    // Another port is accepted and served.
    const free = await freePortBut([httpPort, adminPort])
    const ok = await control.api('PUT', `/v1/reconfigure?serviceName=clash&reqMode=tcp&srcPort=${free}&port=1&endpoints=127.0.0.1:1&wait=converged&timeout=20`)
    assert.equal(ok.status, 200, JSON.stringify(ok.body))
  })
})
