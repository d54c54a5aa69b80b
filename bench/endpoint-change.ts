/**
 * Endpoint change → served, through one real proxy (HAProxy engine, real backends on loopback).
 *
 *   npx tsx bench/endpoint-change.ts [--rounds 50] [--routes 1000]
 *
 * Three ways a new backend reaches traffic, measured in the same run:
 *   - runtime: an endpoint added to an existing route (apply → `add server`, no reload), from
 *     the apply call to the first request answered by the new backend;
 *   - dns: a task added to `tasks.<service>` in DNS (the test DNS server), from the DNS change
 *     to the first request answered by it: adds the discovery interval (TETHER_DNS_INTERVAL_MS,
 *     1000 ms by default; measured at 1000 and 200);
 *   - new service (spare backend): a new service with that backend, from 1,000 routes on (default
 *     settings: a spare backend over the runtime API);
 *   - reload (baseline): the same on an engine without spares (`haproxy -c` + reload).
 * The backends and the poller run in a process of their own (bench/lib/served-probe.ts), as
 * real tasks and clients would: the agent's own work does not delay them.
 * With `--routes` other routes in the table (each 1 endpoint), so render and reload carry a real table.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { fork } from 'node:child_process'
import { normalizeRoute, type Route } from '../src/contracts/route.ts'
import { createHaproxyEngine, type HaproxyEngine } from '../src/proxy/haproxy/haproxy-engine.ts'
import { freePort } from '../src/shared/free-port.ts'
import { startDnsServer } from '../test/helpers/dns-server.ts'

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '50' }, routes: { type: 'string', default: '1000' } } })
const rounds = Number(values.rounds)
const others = Number(values.routes)

const quiet = (): void => {}
// Warnings are printed: a route HAProxy refused, or a runtime change that fell back to a reload, means the run does not measure what it says.
const logger = { debug: quiet, info: quiet, warn: (obj: unknown, msg?: string) => { if (msg !== 'haproxy') process.stderr.write(`warning: ${msg ?? ''} ${JSON.stringify(obj).slice(0, 300)}\n`) }, error: quiet }

async function engineWith(stateDir: string, dns: string[], dnsIntervalMs: number, spareBackends?: number): Promise<{ engine: HaproxyEngine; url: string }> {
  const port = await freePort()
  const engine = await createHaproxyEngine({ stateDir, listen: `127.0.0.1:${port}`, adminListen: `127.0.0.1:${await freePort()}`, resolvers: dns, dnsIntervalMs, cookieKey: 'bench-cookie-key', logger, ...(spareBackends === undefined ? {} : { spareBackends }) })
  return { engine, url: `http://127.0.0.1:${port}` }
}

/** The backends and the poller, in a process of their own (bench/lib/served-probe.ts). */
const probe = fork(new URL('./lib/served-probe.ts', import.meta.url), { execArgv: ['--import', 'tsx'] })
const reply = (): Promise<{ ready?: boolean; served?: number; error?: string }> => new Promise((resolve) => probe.once('message', resolve))
/**
 * Starts polling `path` for `instance` in the probe process, from now; `change` makes the change.
 * Resolves with ms from before the change until the first request `instance` answered.
 */
async function servedAfter(url: string, instance: string, change: () => Promise<unknown>): Promise<number> {
  const answer = reply()
  probe.send({ probe: { url, instance, start: String(process.hrtime.bigint()) } })
  await change()
  const r = await answer
  if (r.served === undefined) throw new Error(r.error ?? 'no answer from the probe')
  return r.served
}

const filler: Route[] = Array.from({ length: others }, (_, i) =>
  normalizeRoute({ serviceName: `other-${i}`, destinations: [{ servicePath: [`/other/${i}`], port: 80 }], endpoints: [`127.3.${i >> 7}.${(i & 127) + 1}:9`] }), // valid addresses up to 32,768 routes
)

function percentile(xs: number[], p: number): number {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN
}

