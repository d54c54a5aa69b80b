/**
 * Old workers bounded (TETHER_MAX_OLD_WORKERS) and reported: a reload storm with WebSockets open
 * leaves at most the bound of previous HAProxy workers draining; the oldest are stopped (their
 * connections end, cleanly: the client sees the close), the others keep theirs; the report says
 * how many, their age and their connections.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { startBackend } from '../../helpers/backends.ts'
import { createTestProxy, route, waitFor } from '../../helpers/haproxy.ts'

interface Ws {
  socket: Socket
  received: () => string
  closed: () => boolean
}

async function websocket(port: number): Promise<Ws> {
  const socket = connect({ host: '127.0.0.1', port })
  await once(socket, 'connect')
  let text = ''
  let closed = false
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')))
  socket.on('close', () => (closed = true))
  socket.on('error', () => {})
  socket.write('GET /live HTTP/1.1\r\nHost: live.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
  await waitFor('the upgrade', async () => (/^HTTP\/1\.1 101/.test(text) ? true : undefined))
  return { socket, received: () => text, closed: () => closed }
}

describe('old workers', () => {
  it('keeps at most TETHER_MAX_OLD_WORKERS draining: the oldest are stopped and their WebSockets end, the others keep theirs, and the report counts them', async (t) => {
    const backend = await startBackend({ name: 'live' })
    t.after(() => backend.close())
    const proxy = await createTestProxy(t, { hardStopAfterMs: 3_600_000, maxOldWorkers: 2 })
    const live = route({ serviceName: 'live', paths: ['/live'], endpoints: [backend.address] })
    await proxy.engine.apply({ version: 1, routes: [live] })
    const none = await proxy.engine.oldWorkers()
    assert.equal(none?.count, 0, 'no old worker before a reload')

    // Four reloads, each after a WebSocket was opened on the worker it replaces.
    const sockets: Ws[] = []
    t.after(() => sockets.forEach((s) => s.socket.destroy()))
    for (let i = 1; i <= 4; i++) {
      sockets.push(await websocket(proxy.port))
      await proxy.engine.apply({ version: i + 1, routes: [live, route({ serviceName: `other-${i}`, paths: [`/other-${i}`], endpoints: [backend.address] })] })
    }
    await waitFor('the two oldest WebSockets closed', async () => (sockets[0]!.closed() && sockets[1]!.closed() ? true : undefined))
    for (const [i, ws] of sockets.slice(2).entries()) {
      assert.equal(ws.closed(), false, `WebSocket ${i + 3} is still open`)
      ws.socket.write(`still here ${i};`)
      await waitFor(`WebSocket ${i + 3} echoes`, async () => (ws.received().includes(`still here ${i};`) ? true : undefined))
    }
    const report = await waitFor('two old workers reported', async () => {
      const r = await proxy.engine.oldWorkers()
      // Each one's connections come from its own CLI (a 2 s deadline): asked again if one was late on a loaded machine.
      return r?.count === 2 && r.workers.every((w) => w.connections !== null) ? r : undefined
    })
    assert.equal(report.maxCount, 2)
    assert.equal(report.drainTimeoutSeconds, 3600)
    assert.equal(report.connections, 2, 'each old worker holds its WebSocket')
    assert.deepEqual(report.workers.map((w) => w.connections), [1, 1])
    assert.deepEqual(report.workers.map((w) => w.reloads).sort(), [1, 2], 'the youngest two are kept (replaced by the last two reloads)')
    assert.ok(report.workers.every((w) => Number.isInteger(w.ageSeconds) && w.pid > 0))
    console.log(`MEASURED old workers after 4 reloads with WebSockets, bound 2: ${JSON.stringify(report)}`)
  })
})
