/**
 * TCP benchmark, one run, three targets side by side (interleaved rounds), all in front of one
 * real redis-server, driven by redis-benchmark:
 *   direct — redis-benchmark straight to redis-server;
 *   hand   — a hand-written HAProxy TCP configuration (frontend on a port, one server, check);
 *   tether — the configuration Tether's engine renders for `reqMode=tcp&srcPort=..&port=..`.
 * Two measures per target:
 *   throughput — SET and GET of 1 KiB values, 32 connections, pipeline 16 (bytes through the proxy);
 *   connections — PING with a new connection per request (-k 0), 16 clients: connection rate.
 * Both proxies run nbthread 1; the machine's 2 cores are shared by redis-benchmark, the proxies
 * and redis-server, so only the ratios (tether ÷ hand, same run) mean anything.
 *
 *   npx tsx bench/tcp.ts [--rounds 3] [--requests 200000] [--connects 20000]
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs, promisify } from 'node:util'
import { normalizeRoute } from '../src/contracts/route.ts'
import { createHaproxyEngine } from '../src/proxy/haproxy/haproxy-engine.ts'
import { freePort } from '../test/helpers/redis-server.ts'

const run = promisify(execFile)
const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, requests: { type: 'string', default: '200000' }, connects: { type: 'string', default: '20000' } } })
const rounds = Number(values.rounds)
const requests = Number(values.requests)
const connects = Number(values.connects)

const dir = await mkdtemp(join(tmpdir(), 'tether-bench-tcp-'))
const children: ChildProcess[] = []

function start(name: string, cmd: string, args: string[]): ChildProcess {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  child.stderr?.on('data', (d: Buffer) => {
    if (/ALERT|error/i.test(d.toString())) process.stderr.write(`${name}: ${d.toString()}`)
  })
  children.push(child)
  return child
}

/** redis-benchmark -q output ("SET: 123456.79 requests per second, p50=...") → requests per second by test. */
async function bench(port: number, args: string[]): Promise<Record<string, number>> {
  const { stdout } = await run('redis-benchmark', ['-h', '127.0.0.1', '-p', String(port), '-q', ...args], { timeout: 600_000, maxBuffer: 1 << 20 })
  const out: Record<string, number> = {}
  for (const m of stdout.matchAll(/([A-Z_]+): ([0-9.]+) requests per second/g)) out[m[1]!] = Number(m[2])
  return out
}

try {
  const redisPort = await freePort()
  start('redis', 'redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'])
  const handPort = await freePort()
  const handCfg = join(dir, 'hand.cfg')
  await writeFile(
    handCfg,
    `global
    nbthread 1
    maxconn 4096
defaults
    mode tcp
    timeout connect 500ms
    timeout client 1h
    timeout server 1h
frontend tcp_in
    bind 127.0.0.1:${handPort}
    default_backend redis
backend redis
    balance roundrobin
    server r1 127.0.0.1:${redisPort} check inter 2s
`,
  )
  start('hand', 'haproxy', ['-db', '-f', handCfg])

  const tetherPort = await freePort()
  const engine = await createHaproxyEngine({ stateDir: join(dir, 'tether'), listen: `127.0.0.1:${await freePort()}`, adminListen: `127.0.0.1:${await freePort()}`, cookieKey: 'bench-cookie-key', nbthread: 1, resolvers: ['127.0.0.1:1'] })
  await engine.apply({ version: 1, routes: [normalizeRoute({ serviceName: 'redis', destinations: [], tcp: [{ srcPort: tetherPort, port: redisPort }], endpoints: [`127.0.0.1:${redisPort}`] })] })
  await sleep(500)

  const targets = { direct: redisPort, hand: handPort, tether: tetherPort } as const
  const results: Record<string, { throughput: number[]; connections: number[] }> = { direct: { throughput: [], connections: [] }, hand: { throughput: [], connections: [] }, tether: { throughput: [], connections: [] } }
  for (const port of Object.values(targets)) await bench(port, ['-t', 'ping_inline', '-n', '1000', '-c', '4']) // warm-up (and reachability)
  for (let round = 0; round < rounds; round++) {
    for (const [name, port] of Object.entries(targets)) {
      const t = await bench(port, ['-t', 'set,get', '-n', String(requests), '-c', '32', '-P', '16', '-d', '1024'])
      results[name]!.throughput.push(((t.SET ?? 0) + (t.GET ?? 0)) / 2)
      const c = await bench(port, ['-t', 'ping_inline', '-n', String(connects), '-c', '16', '-k', '0'])
      results[name]!.connections.push(c.PING_INLINE ?? 0)
      process.stderr.write(`round ${round + 1} ${name}: ${Math.round(results[name]!.throughput.at(-1)!)} ops/s, ${Math.round(results[name]!.connections.at(-1)!)} conn/s\n`)
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0
  const row = (name: string) => {
    const r = results[name]!
    const mb = (median(r.throughput) * 1024) / 1e6
    return `| ${name} | ${Math.round(median(r.throughput)).toLocaleString('en')} (${mb.toFixed(0)} MB/s of values) | ${Math.round(median(r.connections)).toLocaleString('en')} |`
  }
  console.log('| target | SET/GET 1 KiB, 32 conns, pipeline 16 (ops/s, median) | new connection per PING, 16 clients (conn/s, median) |')
  console.log('|---|---|---|')
  for (const name of Object.keys(targets)) console.log(row(name))
  const ratio = (k: 'throughput' | 'connections') => (median(results.tether!.throughput.length > 0 ? results.tether![k] : []) / median(results.hand![k])).toFixed(3)
  console.log(`\ntether ÷ hand: throughput ${ratio('throughput')}, connection rate ${ratio('connections')} (target ≥ 0.95)`)
  await engine.stop()
} finally {
  for (const c of children) c.kill('SIGTERM')
  await sleep(200)
  await rm(dir, { recursive: true, force: true })
}
