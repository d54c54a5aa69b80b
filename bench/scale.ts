/**
 * Scale benchmark for the HAProxy engine: N routes (default 1,000 and 10,000), each its own
 * service resolved through tasks.<service> (server-template, `--slots` each), all domain-less
 * (the map-file path). Measures render, `haproxy -c`, first start, a reload after a one-route
 * change, the agent process's memory and HAProxy's (master + worker RSS).
 *
 *   npx tsx bench/scale.ts [--routes 1000,10000] [--slots 32] [--maxconn 1000]
 *
 * HAProxy reserves a file descriptor per health-checked server: routes × slots + 2 × maxconn
 * must stay under `ulimit -n` (20,000 on the benchmark machine).
 *
 * The resolvers point at a closed loopback port: no DNS traffic, servers stay in maintenance;
 * this measures configuration handling, not forwarding.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { normalizeRoute, type Route } from '../src/contracts/route.ts'
import { createHaproxyEngine } from '../src/proxy/haproxy/haproxy-engine.ts'
import { render } from '../src/proxy/haproxy/render.ts'
import { resolveSettings } from '../src/proxy/haproxy/settings.ts'
import { freePort } from '../test/helpers/redis-server.ts'

const { values } = parseArgs({ options: { routes: { type: 'string', default: '1000,10000' }, slots: { type: 'string', default: '32' }, maxconn: { type: 'string', default: '1000' } } })
const sizes = values.routes.split(',').map(Number)
const slots = Number(values.slots)
const maxconn = Number(values.maxconn)

function routes(n: number, salt = ''): Route[] {
  return Array.from({ length: n }, (_, i) =>
    normalizeRoute({
      serviceName: `svc-${String(i).padStart(5, '0')}${salt}`,
      destinations: [{ servicePath: [`/team-${i % 50}/app-${i}`], port: 8080 }],
      sticky: i % 2 === 0,
    }),
  )
}

async function rssKb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
}

const ms = (start: bigint): number => Number(process.hrtime.bigint() - start) / 1e6
const mb = (kb: number): string => (kb / 1024).toFixed(0)

type Applied = { renderMs: number; checkMs: number; reloadMs: number }
const rows: string[] = []
for (const n of sizes) {
  const stateDir = await mkdtemp(join(tmpdir(), 'tether-scale-'))
  let last: Applied | undefined
  const quiet = (): void => {}
  const engine = await createHaproxyEngine({
    stateDir,
    listen: `127.0.0.1:${await freePort()}`,
    adminListen: `127.0.0.1:${await freePort()}`,
    resolvers: ['127.0.0.1:1'],
    cookieKey: 'bench-cookie-key',

    maxconn,
    logger: {
      debug: quiet,
      warn: quiet,
      error: (obj, msg) => process.stderr.write(`${msg ?? ''} ${JSON.stringify(obj)}\n`),
      info: (obj, msg) => {
        if (msg === 'configuration applied') last = obj as Applied
      },
    },
  })
  try {
    const snapshot = { version: 1, routes: routes(n) }
    const size = render(snapshot, resolveSettings({ stateDir, cookieKey: 'bench-cookie-key', maxconn })).config.length

    let t = process.hrtime.bigint()
    await engine.apply(snapshot)
    const startMs = ms(t)
    const first = last!

    const changed = { version: 2, routes: [...snapshot.routes, ...routes(1, '-new')] }
    t = process.hrtime.bigint()
    await engine.apply(changed)
    const applyMs = ms(t)
    const second = last!

    const info = await engine.process!.proc()
    const haproxyKb = (await rssKb(info.master.pid)) + (await Promise.all(info.workers.map((w) => rssKb(w.pid)))).reduce((a, b) => a + b, 0)
    const agentKb = process.memoryUsage().rss / 1024
    const f = (x: number): string => x.toFixed(0)
    rows.push(
      `| ${n.toLocaleString('en')} | ${slots} | ${f(size / 1024)} KB | ${f(first.renderMs)} / ${f(first.checkMs)} / ${f(first.reloadMs)} / **${f(startMs)}** | ${f(second.renderMs)} / ${f(second.checkMs)} / ${f(second.reloadMs)} / **${f(applyMs)}** | ${mb(agentKb)} | ${mb(haproxyKb)} |`,
    )
    process.stderr.write(`${rows.at(-1)}\n`)
  } finally {
    await engine.stop()
    await rm(stateDir, { recursive: true, force: true })
  }
}

console.log('| routes | slots | haproxy.cfg | first apply ms: render / haproxy -c / start / total | one route changed ms: render / haproxy -c / reload / total | agent RSS MB | HAProxy RSS MB (master + worker) |')
console.log('|---|---|---|---|---|---|---|')
for (const row of rows) console.log(row)
