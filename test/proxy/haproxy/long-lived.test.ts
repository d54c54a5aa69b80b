/**
 * Long-lived connections through a real HAProxy driven by the real engine: a WebSocket (an
 * upgraded connection echoing once a second), a streamed response (chunked, a line a second) and
 * a TCP session on a TCP route live through ten changes of OTHER routes of every kind (new
 * routes, a wildcard host, a rewrite, stickiness, removals, a new TCP listener), most of them
 * reloads, for more than 60 s, at the default TETHER_DRAIN_TIMEOUT. Before it was settable,
 * HAProxy's previous worker cut them all 30 s after the first reload.
 *
 * The first test takes about 65 s: the lifetime is the point. The second: a connection to a
 * route a reload removes, or to a task the route no longer has, ends: the client sees the close.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createServer as createHttpServer, type IncomingMessage } from 'node:http'
import { connect, createServer as createTcpServer, type Socket } from 'node:net'
import { once } from 'node:events'
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { normalizeRoute, type Route } from '../../../src/contracts/route.ts'
import { resolveSettings } from '../../../src/proxy/haproxy/settings.ts'
import { startBackend } from '../../helpers/backends.ts'
import { createTestProxy, route, waitFor } from '../../helpers/haproxy.ts'
import { freePort } from '../../helpers/redis-server.ts'

const LIFETIME_MS = 62_000

/** The application behind /live: upgrades echo what they receive; GET /live/stream sends a line a second until the client leaves. */
async function startLiveApp(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>()
  const server = createHttpServer((req: IncomingMessage, res) => {
    if (req.url?.startsWith('/live/stream') === true) {
      res.writeHead(200, { 'content-type': 'text/plain' })
      let n = 0
      const timer = setInterval(() => res.write(`line ${++n}\n`), 1000)
      res.on('close', () => clearInterval(timer))
      return
    }
    res.end('ok')
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64')
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
    socket.on('data', (chunk: Buffer) => socket.write(chunk))
    socket.on('error', () => {})
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}

async function startEchoServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>()
  const server = createTcpServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('data', (chunk) => socket.write(chunk))
    socket.on('error', () => {})
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  return { port, close: () => new Promise<void>((resolve) => (sockets.forEach((s) => s.destroy()), server.close(() => resolve()))) }
}

/** A client connection that records what it receives and whether (and when) it ended. */
interface Watched {
  socket: Socket
  received: () => string
  ended: () => number | undefined
}

function watch(socket: Socket): Watched {
  let text = ''
  let endedAt: number | undefined
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')))
  socket.on('close', () => (endedAt ??= Date.now()))
  socket.on('error', () => {})
  return { socket, received: () => text, ended: () => endedAt }
}

async function open(port: number, request?: string): Promise<Watched> {
  const socket = connect({ host: '127.0.0.1', port })
  await once(socket, 'connect')
  const w = watch(socket)
  if (request !== undefined) socket.write(request)
  return w
}

const upgrade = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: live.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`

describe('long-lived connections across changes of other routes', () => {
  it('a WebSocket, a streamed response and a TCP session live more than 60 s through ten changes of other routes, at the default drain timeout, and a WebSocket silent all along too', async (t) => {
    const app = await startLiveApp()
    t.after(() => app.close())
    const echo = await startEchoServer()
    t.after(() => echo.close())
    const other = await startBackend({ name: 'other' })
    t.after(() => other.close())
    // The default of TETHER_DRAIN_TIMEOUT, not the short one the other tests use.
    const drain = resolveSettings({ stateDir: '/unused', cookieKey: 'unused-key' }).hardStopAfterMs
    const proxy = await createTestProxy(t, { hardStopAfterMs: drain })
    const tcpPort = await freePort()
    const tcpPort2 = await freePort()
    const appAddress = `127.0.0.1:${app.port}`
    const live = route({ serviceName: 'live', paths: ['/live'], endpoints: [appAddress] })
    const db = normalizeRoute({ serviceName: 'db', destinations: [], tcp: [{ srcPort: tcpPort, port: echo.port }], endpoints: [`127.0.0.1:${echo.port}`] })
    const o = (serviceName: string, extra: Partial<Parameters<typeof route>[0]> = {}): Route => route({ serviceName, paths: [`/${serviceName}`], endpoints: [other.address], ...extra })

    // Ten changes of other routes, in order; every kind.
    const tables: Array<{ what: string; routes: Route[] }> = []
    let others: Route[] = []
    const change = (what: string, next: Route[]): void => {
      others = next
      tables.push({ what, routes: [live, db, ...others] })
    }
    change('a new route', [o('a')])
    change('a wildcard-host route', [...others, o('w', { domains: ['*.wild.test'] })])
    change('a route with a rewrite', [...others, normalizeRoute({ serviceName: 'rw', destinations: [{ servicePath: ['/rw'], port: 80, pathRewrite: [{ search: '^/rw/old', replace: '/new' }] }], endpoints: [other.address] })])
    change('stickiness on for another route', others.map((r) => (r.serviceName === 'a' ? o('a', { sticky: true }) : r)))
    change('the wildcard-host route removed', others.filter((r) => r.serviceName !== 'w'))
    change('a route with an exact host', [...others, o('b', { domains: ['b.test'] })])
    change('stickiness off again', others.map((r) => (r.serviceName === 'a' ? o('a') : r)))
    change('the rewrite route removed', others.filter((r) => r.serviceName !== 'rw'))
    change('a new TCP route', [...others, normalizeRoute({ serviceName: 'db2', destinations: [], tcp: [{ srcPort: tcpPort2, port: echo.port }], endpoints: [`127.0.0.1:${echo.port}`] })])
    change('every other route removed', [])
    assert.equal(tables.length, 10)

    await proxy.engine.apply({ version: 1, routes: [live, db] })
    const reloadsBefore = (await proxy.engine.process!.proc()).master.reloads

    const ws = await open(proxy.port, upgrade('/live/ws'))
    // Silent for the whole test: longer than `timeout client` and `timeout server` (60 s), within `timeout tunnel` (1 h).
    const idle = await open(proxy.port, upgrade('/live/idle'))
    const stream = await open(proxy.port, 'GET /live/stream HTTP/1.1\r\nHost: live.test\r\n\r\n')
    const tcp = await open(tcpPort)
    const openedAt = Date.now()
    t.after(() => [ws, idle, stream, tcp].forEach((c) => c.socket.destroy()))
    await waitFor('the WebSocket upgraded', async () => (/^HTTP\/1\.1 101/.test(ws.received()) ? true : undefined))
    await waitFor('the idle WebSocket upgraded', async () => (/^HTTP\/1\.1 101/.test(idle.received()) ? true : undefined))
    await waitFor('the first streamed line', async () => (stream.received().includes('line 1\n') ? true : undefined))

    // Traffic on every connection once a second, changes every 3.5 s, until the lifetime is reached.
    let sent = 0
    let firstChangeAt: number | undefined
    let nextChange = 0
    const changeEveryMs = 3_500
    // Until the lifetime is reached and every change applied (a slow machine applies later), bounded.
    for (let tick = 0; (Date.now() - openedAt < LIFETIME_MS || nextChange < tables.length) && tick < 200; tick++) {
      sent++
      ws.socket.write(`ws ${sent};`)
      tcp.socket.write(`tcp ${sent};`)
      if (nextChange < tables.length && Date.now() - openedAt >= 1_000 + nextChange * changeEveryMs) {
        const { what, routes } = tables[nextChange]!
        const result = await proxy.engine.apply({ version: nextChange + 2, routes })
        assert.deepEqual(result.refused, [], what)
        firstChangeAt ??= Date.now()
        nextChange++
      }
      await sleep(1000)
    }
    assert.equal(nextChange, tables.length, 'every change was applied')
    const reloads = (await proxy.engine.process!.proc()).master.reloads - reloadsBefore

    // Every connection is still open and still carries data both ways.
    for (const [name, c] of [['WebSocket', ws], ['idle WebSocket', idle], ['stream', stream], ['TCP session', tcp]] as const) assert.equal(c.ended(), undefined, `the ${name} is still open`)
    idle.socket.write('idle last;')
    await waitFor('the idle WebSocket echoes after 60 s of silence', async () => (idle.received().includes('idle last;') ? true : undefined))
    ws.socket.write('ws last;')
    tcp.socket.write('tcp last;')
    await waitFor('every WebSocket message echoed', async () => (ws.received().includes('ws last;') ? true : undefined))
    await waitFor('every TCP message echoed', async () => (tcp.received().includes('tcp last;') ? true : undefined))
    const lines = (stream.received().match(/line \d+\n/g) ?? []).length
    await waitFor('a new streamed line', async () => ((stream.received().match(/line \d+\n/g) ?? []).length > lines ? true : undefined))
    for (let i = 1; i <= sent; i++) {
      assert.ok(ws.received().includes(`ws ${i};`), `WebSocket message ${i} echoed`)
      assert.ok(tcp.received().includes(`tcp ${i};`), `TCP message ${i} echoed`)
    }
    const proc = await proxy.engine.process!.proc()
    const lived = Date.now() - openedAt
    const afterFirstReload = Date.now() - firstChangeAt!
    console.log(`MEASURED long-lived connections: ${(lived / 1000).toFixed(1)} s open, ${(afterFirstReload / 1000).toFixed(1)} s after the first change; ${reloads} reloads for ${tables.length} changes; ${proc.oldWorkers.length} old workers draining; ${sent} messages each way`)
    assert.ok(reloads >= 1, `the changes reloaded HAProxy (${reloads} reloads)`)
    assert.ok(proc.oldWorkers.length >= 1, 'the connections are held by a previous worker, which still drains')
  })

  it('a WebSocket to a route a reload removes, and one to a task the route no longer has, end (the client sees the close) while one on a kept route lives on', async (t) => {
    const a = await startBackend({ name: 'task-a' })
    const b = await startBackend({ name: 'task-b' })
    t.after(() => Promise.all([a.close(), b.close()]))
    const drain = resolveSettings({ stateDir: '/unused', cookieKey: 'unused-key' }).hardStopAfterMs
    const proxy = await createTestProxy(t, { hardStopAfterMs: drain })
    const keep = route({ serviceName: 'keep', paths: ['/keep'], endpoints: [a.address] })
    const gone = route({ serviceName: 'gone', paths: ['/gone'], endpoints: [a.address] })
    const task = (address: string): Route => route({ serviceName: 'task', paths: ['/task'], endpoints: [address] })
    await proxy.engine.apply({ version: 1, routes: [keep, gone, task(a.address)] })
    const sockets: Watched[] = []
    t.after(() => sockets.forEach((c) => c.socket.destroy()))
    const ws = async (path: string): Promise<Watched> => {
      const c = await open(proxy.port, upgrade(path))
      sockets.push(c)
      await waitFor(`${path} upgraded`, async () => (/^HTTP\/1\.1 101/.test(c.received()) ? true : undefined))
      return c
    }
    const echoes = async (c: Watched, text: string): Promise<void> => {
      c.socket.write(text)
      await waitFor(`'${text}' echoed`, async () => (c.received().includes(text) ? true : undefined))
    }
    const wsKeep = await ws('/keep')
    const wsGone = await ws('/gone')
    const wsTask = await ws('/task')
    await echoes(wsGone, 'gone 1;')

    // The route is removed (a reload): its WebSocket ends, the kept one does not.
    const removedAt = Date.now()
    await proxy.engine.apply({ version: 2, routes: [keep, task(a.address)] })
    await waitFor('the removed route\'s WebSocket closed', async () => (wsGone.ended() !== undefined ? true : undefined), 30_000)
    console.log(`MEASURED a removed route's WebSocket ended ${wsGone.ended()! - removedAt} ms after the change`)
    assert.equal(wsKeep.ended(), undefined, 'the kept route\'s WebSocket is open')
    await echoes(wsKeep, 'keep 1;')

    // The route's task is replaced (endpoints a → b, over the runtime API): its WebSocket to a ends.
    const replacedAt = Date.now()
    await proxy.engine.apply({ version: 3, routes: [keep, task(b.address)] })
    await waitFor('the removed task\'s WebSocket closed', async () => (wsTask.ended() !== undefined ? true : undefined), 90_000)
    console.log(`MEASURED a removed task's WebSocket ended ${wsTask.ended()! - replacedAt} ms after the change`)
    const fresh = await ws('/task')
    assert.match(fresh.received(), /X-Instance: task-b/i, 'a new WebSocket on the route reaches the new task')
    assert.equal(wsKeep.ended(), undefined, 'the kept route\'s WebSocket is still open')
    await echoes(wsKeep, 'keep 2;')
  })
})
