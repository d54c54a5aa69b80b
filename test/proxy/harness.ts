/**
 * The whole path for functional tests: a real control plane (buildApp on a loopback port), real
 * proxy agents driving real HAProxy (or the recording engine), real backends. Everything is
 * stopped when the test ends, even when it fails.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import pino from 'pino'
import { Agent as UndiciAgent, request } from 'undici'
import type { SecretBox } from '../../src/control/secret-box.ts'
import { buildApp, type AcmeView, type ControlApp } from '../../src/control/app.ts'
import { createMemoryRouteStore } from '../../src/control/store/memory-route-store.ts'
import type { RouteStore } from '../../src/control/store/route-store.ts'
import { createAgent, type Agent, type AgentOptions } from '../../src/proxy/agent.ts'
import { createControlClient, type ControlClientOptions } from '../../src/proxy/control-client.ts'
import type { Engine } from '../../src/proxy/engine.ts'
import { createRecordingEngine } from '../../src/proxy/recording-engine.ts'
import type { HaproxyEngineSettings } from '../../src/proxy/haproxy/haproxy-engine.ts'
import { createSecretUsers, withSecretUsers } from '../../src/proxy/secret-users.ts'
import { createStateStore } from '../../src/proxy/state-store.ts'
import { closeBackends, startBackends, type Backend } from '../helpers/backends.ts'
import { createTestProxy, type TestProxy } from '../helpers/haproxy.ts'
import { freePort } from '../helpers/redis-server.ts'

export const API_TOKEN = 'api-token-for-tests-0123456789'
export const PROXY_TOKEN = 'proxy-token-for-tests-0123456789'
export const silentLog = pino({ level: process.env.TETHER_TEST_LOG ?? 'silent' })

export interface TestControl {
  url: string
  port: number
  store: RouteStore
  readonly app: ControlApp | null
  /** Stops listening (the store is kept): the control plane is down. */
  stop(): Promise<void>
  /** Starts again on the same port, with `store` or the same one. */
  start(store?: RouteStore): Promise<void>
  /** Calls the API with the API token; answers status and parsed body. */
  // biome-ignore lint/suspicious/noExplicitAny: a JSON answer, asserted field by field
  api(method: 'GET' | 'PUT' | 'DELETE' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: any }>
}

