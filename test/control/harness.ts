/**
 * Builds a control plane for a test, the way every caller does (buildApp), with known tokens,
 * and closes it after the test.
 */
import { after, before, type TestContext } from 'node:test'
import { buildApp, type BuildAppOptions, type ControlApp } from '../../src/control/app.ts'
import { createMemoryRouteStore } from '../../src/control/store/memory-route-store.ts'
import type { RouteStore } from '../../src/control/store/route-store.ts'

export const API_TOKEN = 'test-api-token-0123456789'
export const OTHER_API_TOKEN = 'test-ops-token-9876543210'
export const PROXY_TOKEN = 'test-proxy-token-0123456789'
export const api = { authorization: `Bearer ${API_TOKEN}` }
export const proxy = { authorization: `Bearer ${PROXY_TOKEN}` }

export interface TestControl {
  app: ControlApp
  store: RouteStore
}

async function build(options: Partial<BuildAppOptions>): Promise<TestControl> {
  const store = options.store ?? createMemoryRouteStore()
  const app = await buildApp({
    store,
    auth: {
      apiTokens: new Map([
        [API_TOKEN, 'ci'],
        [OTHER_API_TOKEN, 'ops'],
      ]),
      proxyToken: PROXY_TOKEN,
    },
    ...options,
  })
  return { app, store }
}

export async function startControl(t: TestContext, options: Partial<BuildAppOptions> = {}): Promise<TestControl> {
  const control = await build(options)
  t.after(async () => {
    await control.app.close()
    if (options.store === undefined) await control.store.close()
  })
  return control
}

/**
 * One control plane for a whole describe block (a table of cases): built before its first
 * test, closed after its last. Call it inside `describe`; the returned function gives it to
 * each test.
 */
export function sharedControl(options: Partial<BuildAppOptions> = {}): () => TestControl {
  let control: TestControl | undefined
  before(async () => {
    control = await build(options)
  })
  after(async () => {
    await control?.app.close()
    if (options.store === undefined) await control?.store.close()
  })
  return () => {
    if (control === undefined) throw new Error('sharedControl(): use it inside the describe block that created it')
    return control
  }
}

/** A heartbeat body as a proxy agent sends it. */
export function heartbeat(version: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    version,
    status: 'ok',
    lastError: null,
    refusedRoutes: [],
    node: 'node-1',
    haproxyVersion: '2.6.12',
    startedAt: '2024-01-01T00:00:00.000Z',
    backends: [],
    ...extra,
  }
}

/** Polls a condition (bounded: 5 s). */
export async function waitFor(condition: () => boolean | Promise<boolean>, what = 'condition'): Promise<void> {
  const deadline = Date.now() + 5000
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}
