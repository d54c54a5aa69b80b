/**
 * Slow clients (issue 20 item 6): one address holds many connections that trickle their request
 * headers (a byte a second, as slowloris does) while a normal client on another address
 * measures its throughput. Three phases against one real proxy (Tether's engine, default
 * settings unless said):
 *   unloaded — the normal client alone;
 *   limited  — with the trickling address, per-client limits at their defaults
 *              (TETHER_CLIENT_MAX_CONNECTIONS 1000, TETHER_CLIENT_MAX_REQUEST_RATE 10000 / 10 s);
 *   open     — the same with both limits 0 (as behind a balancer): what one address does without them.
 * The trickling address is 127.0.0.2; the normal clients are 10 keep-alive connections from
 * 127.0.1.1-10 (ten browsers, each under the per-address rate). A trickling connection the proxy
 * closes is opened again a second later.
 * maxconn is the default 4096, nbthread 1; the machine's cores are shared by everything, so
 * compare the phases of one run.
 *
 *   npx tsx bench/slow-clients.ts [--trickle 4300] [--seconds 12] [--reconnect-ms 1000]
 */
import { connect, type Socket } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { normalizeRoute } from '../src/contracts/route.ts'
import { createHaproxyEngine } from '../src/proxy/haproxy/haproxy-engine.ts'
import { startBackend } from '../test/helpers/backends.ts'
import { freePort } from '../test/helpers/redis-server.ts'

const { values } = parseArgs({
  options: { trickle: { type: 'string', default: '4300' }, seconds: { type: 'string', default: '12' }, 'reconnect-ms': { type: 'string', default: '1000' }, role: { type: 'string' }, port: { type: 'string' } },
})
const trickleCount = Number(values.trickle)
const seconds = Number(values.seconds)
const reconnectMs = Number(values['reconnect-ms'])

/** `count` connections from 127.0.0.2 sending a request's headers a byte a second, reopened a second after the proxy closes one. */
function trickle(port: number, count: number): { open: () => number; closedByProxy: () => number; stop: () => void } {
  const sockets = new Set<Socket>()
  let stopped = false
  let closedByProxy = 0
  const text = 'GET /app/slow HTTP/1.1\r\nHost: bench.test\r\n' + 'X-Slow: ' + 'a'.repeat(10_000)
  const one = (): void => {
    if (stopped) return
    const socket = connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' })
    let i = 0
    let timer: NodeJS.Timeout | undefined
    socket.on('connect', () => {
      sockets.add(socket)
      timer = setInterval(() => socket.write(text[i++ % text.length]!), 1000)
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      if (timer !== undefined) clearInterval(timer)
      sockets.delete(socket)
      if (stopped) return
      closedByProxy++
      setTimeout(one, reconnectMs)
    })
  }
  // Opened in batches so the opening itself is not a connection flood.
  void (async () => {
    for (let n = 0; n < count && !stopped; n += 100) {
      for (let k = n; k < Math.min(count, n + 100); k++) one()
      await sleep(20)
    }
  })()
  return {
    open: () => sockets.size,
    closedByProxy: () => closedByProxy,
    stop: () => {
      stopped = true
      for (const s of sockets) s.destroy()
    },
  }
}

/**
 * The normal clients: 10 keep-alive connections, each from its own address (127.0.1.1-10, like
 * ten browsers, each under the per-address request rate), one request after the other for
 * `seconds`. Counts answers by status; a connection the proxy closes is opened again.
 */
async function measure(port: number): Promise<{ requests: number; perSecond: number; non2xx: number; reconnects: number; p99: number }> {
  const deadline = Date.now() + seconds * 1000
  let requests = 0
  let non2xx = 0
  let reconnects = 0
  const latencies: number[] = []
  const client = async (address: string): Promise<void> => {
    while (Date.now() < deadline) {
      const socket = connect({ host: '127.0.0.1', port, localAddress: address })
      socket.setNoDelay(true)
      let buffer = ''
      let waiting: (() => void) | undefined
      let closed = false
      socket.on('data', (chunk: Buffer) => {
        buffer += chunk.toString('latin1')
        waiting?.()
      })
      socket.on('close', () => {
        closed = true
        waiting?.()
      })
      socket.on('error', () => {})
      while (!closed && Date.now() < deadline) {
        const started = performance.now()
        socket.write('GET /app/x HTTP/1.1\r\nHost: bench.test\r\n\r\n')
        // One whole answer: headers, then content-length bytes (bounded by the deadline).
        let done = false
        while (!done && !closed && Date.now() < deadline + 5000) {
          const end = buffer.indexOf('\r\n\r\n')
          if (end >= 0) {
            const length = Number(/content-length: *(\d+)/i.exec(buffer.slice(0, end))?.[1] ?? 0)
            if (buffer.length >= end + 4 + length) {
              const status = Number(buffer.slice(9, 12))
              buffer = buffer.slice(end + 4 + length)
              requests++
              if (status < 200 || status > 299) non2xx++
              latencies.push(performance.now() - started)
              done = true
              break
            }
          }
          await new Promise<void>((resolve) => {
            waiting = resolve
            setTimeout(resolve, 1000).unref()
          })
        }
      }
      socket.destroy()
      if (Date.now() < deadline) reconnects++
    }
  }
  await Promise.all(Array.from({ length: 10 }, (_, i) => client(`127.0.1.${i + 1}`)))
  latencies.sort((a, b) => a - b)
  return { requests, perSecond: Math.round(requests / seconds), non2xx, reconnects, p99: Math.round(latencies[Math.floor(latencies.length * 0.99)] ?? 0) }
}

