/**
 * Soak: the whole system as processes (redis-server with an append-only file, `tether control`,
 * two `tether proxy` with their HAProxy, three HTTP backends in this process) under a mixed load
 * for --minutes (default 30):
 *   - writes: one reconfigure every --write-ms (default 1000) over 50 services, alternating
 *     endpoints and paths (runtime changes and reloads on every proxy);
 *   - long polls: 20 clients looping GET /v1/config?since=V&wait=30s with the proxy token;
 *   - proxied traffic: 8 loops of requests through both proxies, half with a sticky cookie.
 * Every --sample-seconds (default 30) it samples the RSS and open descriptors of every process
 * (HAProxy: all processes under each agent, old workers included) and the latency of the
 * window. It prints the samples and a Markdown row: the drift between the first sample after
 * the warm-up (2 minutes, or a tenth of the run when shorter) and the last.
 *
 *   npx tsx bench/soak.ts [--minutes 30] [--write-ms 1000] [--sample-seconds 30]
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { Agent, request } from 'undici'
import { freePort } from '../src/shared/free-port.ts'
import { closeBackends, startBackends } from '../test/helpers/backends.ts'
import { startRedisServer } from '../test/helpers/redis-server.ts'

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '30' }, 'write-ms': { type: 'string', default: '1000' }, 'sample-seconds': { type: 'string', default: '30' } } })
const minutes = Number(values.minutes)
const writeMs = Number(values['write-ms'])
const sampleMs = Number(values['sample-seconds']) * 1000
const API = 'soak-api-token-0123456789'
const PROXY = 'soak-proxy-token-0123456789'
const SERVICES = 50

const children: ChildProcess[] = []
function run(role: 'control' | 'proxy', env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', role], { env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', TETHER_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'ignore', 'inherit'] })
  children.push(child)
  return child
}
async function until(what: string, url: string, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await request(url).then((r) => (r.body.dump(), r.statusCode === 200), () => false)) return
    await sleep(200)
  }
  throw new Error(`${what} not ready in ${ms} ms`)
}

/** RSS (kB) and open descriptors of a process; null when it is gone. */
async function usage(pid: number): Promise<{ rssKb: number; fds: number } | null> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
    const fds = (await readdir(`/proc/${pid}/fd`)).length
    return { rssKb, fds }
  } catch {
    return null
  }
}
/** Every process below `pid` (children, grandchildren) with its command name. */
async function descendants(pid: number): Promise<Array<{ pid: number; comm: string }>> {
  const parent = new Map<number, number>()
  const comm = new Map<number, string>()
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8')
      const close = stat.lastIndexOf(')')
      comm.set(Number(entry), stat.slice(stat.indexOf('(') + 1, close))
      parent.set(Number(entry), Number(stat.slice(close + 2).split(' ')[1]))
    } catch {
      // gone
    }
  }
  const out: Array<{ pid: number; comm: string }> = []
  const walk = (p: number): void => {
    for (const [child, pp] of parent) if (pp === p) (out.push({ pid: child, comm: comm.get(child) ?? '?' }), walk(child))
  }
  walk(pid)
  return out
}

const percentile = (xs: number[], p: number): number => {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}

const work = await mkdtemp(join(tmpdir(), 'tether-soak-'))
const redis = await startRedisServer({ appendfsync: 'everysec' })
const backends = await startBackends(3, { prefix: 'soak' })
const controlPort = await freePort()
const controlUrl = `http://127.0.0.1:${controlPort}`
const control = run('control', { HOST: '127.0.0.1', PORT: String(controlPort), REDIS_URL: redis.url, TETHER_API_TOKENS: `ci=${API}`, TETHER_PROXY_TOKEN: PROXY })
await until('control', `${controlUrl}/readyz`)
const proxies: Array<{ child: ChildProcess; url: string }> = []
for (const id of ['soak-a', 'soak-b']) {
  const [port, admin] = [await freePort(), await freePort()]
  const child = run('proxy', {
    TETHER_CONTROL_URL: controlUrl,
    TETHER_PROXY_TOKEN: PROXY,
    TETHER_COOKIE_KEY: 'soak-cookie-key-0123',
    TETHER_PROXY_ID: id,
    TETHER_PROXY_LISTEN: `127.0.0.1:${port}`,
    TETHER_ADMIN_LISTEN: `127.0.0.1:${admin}`,
    TETHER_STATE_DIR: join(work, id),
    TETHER_DNS: '127.0.0.1:1',
  })
  proxies.push({ child, url: `http://127.0.0.1:${port}` })
  await until(`proxy ${id}`, `http://127.0.0.1:${admin}/healthz`)
}

