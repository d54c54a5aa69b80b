/**
 * What the HAProxy benchmarks (bench/data-plane.ts, bench/tls.ts, bench/access-log.ts) share:
 * HAProxy processes started from configuration text in a temp dir and stopped at the end, the
 * return-200 backends, waiting for a 200, the wrk runner and its parser, medians.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs, promisify } from 'node:util'
import { request } from 'undici'
import { freePort } from '../../test/helpers/redis-server.ts'

const run = promisify(execFile)

/** The cookie key both proxies share and the affinity cookie's name (Tether's for serviceName app). */
export const KEY = 'bench-cookie-key'
export const COOKIE = 'TETHER_app'

/** `--seconds`, `--rounds`, `--connections` (default 32) from the command line. */
export function benchArgs(defaults: { seconds: number; rounds: number }): { seconds: number; rounds: number; connections: number } {
  const { values } = parseArgs({
    options: { seconds: { type: 'string', default: String(defaults.seconds) }, rounds: { type: 'string', default: String(defaults.rounds) }, connections: { type: 'string', default: '32' } },
  })
  return { seconds: Number(values.seconds), rounds: Number(values.rounds), connections: Number(values.connections) }
}

export interface HaproxyBench {
  /** The temp dir: configurations, state, certificates; removed by close(). */
  dir: string
  /** Writes `<dir>/<name>.cfg` and starts `haproxy -db` on it; its ALERT lines go to stderr. */
  haproxy(name: string, config: string): Promise<void>
  /** Run at close(), before the HAProxy processes are stopped (an engine's stop()). */
  onClose(fn: () => Promise<unknown>): void
  /** Runs the onClose functions, stops every HAProxy (SIGTERM, then SIGKILL), removes the dir. */
  close(): Promise<void>
}

export async function startHaproxyBench(prefix = 'tether-bench-'): Promise<HaproxyBench> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  const children: ChildProcess[] = []
  const cleanup: Array<() => Promise<unknown>> = []
  return {
    dir,
    async haproxy(name, config) {
      const path = join(dir, `${name}.cfg`)
      await writeFile(path, config)
      const child = spawn('haproxy', ['-db', '-f', path], { stdio: ['ignore', 'ignore', 'pipe'] })
      children.push(child)
      child.stderr?.on('data', (d: Buffer) => {
        if (/ALERT/.test(d.toString())) process.stderr.write(`${name}: ${d.toString()}`)
      })
      await sleep(300)
      if (child.exitCode !== null) throw new Error(`${name} haproxy exited`)
    },
    onClose(fn) {
      cleanup.push(fn)
    },
    async close() {
      for (const c of cleanup) await c().catch(() => undefined)
      for (const child of children) child.kill('SIGTERM')
      await sleep(200)
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/**
 * `n` backends in one HAProxy (nbthread 1) answering `http-request return` 200 "app-<i>", so
 * they are not the bottleneck; answers their addresses (127.0.0.1:port).
 */
export async function startReturnBackends(bench: HaproxyBench, n: number): Promise<string[]> {
  const ports: number[] = []
  for (let i = 0; i < n; i++) ports.push(await freePort())
  await bench.haproxy(
    'backends',
    [
      'global',
      '    maxconn 4096',
      '    nbthread 1',
      'defaults',
      '    mode http',
      '    timeout client 60s',
      ...ports.flatMap((port, i) => [
        `frontend app-${i + 1}`,
        `    bind 127.0.0.1:${port}`,
        `    http-request return status 200 content-type text/plain string "app-${i + 1}"`,
      ]),
      '',
    ].join('\n'),
  )
  return ports.map((p) => `127.0.0.1:${p}`)
}

/**
 * The hand-written HAProxy configuration the benchmarks compare Tether's with: sticky routing
 * of /app to `endpoints` (cookie insert dynamic, KEY), 404 for anything else. `global` lines
 * go after nbthread, `frontend` lines after the bind line; `bind` is appended to the bind line
 * (TLS); `secure` marks the cookie Secure.
 */
export function handConfig(options: { port: number; endpoints: string[]; frontendName?: string; bind?: string; global?: string[]; frontend?: string[]; secure?: boolean }): string {
  return [
    'global',
    '    maxconn 4096',
    '    nbthread 1',
    ...(options.global ?? []),
    'defaults',
    '    mode http',
    '    option forwardfor',
    '    option redispatch 1',
    '    retries 3',
    '    timeout connect 500ms',
    '    timeout client 60s',
    '    timeout server 60s',
    `frontend ${options.frontendName ?? 'http'}`,
    `    bind 127.0.0.1:${options.port}${options.bind === undefined ? '' : ` ${options.bind}`}`,
    ...(options.frontend ?? []),
    '    use_backend app if { path /app } || { path_beg /app/ }',
    '    default_backend notfound',
    'backend notfound',
    '    http-request return status 404',
    'backend app',
    '    balance roundrobin',
    `    cookie ${COOKIE} insert indirect nocache dynamic httponly${options.secure === true ? ' secure' : ''} attr "SameSite=Lax"`,
    `    dynamic-cookie-key ${KEY}`,
    ...options.endpoints.map((e, i) => `    server a${i + 1} ${e} check`),
    '',
  ].join('\n')
}

/** GETs `url` until it answers 200 (bounded: 100 tries, 50 ms apart); answers its first Set-Cookie. */
export async function waitOk(url: string, headers: Record<string, string> = {}): Promise<{ setCookie: string | undefined }> {
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

export interface WrkResult {
  rps: number
  p50: number
  p99: number
  /** Non-2xx/3xx answers plus socket errors (connect, read, write, timeout). */
  errors: number
}

const toMs = (v: string, unit: string): number => Number(v) * (unit === 'us' ? 0.001 : unit === 's' ? 1000 : 1)

/**
 * `wrk -t1 -c<connections> -d<seconds>s --latency [-H header]... [-H "Cookie: <cookie>"] url`,
 * parsed; latencies in ms.
 */
export async function wrk(url: string, options: { connections: number; seconds: number; headers?: string[]; cookie?: string }): Promise<WrkResult> {
  const { connections, seconds } = options
  const headers = [...(options.headers ?? []), ...(options.cookie === undefined ? [] : [`Cookie: ${options.cookie}`])]
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', ...headers.flatMap((h) => ['-H', h]), url]
  const { stdout } = await run('wrk', args, { timeout: (seconds + 30) * 1000 })
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1])
  const p = (q: string): number => {
    const m = new RegExp(`^\\s+${q}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(stdout)
    return m === null ? NaN : toMs(m[1]!, m[2]!)
  }
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0)
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout)
  const errors = non2xx + (sock === null ? 0 : sock.slice(1).reduce((a, b) => a + Number(b), 0))
  return { rps, p50: p('50'), p99: p('99'), errors }
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

/** Rounds of one target: the median of each measure, the errors summed. */
export const summarize = (rs: WrkResult[]): WrkResult => ({
  rps: median(rs.map((x) => x.rps)),
  p50: median(rs.map((x) => x.p50)),
  p99: median(rs.map((x) => x.p99)),
  errors: rs.reduce((a, x) => a + x.errors, 0),
})

/** The stderr line of one wrk run. */
export const roundLine = (label: string, res: WrkResult): string =>
  `${label}: ${res.rps.toFixed(0)} req/s p50 ${res.p50.toFixed(3)} ms p99 ${res.p99.toFixed(3)} ms errors ${res.errors}\n`
