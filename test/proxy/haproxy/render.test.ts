import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { normalizeRoute, type Route } from '../../../src/contracts/route.ts'
import type { ConfigSnapshot } from '../../../src/contracts/config-snapshot.ts'
import { render, type RenderSettings, type ServerInput } from '../../../src/proxy/haproxy/render.ts'
import type { Task } from '../../../src/proxy/haproxy/servers.ts'
import { resolveSettings } from '../../../src/proxy/haproxy/settings.ts'
import { checkConfigFile } from '../../../src/proxy/haproxy/validate.ts'

const goldenDir = join(dirname(fileURLToPath(import.meta.url)), 'golden')
const update = process.env.UPDATE_GOLDEN === '1'

// A production-like state directory; never a path of the machine running the tests.
const settings: RenderSettings = resolveSettings({
  stateDir: '/var/lib/tether/proxy',
  cookieKey: 'golden-test-cookie-key',
  listen: ':80',
  adminListen: ':8404',
})

const route = (r: Parameters<typeof normalizeRoute>[0]): Route => normalizeRoute(r)

/** Tasks as the proxy's DNS discovery would find them: named after the task when DNS said so, else by address. */
const tasks: Record<string, Task[]> = {
  'go-demo': [
    { address: '10.0.1.7', name: 'go-demo.2.k3v1fwkcsbwtr0s8yjduq7u4e.ingress-net' },
    { address: '10.0.1.5', name: 'go-demo.1.a8c2kqv0x9h3m4p1j6r7s2t5u.ingress-net' },
    { address: '10.0.1.9' },
  ],
}
const serverInput: ServerInput = { tasks: (serviceName) => tasks[serviceName] }

const cases: Array<{ name: string; snapshot: ConfigSnapshot; settings?: Partial<RenderSettings> }> = [
  { name: 'empty', snapshot: { version: 0, routes: [] } },
  {
    name: 'sticky-dns',
    snapshot: { version: 3, routes: [route({ serviceName: 'go-demo', destinations: [{ servicePath: ['/demo'], port: 8080 }], sticky: true })] },
  },
  {
    name: 'prefixes-and-catch-all',
    snapshot: {
      version: 7,
      routes: [
        route({ serviceName: 'web', destinations: [{ servicePath: ['/'], port: 80 }] }),
        route({ serviceName: 'api-v2', destinations: [{ servicePath: ['/api/v2'], port: 9000 }] }),
        route({ serviceName: 'api', destinations: [{ servicePath: ['/api', '/internal/api/'], port: 9000 }], sticky: true, stickyCookie: 'APISESSION' }),
      ],
    },
  },
  {
    name: 'domains',
    snapshot: {
      version: 12,
      routes: [
        route({ serviceName: 'shop', destinations: [{ servicePath: ['/'], port: 8080 }], serviceDomain: ['Shop.Example.com', '*.shop.example.com'], sticky: true }),
        route({ serviceName: 'shop-api', destinations: [{ servicePath: ['/api'], port: 8081 }], serviceDomain: ['shop.example.com'] }),
        route({ serviceName: 'www', destinations: [{ servicePath: ['/'], port: 80 }] }),
      ],
    },
  },
  {
    name: 'access-log',
    settings: { accessLog: { format: 'json', proxyId: 'proxy-1', node: "node '1' 100%" } },
    snapshot: {
      version: 21,
      routes: [
        route({ serviceName: 'web', destinations: [{ servicePath: ['/', '/shop'], port: 80 }], sticky: true }),
        route({ serviceName: 'cache', destinations: [], tcp: [{ srcPort: 6379, port: 6379 }] }),
      ],
    },
  },
  {
    name: 'endpoints-and-ports',
    settings: { secureCookie: true, nbthread: 2, descriptorLimit: 65536 },
    snapshot: {
      version: 20,
      routes: [
        route({ serviceName: 'legacy', destinations: [{ servicePath: ['/legacy'], port: 8080 }], endpoints: ['10.1.0.5:8080', 'legacy.internal:8080', '[fd00::5]:8080'], sticky: true }),
        route({ serviceName: 'multi', destinations: [{ servicePath: ['/m/ui'], port: 3000 }, { servicePath: ['/m/api'], port: 4000 }] }),
      ],
    },
  },
  {
    name: 'conflict',
    snapshot: {
      version: 4,
      routes: [
        route({ serviceName: 'b-second', destinations: [{ servicePath: ['/shared', '/b'], port: 80 }] }),
        route({ serviceName: 'a-first', destinations: [{ servicePath: ['/shared'], port: 80 }] }),
      ],
    },
  },
]