const agent = new Agent({ connections: 64, keepAliveTimeout: 10_000 })
const auth = { authorization: `Bearer ${API}` }
const endpointsOf = (i: number, flip: boolean): string => (flip ? [backends[i % 3]!.address, backends[(i + 1) % 3]!.address] : backends.map((b) => b.address)).join(',')
const put = (i: number, flip: boolean) =>
  request(`${controlUrl}/v1/reconfigure?serviceName=svc-${i}&servicePath=/svc-${i}${flip ? `,/alt-${i}` : ''}&port=80&sticky=${i % 2 === 0}&endpoints=${endpointsOf(i, flip)}`, { method: 'PUT', headers: auth, dispatcher: agent })
for (let i = 0; i < SERVICES; i++) {
  const r = await put(i, false)
  await r.body.dump()
  if (r.statusCode !== 200) throw new Error(`seeding svc-${i}: ${r.statusCode}`)
}
await sleep(3000)

interface Window {
  proxied: number[]
  writes: number[]
  errors: Map<string, number>
  polls: number
}
const fresh = (): Window => ({ proxied: [], writes: [], errors: new Map(), polls: 0 })
let window = fresh()
const error = (what: string) => window.errors.set(what, (window.errors.get(what) ?? 0) + 1)
const totals = { proxied: 0, writes: 0, polls: 0, errors: new Map<string, number>() }
const end = Date.now() + minutes * 60_000
const stopping = () => Date.now() > end

const writer = (async () => {
  for (let n = 0; !stopping(); n++) {
    const t0 = performance.now()
    try {
      const r = await put(n % SERVICES, Math.floor(n / SERVICES) % 2 === 0)
      await r.body.dump()
      if (r.statusCode === 200) window.writes.push(performance.now() - t0)
      else error(`write ${r.statusCode}`)
    } catch (err) {
      error(`write ${(err as { code?: string }).code ?? 'error'}`)
    }
    await sleep(writeMs)
  }
})()
const pollers = Array.from({ length: 20 }, async () => {
  let since = 0
  while (!stopping()) {
    try {
      const r = await request(`${controlUrl}/v1/config?since=${since}&wait=30s`, { headers: { authorization: `Bearer ${PROXY}` }, dispatcher: agent, headersTimeout: 40_000, bodyTimeout: 40_000 })
      if (r.statusCode === 200) since = ((await r.body.json()) as { version: number }).version
      else await r.body.dump()
      if (r.statusCode !== 200 && r.statusCode !== 304) error(`poll ${r.statusCode}`)
      window.polls++
    } catch (err) {
      error(`poll ${(err as { code?: string }).code ?? 'error'}`)
      await sleep(500)
    }
  }
})
const loaders = Array.from({ length: 8 }, async (_, l) => {
  let cookie: string | undefined
  for (let n = 0; !stopping(); n++) {
    const p = proxies[n % 2]!
    const i = (l * 7 + n) % SERVICES
    const t0 = performance.now()
    try {
      const r = await request(`${p.url}/svc-${i}/x`, { dispatcher: agent, headers: l % 2 === 0 && cookie !== undefined ? { cookie } : {} })
      await r.body.dump()
      const set = r.headers['set-cookie']
      if (typeof set === 'string') cookie = set.split(';')[0]
      if (r.statusCode === 200) window.proxied.push(performance.now() - t0)
      else error(`proxied ${r.statusCode}`)
    } catch (err) {
      error(`proxied ${(err as { code?: string }).code ?? 'error'}`)
    }
    await sleep(5)
  }
})

