/**
 * Per-client limits (TETHER_CLIENT_MAX_CONNECTIONS, TETHER_CLIENT_MAX_REQUEST_RATE): one address
 * over its limit is refused while another address is served. Two loopback addresses stand for
 * two clients (127.0.0.2 and 127.0.0.1: Linux routes all of 127.0.0.0/8 to lo).
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { startBackend, startWebSocketTask } from '../../helpers/backends.ts'
import { createTestProxy, route, waitFor } from '../../helpers/haproxy.ts'

/** Opens a connection from `localAddress` and upgrades it (WebSocket): held open until destroyed. Resolves with the 101 line, or 'closed' if the proxy closed it first. */
async function upgraded(port: number, localAddress: string): Promise<{ socket: Socket; answer: string }> {
  const socket = connect({ host: '127.0.0.1', port, localAddress })
  await once(socket, 'connect')
  socket.write('GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
  const answer = await new Promise<string>((resolve) => {
    let text = ''
    const timer = setTimeout(() => resolve(`no answer within 10 s: ${text}`), 10_000)
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1')
      if (text.includes('\r\n\r\n')) {
        clearTimeout(timer)
        resolve(text.split('\r\n')[0] ?? '')
      }
    })
    socket.on('close', () => {
      clearTimeout(timer)
      resolve(text === '' ? 'closed' : text.split('\r\n')[0] ?? '')
    })
    socket.on('error', () => {})
  })
  return { socket, answer }
}

/** One GET / over a fresh connection from `localAddress`: the status code, or 'closed' when the proxy closed it without an answer. */
async function statusFrom(port: number, localAddress: string): Promise<number | 'closed'> {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(await answerFrom(port, localAddress))
  return m === null ? 'closed' : Number(m[1])
}

/** The raw answer to one request sent from localAddress ('' when the connection was closed without one). */
async function answerFrom(port: number, localAddress: string): Promise<string> {
  const socket = connect({ host: '127.0.0.1', port, localAddress })
  socket.on('error', () => {})
  socket.write('GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n')
  let text = ''
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')))
  const timer = setTimeout(() => socket.destroy(), 10_000)
  await new Promise((resolve) => socket.on('close', resolve))
  clearTimeout(timer)
  return text
}

describe('per-client limits', () => {
  it('refuses a connection over one address\'s limit while another address is served, and serves that address again once it holds fewer', async (t) => {
    const app = await startWebSocketTask(t)
    const proxy = await createTestProxy(t, { clientMaxConnections: 3, clientMaxRequestRate: 0 })
    await proxy.engine.apply({ version: 1, routes: [route({ serviceName: 'app', endpoints: [app] })] })

    const held: Socket[] = []
    t.after(() => held.forEach((s) => s.destroy()))
    for (let i = 0; i < 3; i++) {
      const { socket, answer } = await upgraded(proxy.port, '127.0.0.2')
      held.push(socket)
      assert.match(answer, /^HTTP\/1\.1 101/, `connection ${i + 1} of 3 from 127.0.0.2 is upgraded`)
    }
    const fourth = await upgraded(proxy.port, '127.0.0.2')
    held.push(fourth.socket)
    assert.equal(fourth.answer, 'closed', 'a fourth connection from 127.0.0.2 is closed without an answer')
    assert.equal(await statusFrom(proxy.port, '127.0.0.2'), 'closed', 'a plain request from 127.0.0.2 gets no answer either')
    assert.equal(await statusFrom(proxy.port, '127.0.0.1'), 200, '127.0.0.1 is served meanwhile')

    // One held connection ends (the application closes its side in turn): the address is under its limit again.
    held[0]!.destroy()
    const status = await waitFor('127.0.0.2 served again', async () => {
      const s = await statusFrom(proxy.port, '127.0.0.2')
      return s === 200 ? s : undefined
    }, 30_000)
    assert.equal(status, 200)
  })

  it('answers 429 to an address over its request rate while another address is served', async (t) => {
    const backend = await startBackend({ name: 'app-1' })
    t.after(() => backend.close())
    const proxy = await createTestProxy(t, { clientMaxConnections: 0, clientMaxRequestRate: 20 })
    await proxy.engine.apply({ version: 1, routes: [route({ serviceName: 'app', endpoints: [backend.address] })] })

    const statuses: Array<number | 'closed'> = []
    // 20 requests in 10 s are allowed; the ones after are refused (bounded: 40 requests).
    for (let i = 0; i < 40 && !statuses.includes(429); i++) statuses.push(await statusFrom(proxy.port, '127.0.0.2'))
    assert.deepEqual(statuses.slice(0, 20), Array(20).fill(200), 'the first 20 requests of 127.0.0.2 are served')
    assert.equal(statuses.at(-1), 429, `127.0.0.2 is refused once over its rate (statuses: ${statuses.join(',')})`)
    assert.match(await answerFrom(proxy.port, '127.0.0.2'), /^HTTP\/1\.1 429 [^]*\r\nretry-after: 10\r\n/i, 'the 429 says when to come back')
    assert.equal(await statusFrom(proxy.port, '127.0.0.1'), 200, '127.0.0.1 is served meanwhile')
  })

  it('limits nothing when both limits are 0 (a balancer in front: every client has its address)', async (t) => {
    const backend = await startBackend({ name: 'app-1' })
    t.after(() => backend.close())
    const proxy = await createTestProxy(t, { clientMaxConnections: 0, clientMaxRequestRate: 0 })
    await proxy.engine.apply({ version: 1, routes: [route({ serviceName: 'app', endpoints: [backend.address] })] })
    const held: Socket[] = []
    t.after(() => held.forEach((s) => s.destroy()))
    for (let i = 0; i < 5; i++) {
      const { socket, answer } = await upgraded(proxy.port, '127.0.0.2')
      held.push(socket)
      assert.match(answer, /^HTTP\/1\.1 101/, `connection ${i + 1} from 127.0.0.2 is upgraded`)
    }
    assert.equal(await statusFrom(proxy.port, '127.0.0.2'), 200)
  })
})
