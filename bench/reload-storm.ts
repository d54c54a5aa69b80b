/**
 * A reload storm with WebSockets open (issue 19): `--reloads` changes that each reload HAProxy,
 * with `--websockets` upgraded connections opened along the way (spread evenly, so every old
 * worker holds some), at the default TETHER_DRAIN_TIMEOUT (1 h: nothing drains by itself).
 * Memory (VmRSS) and descriptors (/proc/<pid>/fd) of every HAProxy process, before and after,
 * once with the old-worker bound (TETHER_MAX_OLD_WORKERS, default 10) and once without (0).
 *
 *   npx tsx bench/reload-storm.ts [--reloads 100] [--websockets 200]
 */
import { readdir, readFile, mkdtemp, rm } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { normalizeRoute } from '../src/contracts/route.ts'
import { createHaproxyEngine, type HaproxyEngine } from '../src/proxy/haproxy/haproxy-engine.ts'
import { startBackend } from '../test/helpers/backends.ts'
import { freePort } from '../test/helpers/redis-server.ts'

const { values } = parseArgs({ options: { reloads: { type: 'string', default: '100' }, websockets: { type: 'string', default: '200' } } })
const reloads = Number(values.reloads)
const websockets = Number(values.websockets)

/** RSS (MB) and open descriptors summed over the master and every worker, old ones included. */
async function footprint(engine: HaproxyEngine): Promise<{ processes: number; rssMb: number; fds: number }> {
  const info = await engine.process!.proc()
  const pids = [info.master.pid, ...info.workers.map((w) => w.pid), ...info.oldWorkers.map((w) => w.pid)]
  let rssKb = 0
  let fds = 0
  for (const pid of pids) {
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
    rssKb += Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0)
    fds += (await readdir(`/proc/${pid}/fd`).catch(() => [])).length
  }
  return { processes: pids.length, rssMb: Math.round(rssKb / 1024), fds }
}

async function websocket(port: number): Promise<{ socket: Socket; closed: () => boolean }> {
  const socket = connect({ host: '127.0.0.1', port })
  await once(socket, 'connect')
  let closed = false
  let text = ''
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')))
  socket.on('close', () => (closed = true))
  socket.on('error', () => {})
  socket.write('GET /live HTTP/1.1\r\nHost: live.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
  // Upgraded before the next reload (bounded: 10 s).
  for (let i = 0; i < 1000 && !text.includes('\r\n\r\n') && !closed; i++) await sleep(10)
  if (!/^HTTP\/1\.1 101/.test(text)) throw new Error(`no upgrade: ${text.slice(0, 80)}`)
  return { socket, closed: () => closed }
}

const dir = await mkdtemp(join(tmpdir(), 'tether-bench-storm-'))
const backend = await startBackend({ name: 'live' })
try {
  console.log(`reload storm: ${reloads} reloads, ${websockets} WebSockets opened along the way, drain timeout 1 h`)
  for (const maxOldWorkers of [10, 0]) {
    const port = await freePort()
    const engine = await createHaproxyEngine({ stateDir: join(dir, `bound-${maxOldWorkers}`), listen: `127.0.0.1:${port}`, adminListen: `127.0.0.1:${await freePort()}`, resolvers: ['127.0.0.1:1'], cookieKey: 'bench-cookie-key', maxOldWorkers })
    const sockets: Array<{ socket: Socket; closed: () => boolean }> = []
    try {
      const live = normalizeRoute({ serviceName: 'live', destinations: [{ servicePath: ['/live'], port: 80 }], endpoints: [backend.address] })
      await engine.apply({ version: 1, routes: [live] })
      const before = await footprint(engine)
      const started = performance.now()
      for (let i = 1; i <= reloads; i++) {
        const target = Math.round((i * websockets) / reloads)
        while (sockets.length < target) sockets.push(await websocket(port))
        // A different extra route each time: every change reloads.
        await engine.apply({ version: i + 1, routes: [live, normalizeRoute({ serviceName: `other-${i}`, destinations: [{ servicePath: [`/other-${i}`], port: 80 }], endpoints: [backend.address] })] })
      }
      const seconds = (performance.now() - started) / 1000
      await sleep(1000)
      const after = await footprint(engine)
      const old = await engine.oldWorkers()
      const open = sockets.filter((s) => !s.closed()).length
      console.log(
        `  TETHER_MAX_OLD_WORKERS=${maxOldWorkers === 0 ? '0 (no bound)' : maxOldWorkers}: ${reloads} reloads in ${seconds.toFixed(1)} s; ` +
          `before ${before.processes} processes, ${before.rssMb} MB, ${before.fds} fds; after ${after.processes} processes, ${after.rssMb} MB, ${after.fds} fds; ` +
          `old workers ${old?.count} holding ${old?.connections} connections; WebSockets still open ${open} of ${sockets.length}`,
      )
    } finally {
      for (const s of sockets) s.socket.destroy()
      await engine.stop()
    }
  }
} finally {
  await backend.close()
  await rm(dir, { recursive: true, force: true })
}
