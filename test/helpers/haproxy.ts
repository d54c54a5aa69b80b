/**
 * A real HAProxy engine for a test: free loopback ports, its own temporary state directory,
 * stopped and removed when the test ends (even when it fails). Plus a small HTTP client that
 * keeps cookies the way a browser would, for stickiness tests.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { TestContext } from 'node:test'
import { Agent, request } from 'undici'
import { normalizeRoute, type Route } from '../../src/contracts/route.ts'
import { createHaproxyEngine, type HaproxyEngine, type HaproxyEngineSettings } from '../../src/proxy/haproxy/haproxy-engine.ts'
import { freePort } from './redis-server.ts'

export const TEST_COOKIE_KEY = 'tether-test-cookie-key'

export interface TestProxy {
  engine: HaproxyEngine
  /** http://127.0.0.1:<port> of the routing frontend. */
  url: string
  port: number
  adminUrl: string
  stateDir: string
  stop(): Promise<void>
}

/** Starts nothing yet: HAProxy starts with the first apply(). Cleaned up with t.after(). */
export async function createTestProxy(t: TestContext | undefined, overrides: Partial<HaproxyEngineSettings> = {}): Promise<TestProxy> {
  const stateDir = await mkdtemp(join(tmpdir(), 'tether-haproxy-'))
  const port = await freePort()
  const adminPort = await freePort()
  let engine: HaproxyEngine
  try {
    engine = await createHaproxyEngine({
      stateDir,
      listen: `127.0.0.1:${port}`,
      adminListen: `127.0.0.1:${adminPort}`,
      resolvers: ['127.0.0.1:1'],
      cookieKey: TEST_COOKIE_KEY,
      hardStopAfterMs: 5_000,
      ...overrides,
    })
  } catch (err) {
    await rm(stateDir, { recursive: true, force: true })
    throw err
  }
  let stopped: Promise<void> | undefined
  const proxy: TestProxy = {
    engine,
    url: `http://127.0.0.1:${port}`,
    port,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    stateDir,
    stop() {
      stopped ??= engine.stop().finally(() => rm(stateDir, { recursive: true, force: true }))
      return stopped
    },
  }
  t?.after(() => proxy.stop())
  return proxy
}

/** A normalised route from the short form tests use. */
export function route(r: {
  serviceName: string
  paths?: string[]
  port?: number
  sticky?: boolean
  stickyCookie?: string
  domains?: string[]
  endpoints?: string[]
}): Route {
  return normalizeRoute({
    serviceName: r.serviceName,
    destinations: [{ servicePath: r.paths ?? ['/'], port: r.port ?? 80 }],
    serviceDomain: r.domains,
    sticky: r.sticky,
    stickyCookie: r.stickyCookie,
    endpoints: r.endpoints,
  })
}

export interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  /** Parsed JSON body, or the text when it is not JSON. */
  body: unknown
  setCookies: string[]
}

/**
 * HTTP client with a cookie jar (name → value), one keep-alive pool, closed by close().
 * `reuse: false` opens a new connection per request, as a new visitor would: after a reload,
 * an idle keep-alive connection gets one last answer from the previous worker (by design,
 * `option idle-close-on-response`), so checks of "the new table is served" use fresh ones.
 */
export function createClient(options: { reuse?: boolean } = {}) {
  const reuse = options.reuse ?? true
  const agent = new Agent({ keepAliveTimeout: 5_000, connections: 8 })
  const jar = new Map<string, string>()
  async function get(url: string, options: { host?: string; cookies?: boolean; headers?: Record<string, string> } = {}): Promise<Reply> {
    const headers: Record<string, string> = { ...options.headers }
    if (!reuse) headers.connection = 'close'
    if (options.host !== undefined) headers.host = options.host
    if (options.cookies !== false && jar.size > 0) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ')
    const res = await request(url, { dispatcher: agent, headers })
    const text = await res.body.text()
    const raw = res.headers['set-cookie']
    const setCookies = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw]
    if (options.cookies !== false) {
      for (const c of setCookies) {
        const pair = c.split(';')[0] ?? ''
        const eq = pair.indexOf('=')
        if (eq > 0) jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim())
      }
    }
    let body: unknown = text
    try {
      body = JSON.parse(text)
    } catch {
      /* not JSON */
    }
    return { status: res.statusCode, headers: res.headers, body, setCookies }
  }
  return { get, jar, close: () => agent.close() }
}

/** Polls `check` until it returns a value other than undefined; bounded in time. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 10_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (err) {
      lastError = err
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastError === undefined ? '' : `: ${String(lastError)}`}`)
    await sleep(intervalMs)
  }
}
