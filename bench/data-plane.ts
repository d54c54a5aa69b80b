/**
 * Data-plane benchmark, one run, three targets side by side (interleaved rounds):
 *   direct   — wrk straight to one backend;
 *   hand     — a hand-written HAProxy configuration doing the same sticky routing (path match
 *              on /app, cookie insert dynamic, 3 servers);
 *   tether   — the configuration Tether's engine renders for the same route.
 * Backends: a separate HAProxy answering `http-request return` on 3 ports, so they are not the
 * bottleneck. wrk sends the affinity cookie (a pinned browser). Both proxies run nbthread 1
 * with the same cookie key; the machine has 2 cores shared by wrk, the proxies and the backends.
 *
 *   npx tsx bench/data-plane.ts [--seconds 8] [--rounds 3] [--connections 32]
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { request } from 'undici'
import { normalizeRoute } from '../src/contracts/route.ts'
import { createHaproxyEngine } from '../src/proxy/haproxy/haproxy-engine.ts'
import { freePort } from '../test/helpers/redis-server.ts'

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '8' }, rounds: { type: 'string', default: '3' }, connections: { type: 'string', default: '32' } },
})
const seconds = Number(values.seconds)
const rounds = Number(values.rounds)
const connections = Number(values.connections)
const KEY = 'bench-cookie-key'
const COOKIE = 'TETHER_app'

const dir = await mkdtemp(join(tmpdir(), 'tether-bench-'))
const children: ChildProcess[] = []
const cleanup: Array<() => Promise<unknown>> = []

async function haproxy(name: string, config: string): Promise<void> {
  const path = join(dir, `${name}.cfg`)
  await writeFile(path, config)
  const child = spawn('haproxy', ['-db', '-f', path], { stdio: ['ignore', 'ignore', 'pipe'] })
  children.push(child)
  child.stderr?.on('data', (d: Buffer) => {
    if (/ALERT/.test(d.toString())) process.stderr.write(`${name}: ${d.toString()}`)
  })
  await sleep(300)
  if (child.exitCode !== null) throw new Error(`${name} haproxy exited`)
}

async function waitOk(url: string, headers: Record<string, string> = {}): Promise<{ setCookie: string | undefined }> {
  for (let i = 0; i < 100; i++) {
    const res = await request(url, { headers }).catch(() => undefined)
    if (res !== undefined) {
      await res.body.text()
      const raw = res.headers['set-cookie']
      if (res.statusCode === 200) return { setCookie: Array.isArray(raw) ? raw[0] : raw }
    }
    await sleep(50)
  }
  throw new Error(`${url} never answered 200`)
}

interface WrkResult {
  rps: number
  p50: number
  p99: number
  errors: number
}

const toMs = (v: string, unit: string): number => Number(v) * (unit === 'us' ? 0.001 : unit === 's' ? 1000 : 1)

function wrk(url: string, cookie: string | undefined): Promise<WrkResult> {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency']
  if (cookie !== undefined) args.push('-H', `Cookie: ${cookie}`)
  args.push(url)
  return new Promise((resolve, reject) => {
    execFile('wrk', args, { timeout: (seconds + 30) * 1000 }, (err, stdout) => {
      if (err !== null) return reject(err)
      const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1])
      const p = (q: string): number => {
        const m = new RegExp(`^\\s+${q}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(stdout)
        return m === null ? NaN : toMs(m[1]!, m[2]!)
      }
      const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0)
      const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout)
      const errors = non2xx + (sock === null ? 0 : sock.slice(1).reduce((a, b) => a + Number(b), 0))
      resolve({ rps, p50: p('50'), p99: p('99') , errors })
    })
  })
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

try {
  const backendPorts = [await freePort(), await freePort(), await freePort()]
  await haproxy(
    'backends',
    [
      'global',
      '    maxconn 4096',
      '    nbthread 1',
      'defaults',
      '    mode http',
      '    timeout client 60s',
      ...backendPorts.flatMap((port, i) => [
        `frontend app-${i + 1}`,
        `    bind 127.0.0.1:${port}`,
        `    http-request return status 200 content-type text/plain string "app-${i + 1}"`,
      ]),
      '',
    ].join('\n'),
  )
  const endpoints = backendPorts.map((p) => `127.0.0.1:${p}`)

  const handPort = await freePort()
  await haproxy(
    'hand',
    [
      'global',
      '    maxconn 4096',
      '    nbthread 1',
      'defaults',
      '    mode http',
      '    option forwardfor',
      '    option redispatch 1',
      '    retries 3',
      '    timeout connect 500ms',
      '    timeout client 60s',
      '    timeout server 60s',
      'frontend http',
      `    bind 127.0.0.1:${handPort}`,
      '    use_backend app if { path /app } || { path_beg /app/ }',
      '    default_backend notfound',
      'backend notfound',
      '    http-request return status 404',
      'backend app',
      '    balance roundrobin',
      `    cookie ${COOKIE} insert indirect nocache dynamic httponly attr "SameSite=Lax"`,
      `    dynamic-cookie-key ${KEY}`,
      ...endpoints.map((e, i) => `    server a${i + 1} ${e} check`),
      '',
    ].join('\n'),
  )

  const tetherPort = await freePort()
  const stateDir = join(dir, 'tether')
  const engine = await createHaproxyEngine({
    stateDir,
    listen: `127.0.0.1:${tetherPort}`,
    adminListen: `127.0.0.1:${await freePort()}`,
    resolvers: ['127.0.0.1:1'],
    cookieKey: KEY,
    nbthread: 1,
    // The load generator is one address sending far more than TETHER_CLIENT_MAX_REQUEST_RATE
    // allows (1,000 a second): it would be answered 429. The per-address connection limit stays.
    clientMaxRequestRate: 0,
  })
  cleanup.push(() => engine.stop())
  await engine.apply({
    version: 1,
    routes: [normalizeRoute({ serviceName: 'app', destinations: [{ servicePath: ['/app'], port: 80 }], sticky: true, endpoints })],
  })

  const targets = {
    direct: { url: `http://${endpoints[0]}/app/x`, cookie: undefined as string | undefined },
    hand: { url: `http://127.0.0.1:${handPort}/app/x`, cookie: undefined as string | undefined },
    tether: { url: `http://127.0.0.1:${tetherPort}/app/x`, cookie: undefined as string | undefined },
  }
  await waitOk(targets.direct.url)
  for (const name of ['hand', 'tether'] as const) {
    const { setCookie } = await waitOk(targets[name].url)
    targets[name].cookie = setCookie?.split(';')[0]
  }
  if (targets.hand.cookie === undefined || targets.tether.cookie === undefined) throw new Error('no affinity cookie issued')
  process.stderr.write(`cookies: hand ${targets.hand.cookie}, tether ${targets.tether.cookie}\n`)

  const results: Record<keyof typeof targets, WrkResult[]> = { direct: [], hand: [], tether: [] }
  for (let r = 0; r < rounds; r++) {
    for (const name of ['direct', 'hand', 'tether'] as const) {
      const res = await wrk(targets[name].url, targets[name].cookie)
      results[name].push(res)
      process.stderr.write(`round ${r + 1} ${name}: ${res.rps.toFixed(0)} req/s p50 ${res.p50.toFixed(3)} ms p99 ${res.p99.toFixed(3)} ms errors ${res.errors}\n`)
    }
  }
  const summary = Object.fromEntries(
    Object.entries(results).map(([name, rs]) => [
      name,
      { rps: median(rs.map((x) => x.rps)), p50: median(rs.map((x) => x.p50)), p99: median(rs.map((x) => x.p99)), errors: rs.reduce((a, x) => a + x.errors, 0) },
    ]),
  ) as Record<keyof typeof targets, WrkResult>
  console.log(`wrk -t1 -c${connections} -d${seconds}s --latency, ${rounds} interleaved rounds, medians`)
  console.log('| target | req/s | p50 ms | p99 ms | errors |')
  console.log('|---|---|---|---|---|')
  for (const [name, s] of Object.entries(summary)) console.log(`| ${name} | ${s.rps.toFixed(0)} | ${s.p50.toFixed(3)} | ${s.p99.toFixed(3)} | ${s.errors} |`)
  console.log(`tether / hand-written req/s: ${(summary.tether.rps / summary.hand.rps).toFixed(3)}`)
  console.log(`tether / direct req/s: ${(summary.tether.rps / summary.direct.rps).toFixed(3)}`)
  console.log(`p50 added over direct: ${(summary.tether.p50 - summary.direct.p50).toFixed(3)} ms (hand-written: ${(summary.hand.p50 - summary.direct.p50).toFixed(3)} ms)`)
  console.log(`p99 added over direct: ${(summary.tether.p99 - summary.direct.p99).toFixed(3)} ms (hand-written: ${(summary.hand.p99 - summary.direct.p99).toFixed(3)} ms)`)
} finally {
  for (const c of cleanup) await c().catch(() => undefined)
  for (const child of children) child.kill('SIGTERM')
  await sleep(200)
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  await rm(dir, { recursive: true, force: true })
}
