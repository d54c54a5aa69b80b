/**
 * `tether demo` (`npm run demo`): the whole of Tether on one machine, on loopback, no root
 * needed — a control plane (in-memory store), one proxy (the real agent driving a real
 * HAProxy), three instances of a tiny stateful app, a sticky route and a round-robin one
 * registered through the API the way a CI pipeline would, and the curl commands that show
 * the difference. Ctrl-C or SIGTERM stops everything and removes the temporary files; HAProxy's
 * report of its workers ending after that stop is not an error.
 *
 * Ports (environment, `0` = any free port):
 *   TETHER_DEMO_CONTROL_PORT  control plane, default 8080
 *   TETHER_DEMO_PROXY_PORT    proxy (HAProxy),  default 8000
 *   TETHER_DEMO_ADMIN_PORT    HAProxy stats/metrics/health, default 8404
 * TETHER_HAPROXY_BIN picks the HAProxy binary (default `haproxy` from PATH).
 */
import { Type, type Static } from 'typebox'
import { EnvError, loadEnv, LogLevelEnv, logLevelOf } from '../shared/env.ts'
import { freePort } from '../shared/free-port.ts'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import closeWithGrace from 'close-with-grace'
import { createLogger, LogFormatEnv, logFormatOf } from '../shared/create-logger.ts'
import { request } from 'undici'
import { buildApp, type ControlApp } from '../control/app.ts'
import { createMemoryRouteStore } from '../control/store/memory-route-store.ts'
import { createAgent, type Agent } from '../proxy/agent.ts'
import { createControlClient } from '../proxy/control-client.ts'
import type { Engine } from '../proxy/engine.ts'
import { createHaproxyEngine } from '../proxy/haproxy/haproxy-engine.ts'
import { INSTALL_HAPROXY } from '../proxy/main.ts'
import { createStateStore } from '../proxy/state-store.ts'
import { startDemoBackend, type DemoBackend } from './demo-backend.ts'

const HOST = '127.0.0.1'

function fail(code: number, text: string): never {
  process.stderr.write(`tether demo: ${text}\n`)
  process.exit(code)
}

/** The demo's environment: its three ports (0 = any free port), the log level and HAProxy. */
export const DemoEnvSchema = Type.Object({
  TETHER_DEMO_CONTROL_PORT: Type.Integer({ default: 8080, minimum: 0, maximum: 65535, description: 'Control plane port (0: any free port).' }),
  TETHER_DEMO_PROXY_PORT: Type.Integer({ default: 8000, minimum: 0, maximum: 65535, description: 'Proxy port (0: any free port).' }),
  TETHER_DEMO_ADMIN_PORT: Type.Integer({ default: 8404, minimum: 0, maximum: 65535, description: "The proxy's admin port (0: any free port)." }),
  TETHER_HAPROXY_BIN: Type.String({ default: 'haproxy', minLength: 1, description: 'HAProxy executable.' }),
  ...LogLevelEnv,
  ...LogFormatEnv,
})

async function portOrFree(port: number): Promise<number> {
  return port === 0 ? freePort(HOST) : port
}