const results: Record<string, number[]> = { runtime: [], 'dns (interval 1000 ms)': [], 'dns (interval 200 ms)': [], 'new service (spare backend)': [], 'reload (baseline)': [] }
const port = await freePort()
const hosts = Array.from({ length: rounds + 1 }, (_, i) => `127.2.${i >> 7}.${(i & 127) + 1}`)
const ready = reply()
probe.send({ init: { hosts, port } })
if ((await ready).ready !== true) throw new Error('the probe process did not start its backends')
const dns = await startDnsServer()
try {
  // runtime and reload, one engine
  {
    const stateDir = await mkdtemp(join(tmpdir(), 'tether-endpoint-bench-'))
    // No spares: the baseline is a reload.
    const { engine, url } = await engineWith(stateDir, ['127.0.0.1:1'], 1000, 0)
    try {
      let endpoints = [`${hosts[0]}:${port}`]
      let version = 1
      const table = (extra: Route[] = []) => ({ version: version++, routes: [normalizeRoute({ serviceName: 'app', destinations: [{ servicePath: ['/app'], port }], endpoints }), ...filler, ...extra] })
      await engine.apply(table())
      for (let i = 1; i <= rounds; i++) {
        endpoints = [`${hosts[i]}:${port}`] // replace: the new one must be served
        results.runtime!.push(await servedAfter(`${url}/app`, `b-${i + 1}`, () => engine.apply(table())))
      }
      for (let i = 1; i <= Math.min(rounds, 20); i++) {
        const added = table([normalizeRoute({ serviceName: `new-${i}`, destinations: [{ servicePath: [`/new/${i}`], port }], endpoints: [`${hosts[i]}:${port}`] })])
        results['reload (baseline)']!.push(await servedAfter(`${url}/new/${i}`, `b-${i + 1}`, () => engine.apply(added)))
      }
      process.stderr.write(`reloads: ${engine.counters.reloads}, runtime changes: ${engine.counters.runtimeChanges}\n`)
    } finally {
      await engine.stop()
      await rm(stateDir, { recursive: true, force: true })
    }
  }
  // a new service from a spare backend (default settings; from 1,000 routes on)
  if (others + 1 >= 1000) {
    const stateDir = await mkdtemp(join(tmpdir(), 'tether-endpoint-bench-'))
    const { engine, url } = await engineWith(stateDir, ['127.0.0.1:1'], 1000)
    try {
      let version = 1
      const routes = [normalizeRoute({ serviceName: 'app', destinations: [{ servicePath: ['/app'], port }], endpoints: [`${hosts[0]}:${port}`] }), ...filler]
      await engine.apply({ version: version++, routes })
      const reloads = engine.counters.reloads
      for (let i = 1; i <= Math.min(rounds, 20); i++) {
        // One new service at a time (the one before goes, freeing its spare).
        const added = { version: version++, routes: [...routes, normalizeRoute({ serviceName: `new-${i}`, destinations: [{ servicePath: [`/new/${i}`], port }], endpoints: [`${hosts[i]}:${port}`] })] }
        results['new service (spare backend)']!.push(await servedAfter(`${url}/new/${i}`, `b-${i + 1}`, () => engine.apply(added)))
      }
      if (engine.counters.reloads !== reloads) process.stderr.write(`warning: ${engine.counters.reloads - reloads} of the spare rounds reloaded\n`)
    } finally {
      await engine.stop()
      await rm(stateDir, { recursive: true, force: true })
    }
  }
  // dns, at two intervals
  for (const interval of [1000, 200]) {
    const stateDir = await mkdtemp(join(tmpdir(), 'tether-endpoint-bench-'))
    const { engine, url } = await engineWith(stateDir, [dns.address], interval)
    try {
      dns.set('tasks.app', [hosts[0]!])
      await engine.apply({ version: 1, routes: [normalizeRoute({ serviceName: 'app', destinations: [{ servicePath: ['/app'], port }] }), ...filler] })
      for (let i = 1; i <= Math.min(rounds, 20); i++) {
        results[`dns (interval ${interval} ms)`]!.push(await servedAfter(`${url}/app`, `b-${i + 1}`, async () => dns.set('tasks.app', [hosts[i]!])))
      }
    } finally {
      await engine.stop()
      await rm(stateDir, { recursive: true, force: true })
    }
  }
} finally {
  await dns.close()
  probe.disconnect()
}

const base = percentile(results['reload (baseline)']!, 50)
console.log(`| change (table: ${others + 1} routes) | samples | p50 ms | p99 ms | p50 vs reload baseline |`)
console.log('|---|---|---|---|---|')
for (const [name, xs] of Object.entries(results)) {
  if (xs.length === 0) continue
  console.log(`| ${name} | ${xs.length} | ${percentile(xs, 50).toFixed(1)} | ${percentile(xs, 99).toFixed(1)} | ${(percentile(xs, 50) / base).toFixed(2)}× |`)
}