// The trickling clients run in a process of their own (so their sockets do not slow the measuring client's event loop).
if (values.role === 'trickle') {
  const slow = trickle(Number(values.port), trickleCount)
  const report = setInterval(() => process.stdout.write(`${slow.open()} ${slow.closedByProxy()}\n`), 250)
  process.on('SIGTERM', () => {
    clearInterval(report)
    slow.stop()
    process.exit(0)
  })
  await new Promise(() => undefined)
}

/** Starts the trickling process against `port`; its latest counts (open, closed by the proxy) are read from its output. */
function startTrickle(port: number): { open: () => number; closedByProxy: () => number; stop: () => Promise<void> } {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--role', 'trickle', '--port', String(port), '--trickle', String(trickleCount), '--reconnect-ms', String(reconnectMs)], { stdio: ['ignore', 'pipe', 'inherit'] })
  let last = [0, 0]
  child.stdout.on('data', (chunk: Buffer) => {
    const lines = chunk.toString().trim().split('\n')
    last = (lines.at(-1) ?? '0 0').split(' ').map(Number)
  })
  return {
    open: () => last[0] ?? 0,
    closedByProxy: () => last[1] ?? 0,
    stop: async () => {
      child.kill('SIGTERM')
      await once(child, 'exit')
    },
  }
}

const dir = await mkdtemp(join(tmpdir(), 'tether-bench-slow-'))
const backend = await startBackend({ name: 'app-1' })
const stops: Array<() => Promise<void>> = [() => backend.close(), () => rm(dir, { recursive: true, force: true })]
try {
  const rows: string[] = []
  for (const phase of ['limited', 'open'] as const) {
    const port = await freePort()
    const engine = await createHaproxyEngine({
      stateDir: join(dir, phase),
      listen: `127.0.0.1:${port}`,
      adminListen: `127.0.0.1:${await freePort()}`,
      resolvers: ['127.0.0.1:1'],
      cookieKey: 'bench-cookie-key',
      nbthread: 1,
      ...(phase === 'open' ? { clientMaxConnections: 0, clientMaxRequestRate: 0 } : {}),
    })
    try {
      await engine.apply({ version: 1, routes: [normalizeRoute({ serviceName: 'app', destinations: [{ servicePath: ['/app'], port: 80 }], endpoints: [backend.address] })] })
      if (phase === 'limited') {
        const alone = await measure(port)
        rows.push(`unloaded: ${alone.requests} requests in ${seconds} s (${alone.perSecond}/s), p99 ${alone.p99} ms, ${alone.non2xx} non-2xx, ${alone.reconnects} reconnects`)
        process.stderr.write(`${rows.at(-1)}\n`)
      }
      const slow = startTrickle(port)
      // Let the trickling connections open (bounded: 15 s).
      for (let i = 0; i < 150 && slow.open() + slow.closedByProxy() < trickleCount; i++) await sleep(100)
      const loaded = await measure(port)
      rows.push(
        `${phase === 'limited' ? 'limits at their defaults' : 'limits off (0)'}, ${trickleCount} trickling from 127.0.0.2: ${loaded.requests} requests in ${seconds} s (${loaded.perSecond}/s), p99 ${loaded.p99} ms, ${loaded.non2xx} non-2xx, ${loaded.reconnects} reconnects; trickling connections open at the end ${slow.open()}, closed by the proxy ${slow.closedByProxy()}`,
      )
      process.stderr.write(`${rows.at(-1)}\n`)
      await slow.stop()
      await sleep(500)
    } finally {
      await engine.stop()
    }
  }
  const perSecond = rows.map((r) => Number(/\((\d+)\/s\)/.exec(r)?.[1] ?? 0))
  console.log(`slow clients, ${trickleCount} trickling connections from one address, ${seconds} s per phase, maxconn 4096, nbthread 1`)
  for (const r of rows) console.log(`  ${r}`)
  if (perSecond[0]! > 0) console.log(`  other clients keep ${((perSecond[1]! / perSecond[0]!) * 100).toFixed(1)} % of their unloaded throughput with the limits, ${((perSecond[2]! / perSecond[0]!) * 100).toFixed(1)} % without`)
} finally {
  for (const stop of stops) await stop().catch(() => undefined)
}