export async function main(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  let demoEnv: Static<typeof DemoEnvSchema>
  try {
    demoEnv = loadEnv(DemoEnvSchema, env)
  } catch (err) {
    if (err instanceof EnvError) return fail(78, err.message)
    throw err
  }
  const wanted = { control: demoEnv.TETHER_DEMO_CONTROL_PORT, proxy: demoEnv.TETHER_DEMO_PROXY_PORT, admin: demoEnv.TETHER_DEMO_ADMIN_PORT }
  const logLevel = logLevelOf(demoEnv, 'warn')
  const log = createLogger({ name: 'tether-demo', level: logLevel.level }, logFormatOf(demoEnv), 2)
  for (const deprecation of logLevel.deprecations) log.warn(deprecation)
  // Progress while it starts (~1-10 s), on stderr: stdout holds only the instructions.
  const started = Date.now()
  const progress = (text: string): void => {
    process.stderr.write(`tether demo: ${text} (${((Date.now() - started) / 1000).toFixed(1)} s)\n`)
  }
  const dir = await mkdtemp(join(tmpdir(), 'tether-demo-'))
  const cleanups: Array<() => Promise<unknown>> = [() => rm(dir, { recursive: true, force: true })]
  /** Undoes every step so far, newest first (also those added while it runs). */
  const cleanup = async (): Promise<void> => {
    for (let step = cleanups.pop(); step !== undefined; step = cleanups.pop()) await step().catch((err: unknown) => log.warn({ err }, 'demo cleanup'))
  }
  // Ctrl-C (SIGINT) and SIGTERM clean up alike, from the first step on: a stop while the demo
  // starts leaves nothing behind either (the steps below stop at the next `closing` check).
  let closing = false
  // Cancels the registrations' wait=converged on a stop (the control plane closes only once they end).
  const starting = new AbortController()
  closeWithGrace({ delay: 10_000, logger: { error: (m: unknown) => log.error(m) } }, async ({ err }) => {
    closing = true
    starting.abort()
    if (err !== undefined) process.stderr.write(`tether demo: stopping after an error: ${err.message}\n`)
    await cleanup()
    process.stdout.write('tether demo: stopped.\n')
  })
  const abort = async (code: number, text: string): Promise<never> => {
    await cleanup()
    return fail(code, text)
  }

  const proxyPort = await portOrFree(wanted.proxy)
  const adminPort = await portOrFree(wanted.admin)
  const haproxyBin = demoEnv.TETHER_HAPROXY_BIN
  progress(`checking HAProxy (${haproxyBin})`)
  let engine: Engine
  try {
    engine = await createHaproxyEngine({
      haproxyBin,
      stateDir: join(dir, 'haproxy'),
      listen: `${HOST}:${proxyPort}`,
      adminListen: `${HOST}:${adminPort}`,
      // The demo's routes name their endpoints; no service is looked up in DNS.
      resolvers: [`${HOST}:53`],
      cookieKey: randomBytes(16).toString('hex'),
      hardStopAfterMs: 5000,
      // HAProxy's own notices (reloads, stopped proxies) would drown the instructions.
      logger: log.child({ component: 'haproxy' }, { level: 'error' }),
    })
  } catch (error) {
    if (closing) return
    const text = (error as Error).message
    return abort(69, `the demo needs HAProxy (${haproxyBin}): ${text}${/install/i.test(text) ? '' : `\n${INSTALL_HAPROXY}`}`)
  }

  cleanups.push(() => engine.stop())
  if (closing) return
  progress(`${engine.version} found; starting the control plane`)
  // Control plane, in this process, with an in-memory store.
  const apiToken = `demo-${randomBytes(12).toString('hex')}`
  const proxyToken = randomBytes(24).toString('hex')
  const store = createMemoryRouteStore()
  let app: ControlApp
  try {
    app = await buildApp({ store, auth: { apiTokens: new Map([[apiToken, 'demo']]), proxyToken }, statsUrl: `http://${HOST}:${adminPort}/stats` })
    await app.listen({ host: HOST, port: wanted.control })
  } catch (error) {
    if (closing) return
    const inUse = (error as NodeJS.ErrnoException).code === 'EADDRINUSE'
    return abort(1, inUse ? `port ${wanted.control} is in use; set TETHER_DEMO_CONTROL_PORT to another port (0 = any free port)` : `control plane: ${(error as Error).message}`)
  }
  const address = app.server.address()
  const controlPort = address !== null && typeof address === 'object' ? address.port : wanted.control
  const controlUrl = `http://${HOST}:${controlPort}`
  cleanups.push(() => app.close())
  progress(`control plane listening on ${controlUrl}`)

  if (closing) return
  const backends: DemoBackend[] = []
  cleanups.push(() => Promise.all(backends.map((b) => b.close())))
  for (const name of ['demo-1', 'demo-2', 'demo-3']) backends.push(await startDemoBackend(name, HOST))
  if (closing) return
  progress(`three demo backends listening on ${backends.map((b) => b.address).join(', ')}`)

  // The proxy: the same agent `tether proxy` runs, long-polling the control plane over HTTP.
  const agent: Agent = createAgent({
    id: 'demo-proxy',
    node: 'demo',
    engine,
    client: createControlClient({ urls: [controlUrl], token: proxyToken }),
    state: await createStateStore({ dir: join(dir, 'state') }),
    log: log.child({ component: 'agent' }),
    heartbeatMs: 2000,
  })
  if (closing) return
  cleanups.push(() => agent.stop())
  await agent.start()
  if (closing) return
  progress('proxy agent started; HAProxy starts with its first configuration')

  // Register the routes as a CI pipeline would: one request each, answered once the proxy serves them.
  const endpoints = backends.map((b) => b.address).join(',')
  const routes = [
    { serviceName: 'demo', servicePath: '/demo', sticky: true },
    { serviceName: 'rr', servicePath: '/rr', sticky: false },
  ]
  const registrations: string[] = []
  for (const r of routes) {
    const query = `serviceName=${r.serviceName}&servicePath=${r.servicePath}&port=80&endpoints=${endpoints}${r.sticky ? '&sticky=true' : ''}`
    registrations.push(`curl -X PUT -H "Authorization: Bearer ${apiToken}" "${controlUrl}/v1/reconfigure?${query}&wait=converged"`)
    progress(`registering ${r.servicePath} (${r.sticky ? 'sticky' : 'round robin'}) and waiting until the proxy serves it`)
    let res: Awaited<ReturnType<typeof request>>
    let body: string
    try {
      res = await request(`${controlUrl}/v1/reconfigure?${query}&wait=converged&timeout=15`, { method: 'PUT', headers: { authorization: `Bearer ${apiToken}` }, signal: starting.signal })
      body = await res.body.text()
    } catch (error) {
      if (closing) return
      throw error
    }
    if (closing) return
    if (res.statusCode !== 200) {
      const why = agent.status().lastError ?? body
      return abort(1, `the proxy did not take the route ${r.servicePath} (HTTP ${res.statusCode}): ${why}${/address already in use|cannot bind/i.test(why) ? '\nSet TETHER_DEMO_PROXY_PORT / TETHER_DEMO_ADMIN_PORT to free ports (0 = any).' : ''}`)
    }
  }

  if (closing) return
  progress('the proxy serves both routes')
  const proxyUrl = `http://${HOST}:${proxyPort}`
  const jar = join(dir, 'cookies.txt')
  const text = [
    '',
    'Tether demo is running. Ctrl-C stops it.',
    '',
    `  control plane  ${controlUrl}   Swagger UI ${controlUrl}/docs   API token ${apiToken}`,
    `  dashboard      ${controlUrl}/ui/`,
    `  proxy          ${proxyUrl}   (${engine.version}, driven by the Tether agent)`,
    `  proxy admin    http://${HOST}:${adminPort}/stats`,
    `  backends       ${backends.map((b) => `${b.name} ${b.address}`).join(', ')}`,
    '',
    'Routes registered, as a CI pipeline would:',
    ...registrations.map((c) => `  $ ${c}`),
    '',
    'Sticky route /demo: a client that keeps cookies (like a browser) stays on one instance, and its visit count grows:',
    `  $ for i in 1 2 3 4 5; do curl -s -b ${jar} -c ${jar} ${proxyUrl}/demo; done`,
    '',
    'Round-robin route /rr: requests spread over all three instances, each visit a fresh session:',
    `  $ for i in 1 2 3 4 5 6; do curl -s ${proxyUrl}/rr; done`,
    '',
    'Fleet status (the proxy reports the version it serves):',
    `  $ curl -s ${controlUrl}/v1/status`,
    '',
  ].join('\n')
  process.stdout.write(`${text}\n`)
}
