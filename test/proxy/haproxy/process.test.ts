import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { closeBackends, startBackends, type BackendReply } from '../../helpers/backends.ts'
import { createClient, createTestProxy, route, waitFor } from '../../helpers/haproxy.ts'
import { createHaproxyEngine } from '../../../src/proxy/haproxy/haproxy-engine.ts'

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Opens a WebSocket-style upgraded connection through the proxy; resolves once the 101 arrived. */
async function upgrade(port: number, path: string): Promise<{ socket: import('node:net').Socket; head: string }> {
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`)
  let head = ''
  while (!head.includes('\r\n\r\n')) {
    const [chunk] = (await once(socket, 'data')) as [Buffer]
    head += chunk.toString()
  }
  return { socket, head }
}

describe('the HAProxy process', () => {
  it('refuses to start without HAProxy, saying how to install it', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'tether-nohaproxy-'))
    try {
      await assert.rejects(createHaproxyEngine({ stateDir, cookieKey: 'k'.repeat(16), haproxyBin: join(stateDir, 'no-such-haproxy') }), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'HAPROXY_NOT_INSTALLED')
        assert.match(err.message, /was not found/)
        assert.match(err.message, /apt-get install -y haproxy/)
        return true
      })
    } finally {
      await rm(stateDir, { recursive: true, force: true })
    }
  })

  it('passes WebSocket upgrades through, and a reload does not cut an open one', async (t) => {
    const backends = await startBackends(1)
    t.after(() => closeBackends(backends))
    const proxy = await createTestProxy(t)
    await proxy.engine.apply({ version: 1, routes: [route({ serviceName: 'ws', paths: ['/ws'], endpoints: [backends[0]!.address] })] })
    const { socket, head } = await upgrade(proxy.port, '/ws/chat')
    t.after(() => socket.destroy())
    assert.match(head, /^HTTP\/1\.1 101 /)
    // A new service: a structural change, so a reload (a path alone is added without one).
    await proxy.engine.apply({ version: 2, routes: [route({ serviceName: 'ws', paths: ['/ws'], endpoints: [backends[0]!.address] }), route({ serviceName: 'other', paths: ['/other'], endpoints: [backends[0]!.address] })] })
    assert.equal(proxy.engine.counters.reloads, 2)
    socket.write('ping after reload')
    const [echo] = (await once(socket, 'data')) as [Buffer]
    assert.equal(echo.toString(), 'ping after reload')
  })

  it('leaves no master or worker behind after stop(), old draining workers included', async (t) => {
    const backends = await startBackends(1)
    t.after(() => closeBackends(backends))
    const proxy = await createTestProxy(t, { hardStopAfterMs: 60_000 })
    await proxy.engine.apply({ version: 1, routes: [route({ serviceName: 'ws', paths: ['/'], endpoints: [backends[0]!.address] })] })
    // An open upgraded connection keeps the old worker draining after the reload.
    const { socket } = await upgrade(proxy.port, '/')
    t.after(() => socket.destroy())
    await proxy.engine.apply({ version: 2, routes: [route({ serviceName: 'ws', paths: ['/'], endpoints: [backends[0]!.address] }), route({ serviceName: 'x', paths: ['/x'], endpoints: [backends[0]!.address] })] })
    const info = await proxy.engine.process!.proc()
    assert.equal(info.oldWorkers.length, 1, 'an old worker is draining')
    const pids = [info.master.pid, ...info.workers.map((w) => w.pid), ...info.oldWorkers.map((w) => w.pid)]
    assert.ok(pids.every(alive))

    await proxy.engine.stop()
    const left = await waitFor('processes gone', async () => (pids.some(alive) ? undefined : pids.filter(alive)), 5_000)
    assert.deepEqual(left, [])
    await proxy.engine.stop() // idempotent
  })

  it('restarts HAProxy when it dies, serving the last applied configuration again', async (t) => {
    const backends = await startBackends(1)
    t.after(() => closeBackends(backends))
    const proxy = await createTestProxy(t, { restartBackoffMs: { min: 50, max: 1_000 } })
    await proxy.engine.apply({ version: 1, routes: [route({ serviceName: 'web', paths: ['/'], endpoints: [backends[0]!.address] })] })
    const client = createClient()
    t.after(() => client.close())
    const master = proxy.engine.process!.pid!
    process.kill(master, 'SIGKILL')

    const reply = await waitFor('served again', async () => {
      const r = await client.get(`${proxy.url}/`).catch(() => undefined)
      return r?.status === 200 ? r : undefined
    }, 10_000)
    assert.equal((reply.body as BackendReply).instance, 'app-1')
    assert.equal(proxy.engine.process!.restarts, 1)
    assert.notEqual(proxy.engine.process!.pid, master)
    // And it reloads as before.
    const again = await proxy.engine.apply({ version: 2, routes: [route({ serviceName: 'web', paths: ['/'], endpoints: [backends[0]!.address] })] })
    assert.deepEqual(again.refused, [])
  })
})