async function golden(file: string, actual: string): Promise<void> {
  const path = join(goldenDir, file)
  if (update) {
    await writeFile(path, actual)
    return
  }
  const expected = await readFile(path, 'utf8').catch(() => {
    throw new Error(`golden file ${file} missing: run with UPDATE_GOLDEN=1 and review it`)
  })
  assert.equal(actual, expected, `${file} differs from the golden file (UPDATE_GOLDEN=1 rewrites it; review the diff)`)
}

describe('renderConfig', () => {
  for (const c of cases) {
    it(`renders '${c.name}' exactly as the golden file`, async () => {
      const out = render(c.snapshot, { ...settings, ...c.settings }, serverInput)
      await golden(`${c.name}.cfg`, out.config)
      // routes-<hash>.map always; lengths-<hash>.map when routes have domains.
      for (const f of out.files) await golden(`${c.name}.${basename(f.path).split('-')[0]}.map`, f.text)
      assert.deepEqual(out.files.map((f) => basename(f.path).split('-')[0]), c.name === 'domains' ? ['routes', 'lengths'] : c.name === 'access-log' ? ['routes', 'logroutes'] : ['routes'])
    })
  }

  it('drains old workers for TETHER_DRAIN_TIMEOUT (none at 0), limits connections per client address by default and its request rate when asked', () => {
    const c = cases.find((x) => x.name === 'prefixes-and-catch-all')!
    const defaults = render(c.snapshot, settings).config
    assert.match(defaults, /^ {4}hard-stop-after 3600000ms$/m)
    assert.match(defaults, /^ {4}tcp-request session reject if \{ sc0_conn_cur gt 1000 \}$/m)
    assert.match(defaults, /store conn_cur$/m, 'by default the table counts connections only')
    assert.doesNotMatch(defaults, /http_req_rate/, 'no request rate limit unless one is set')
    const rated = render(c.snapshot, { ...settings, clientMaxRequestRate: 10_000 }).config
    assert.match(rated, /^ {4}http-request deny deny_status 429 hdr Retry-After 10 if \{ sc0_http_req_rate gt 10000 \}$/m)
    assert.match(rated, /store conn_cur,http_req_rate\(10s\)$/m)
    const off = render(c.snapshot, { ...settings, hardStopAfterMs: 0, clientMaxConnections: 0, clientMaxRequestRate: 0 }).config
    assert.doesNotMatch(off, /hard-stop-after|stick-table|sc0_/)
    assert.match(off, /^ {4}mworker-max-reloads 50$/m, 'the rest of the global section is there')
    const connectionsOnly = render(c.snapshot, { ...settings, clientMaxRequestRate: 0 }).config
    assert.match(connectionsOnly, /store conn_cur$/m)
    assert.doesNotMatch(connectionsOnly, /http_req_rate/)
  })

  it('gives byte-identical output whatever the order of routes', () => {
    const c = cases.find((x) => x.name === 'prefixes-and-catch-all')!
    const reversed = { ...c.snapshot, routes: [...c.snapshot.routes].reverse() }
    assert.equal(render(reversed, settings).config, render(c.snapshot, settings).config)
    assert.deepEqual(render(reversed, settings).files, render(c.snapshot, settings).files)
  })

  it('gives sticky routes a dynamic (hashed) cookie and non-sticky routes none', () => {
    const out = render(cases.find((x) => x.name === 'prefixes-and-catch-all')!.snapshot, settings).config
    const backend = (name: string): string => out.split('\n\n').find((block) => block.startsWith(`backend ${name}\n`)) ?? ''
    assert.match(backend('svc_api_9000'), /\n    cookie APISESSION insert indirect nocache dynamic httponly attr "SameSite=Lax"(?:\n|$)/)
    assert.doesNotMatch(backend('svc_web_80'), /cookie/)
    assert.match(backend('svc_web_80'), /balance roundrobin/)
  })

  it('reports a path claimed by two services and keeps it for the first by name', () => {
    const out = render(cases.find((x) => x.name === 'conflict')!.snapshot, settings)
    assert.deepEqual(out.shadowed, [{ host: '', path: '/shared', serviceName: 'b-second', port: 80, destination: 0, shadowedBy: 'a-first' }])
    assert.match(out.files[0]!.text, /^\/shared\/ svc_a-first_80$/m)
  })

  it('maps each backend line back to the service that produced it', () => {
    const out = render(cases.find((x) => x.name === 'endpoints-and-ports')!.snapshot, settings)
    const lines = out.config.split('\n')
    const serverLine = lines.findIndex((l) => l.includes('legacy.internal:8080'))
    assert.deepEqual(out.owners[serverLine], ['legacy'])
    const global = lines.indexOf('global')
    assert.deepEqual(out.owners[global], [])
  })

  it('renders one named server per task, health-checked, and no server for a service whose tasks are not known yet', () => {
    const c = cases.find((x) => x.name === 'sticky-dns')!
    const out = render(c.snapshot, settings, serverInput)
    assert.deepEqual(out.backends.map((b) => b.servers.map((e) => `${e.name} ${e.address}:${e.port}`)), [
      ['10.0.1.9 10.0.1.9:8080', 'go-demo.1.a8c2kqv0x9h3m4p1j6r7s2t5u.ingress-net 10.0.1.5:8080', 'go-demo.2.k3v1fwkcsbwtr0s8yjduq7u4e.ingress-net 10.0.1.7:8080'],
    ])
    assert.match(out.config, /\n    server go-demo\.1\.a8c2kqv0x9h3m4p1j6r7s2t5u\.ingress-net 10\.0\.1\.5:8080 check inter 2s fall 2 rise 1\n/)
    assert.doesNotMatch(out.config, /server-template|resolvers/)
    const unknown = render(c.snapshot, settings)
    assert.deepEqual(unknown.backends.map((b) => b.servers), [[]])
    assert.match(unknown.config, /\nbackend svc_go-demo_8080\n    balance roundrobin\n    cookie TETHER_go-demo insert/)
  })

  it('gives the same skeleton to configurations that differ only in servers, and another when a path changes', () => {
    const c = cases.find((x) => x.name === 'sticky-dns')!
    const a = render(c.snapshot, settings, serverInput)
    const b = render({ ...c.snapshot, version: 9 }, settings, { tasks: () => [{ address: '10.0.9.9' }] })
    assert.notEqual(a.config, b.config)
    assert.equal(a.skeleton, b.skeleton)
    const moved = render({ version: 9, routes: [{ ...c.snapshot.routes[0]!, destinations: [{ servicePath: ['/other'], port: 8080 }] }] }, settings, serverInput)
    assert.notEqual(moved.skeleton, a.skeleton)
  })

  it('leaves the health check off the servers beyond the check budget, and says which', () => {
    const c = cases.find((x) => x.name === 'sticky-dns')!
    const out = render(c.snapshot, settings, { ...serverInput, checkBudget: 1 })
    assert.deepEqual(out.backends[0]!.unchecked, ['go-demo.1.a8c2kqv0x9h3m4p1j6r7s2t5u.ingress-net', 'go-demo.2.k3v1fwkcsbwtr0s8yjduq7u4e.ingress-net'])
    assert.equal(out.config.match(/ check inter/g)?.length, 1)
  })

  for (const c of cases) {
    it(`'${c.name}' is accepted by haproxy -c`, async (t) => {
      const stateDir = await mkdtemp(join(tmpdir(), 'tether-render-'))
      t.after(() => rm(stateDir, { recursive: true, force: true }))
      // 'legacy.internal' does not resolve here; the isolation tests cover that case.
      const snapshot = {
        ...c.snapshot,
        routes: c.snapshot.routes.map((r) => ({ ...r, endpoints: r.endpoints.map((e) => e.replace('legacy.internal', 'localhost')) })),
      }
      const out = render(snapshot, { ...settings, ...c.settings, stateDir, listen: '127.0.0.1:1', adminListen: '127.0.0.1:2' }, serverInput)
      for (const f of out.files) {
        await mkdir(dirname(f.path), { recursive: true })
        await writeFile(f.path, f.text)
      }
      const cfg = join(stateDir, 'haproxy.cfg')
      await writeFile(cfg, out.config)
      const result = await checkConfigFile(cfg)
      assert.equal(result.ok, true, result.output)
    })
  }
})