export async function startControl(t: TestContext, options: { store?: RouteStore; proxyTtlMs?: number; port?: number; host?: string; statsUrl?: string; secretBox?: SecretBox; acme?: AcmeView } = {}): Promise<TestControl> {
  const port = options.port ?? (await freePort())
  const host = options.host ?? '127.0.0.1'
  let store = options.store ?? createMemoryRouteStore()
  let app: ControlApp | null = null
  const control: TestControl = {
    url: `http://${host}:${port}`,
    port,
    get store() {
      return store
    },
    set store(s) {
      store = s
    },
    get app() {
      return app
    },
    async start(next) {
      if (app !== null) throw new Error('control plane already running')
      if (next !== undefined) store = next
      const built = await buildApp({ store, auth: { apiTokens: new Map([[API_TOKEN, 'tests']]), proxyToken: PROXY_TOKEN }, proxyTtlMs: options.proxyTtlMs ?? 15_000, statsUrl: options.statsUrl, ...(options.secretBox === undefined ? {} : { secretBox: options.secretBox }), ...(options.acme === undefined ? {} : { acme: options.acme }) })
      await built.listen({ port, host })
      app = built
    },
    async stop() {
      const running = app
      app = null
      await running?.close()
    },
    async api(method, path, body) {
      const res = await request(`${control.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${API_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? null : JSON.stringify(body),
      })
      const text = await res.body.text()
      let parsed: unknown = text
      try {
        parsed = JSON.parse(text)
      } catch {
        // not JSON
      }
      return { status: res.statusCode, body: parsed }
    },
  }
  await control.start()
  t.after(() => control.stop())
  return control
}

export interface TestAgent {
  id: string
  agent: Agent
  engine: Engine
  /** The HAProxy test proxy (url to send requests to), or null with the recording engine. */
  proxy: TestProxy | null
  stateDir: string
  stop(): Promise<void>
}

/**
 * Starts an agent with its own HAProxy (free loopback ports) or with the recording engine.
 * `stateDir`: reuse one to simulate a restarted proxy (the caller then owns its removal).
 */
export async function startAgent(
  t: TestContext,
  options: {
    id: string
    controlUrls: string[]
    engine?: 'haproxy' | 'recording'
    stateDir?: string
    client?: Partial<ControlClientOptions>
    agent?: Partial<AgentOptions>
    /** HAProxy engine settings besides the test defaults. */
    proxy?: Partial<HaproxyEngineSettings>
    /** Read dfp_users_* secrets from here (as `tether proxy` does from TETHER_SECRETS_DIR). */
    secretsDir?: string
    /** Await start() (the disk snapshot applied). Default true. */
  },
): Promise<TestAgent> {
  const stateDir = options.stateDir ?? (await mkdtemp(join(tmpdir(), 'tether-agent-state-')))
  let proxy: TestProxy | null = null
  let engine: Engine
  if (options.engine === 'recording') engine = createRecordingEngine()
  else {
    proxy = await createTestProxy(t, options.proxy)
    engine = proxy.engine
  }
  if (options.secretsDir !== undefined) engine = withSecretUsers(engine, createSecretUsers({ dir: options.secretsDir }))
  const client = createControlClient({ urls: options.controlUrls, token: PROXY_TOKEN, ...options.client })
  const state = await createStateStore({ dir: stateDir })
  const agent = createAgent({
    id: options.id,
    node: `node-of-${options.id}`,
    engine,
    client,
    state,
    log: silentLog,
    heartbeatMs: 500,
    backoff: { baseMs: 50, maxMs: 400 },
    ...options.agent,
  })
  let stopped: Promise<void> | undefined
  const handle: TestAgent = {
    id: options.id,
    agent,
    engine,
    proxy,
    stateDir,
    stop() {
      stopped ??= (async () => {
        await agent.stop()
        await proxy?.stop()
        if (options.stateDir === undefined) await rm(stateDir, { recursive: true, force: true })
      })()
      return stopped
    },
  }
  t.after(() => handle.stop())
  await agent.start()
  return handle
}

/** The reconfigure query string of a route with explicit endpoints. */
export function reconfigureQuery(r: { serviceName: string; path: string; endpoints: string[]; sticky?: boolean; port?: number }): string {
  const q = new URLSearchParams({ serviceName: r.serviceName, servicePath: r.path, port: String(r.port ?? 80), endpoints: r.endpoints.join(',') })
  if (r.sticky === true) q.set('sticky', 'true')
  return q.toString()
}

export interface LoadResult {
  ok: number
  failed: number
  /** The first few failures, for the assertion message. */
  failures: string[]
}

/**
 * A small load generator: `connections` keep-alive clients sending GETs back to back until
 * stop() (or `maxMs`, a safety bound). A request fails on a connection error, a reset or any
 * status other than `expectStatus`.
 */
export function startLoad(url: string, options: { connections?: number; maxMs?: number; expectStatus?: number } = {}): { stop(): Promise<LoadResult>; readonly ok: number } {
  const connections = options.connections ?? 8
  const deadline = Date.now() + (options.maxMs ?? 60_000)
  const expectStatus = options.expectStatus ?? 200
  const dispatcher = new UndiciAgent({ connections, keepAliveTimeout: 10_000, pipelining: 1 })
  const result: LoadResult = { ok: 0, failed: 0, failures: [] }
  let running = true
  const fail = (why: string): void => {
    result.failed += 1
    if (result.failures.length < 5) result.failures.push(why)
  }
  const loops = Array.from({ length: connections }, async () => {
    while (running && Date.now() < deadline) {
      try {
        const res = await request(url, { dispatcher, headersTimeout: 10_000, bodyTimeout: 10_000 })
        await res.body.dump()
        if (res.statusCode === expectStatus) result.ok += 1
        else fail(`HTTP ${res.statusCode}`)
      } catch (error) {
        fail(error instanceof Error ? `${(error as { code?: string }).code ?? ''} ${error.message}` : String(error))
      }
    }
  })
  return {
    get ok() {
      return result.ok
    },
    async stop() {
      running = false
      await Promise.all(loops)
      await dispatcher.close()
      return result
    },
  }
}

/** Loopback backends for one test, closed after it. */
export async function backends(t: TestContext, count: number, prefix: string): Promise<Backend[]> {
  const started = await startBackends(count, { prefix })
  t.after(() => closeBackends(started))
  return started
}

/** The routed listener of an agent started with its own HAProxy. */
export function proxyUrl(p: TestAgent): string {
  if (p.proxy === null) throw new Error(`agent ${p.id} runs no HAProxy`)
  return p.proxy.url
}