interface Sample {
  minute: number
  rss: Record<string, number>
  fds: Record<string, number>
  haproxyProcesses: number
  proxiedP50: number
  proxiedP99: number
  writeP99: number
  requests: number
  errors: number
}
const samples: Sample[] = []
const started = Date.now()
const sampler = (async () => {
  while (!stopping()) {
    const wait = Math.min(sampleMs, Math.max(0, end - Date.now()))
    // A last window shorter than half a sample is not compared with full ones.
    if (wait < sampleMs / 2 && samples.length > 0) break
    await sleep(wait)
    const w = window
    window = fresh()
    const rss: Record<string, number> = {}
    const fds: Record<string, number> = {}
    const add = (name: string, u: { rssKb: number; fds: number } | null) => {
      if (u === null) return
      rss[name] = (rss[name] ?? 0) + Math.round(u.rssKb / 1024)
      fds[name] = (fds[name] ?? 0) + u.fds
    }
    add('bench', await usage(process.pid))
    add('redis', await usage((await descendants(process.pid)).find((d) => d.comm === 'redis-server')?.pid ?? -1))
    add('control', await usage(control.pid!))
    let haproxyProcesses = 0
    for (const p of proxies) {
      add('agents', await usage(p.child.pid!))
      for (const d of await descendants(p.child.pid!)) {
        if (d.comm !== 'haproxy') continue
        haproxyProcesses++
        add('haproxy', await usage(d.pid))
      }
    }
    const errors = [...w.errors.values()].reduce((a, b) => a + b, 0)
    for (const [k, v] of w.errors) totals.errors.set(k, (totals.errors.get(k) ?? 0) + v)
    totals.proxied += w.proxied.length
    totals.writes += w.writes.length
    totals.polls += w.polls
    const s: Sample = {
      minute: (Date.now() - started) / 60_000,
      rss,
      fds,
      haproxyProcesses,
      proxiedP50: percentile(w.proxied, 50),
      proxiedP99: percentile(w.proxied, 99),
      writeP99: percentile(w.writes, 99),
      requests: w.proxied.length,
      errors,
    }
    samples.push(s)
    process.stderr.write(`soak ${s.minute.toFixed(1)} min: rss MB ${JSON.stringify(rss)} fds ${JSON.stringify(fds)} haproxy processes ${haproxyProcesses}; proxied ${s.requests} p50 ${s.proxiedP50.toFixed(2)} p99 ${s.proxiedP99.toFixed(2)} ms; write p99 ${s.writeP99.toFixed(1)} ms; errors ${errors}\n`)
  }
})()

await Promise.all([writer, ...pollers, ...loaders, sampler])
await agent.close()
for (const c of children.reverse()) {
  if (c.exitCode === null) c.kill('SIGTERM')
}
await sleep(2000)
for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
await closeBackends(backends)
await redis.dispose()
await rm(work, { recursive: true, force: true })

// Drift: the first sample after the warm-up against the last.
const warmup = Math.min(2, minutes / 10)
const first = samples.find((s) => s.minute >= warmup) ?? samples[0]!
const last = samples[samples.length - 1]!
const drift = (a: number, b: number) => `${a} → ${b}`
const names = ['control', 'agents', 'haproxy', 'redis']
process.stdout.write('\n| minute | RSS MB control / agents / haproxy / redis | fds control / agents / haproxy / redis | HAProxy processes | proxied requests | p50 / p99 ms | write p99 ms | errors |\n|---|---|---|---|---|---|---|---|\n')
for (const s of samples) {
  process.stdout.write(`| ${s.minute.toFixed(1)} | ${names.map((n) => s.rss[n] ?? '-').join(' / ')} | ${names.map((n) => s.fds[n] ?? '-').join(' / ')} | ${s.haproxyProcesses} | ${s.requests} | ${s.proxiedP50.toFixed(2)} / ${s.proxiedP99.toFixed(2)} | ${s.writeP99.toFixed(1)} | ${s.errors} |\n`)
}
process.stdout.write(
  `\n| ${new Date().toISOString().slice(0, 10)} | ${minutes} min | ${totals.proxied.toLocaleString('en')} proxied, ${totals.writes.toLocaleString('en')} writes, ${totals.polls.toLocaleString('en')} long polls | errors: ${totals.errors.size === 0 ? '0' : [...totals.errors].map(([k, v]) => `${k} ${v}`).join(', ')} | RSS MB (min ${first.minute.toFixed(0)} → ${last.minute.toFixed(0)}): ${names.map((n) => `${n} ${drift(first.rss[n] ?? 0, last.rss[n] ?? 0)}`).join(', ')} | fds: ${names.map((n) => `${n} ${drift(first.fds[n] ?? 0, last.fds[n] ?? 0)}`).join(', ')} | proxied p99 ${first.proxiedP99.toFixed(2)} → ${last.proxiedP99.toFixed(2)} ms; write p99 ${first.writeP99.toFixed(1)} → ${last.writeP99.toFixed(1)} ms |\n`,
)
