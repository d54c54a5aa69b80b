/**
 * Disaster recovery as the README tells it: `tether backup` from a control plane on one
 * redis-server, `tether restore` into a control plane on another, EMPTY redis-server (two real
 * Redis processes, two control planes listening on loopback, the real CLI as a child process).
 * Afterwards both serve the same table: /v1/routes (routes and owners), the routes of
 * /v1/config, the certificate; the change log of the new one records the restore with its actor;
 * the same document again changes nothing; a real HAProxy behind each control plane serves the
 * restored route alike (same backends, sticky, a session begun on the old proxy goes on).
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { describe, it, type TestContext } from 'node:test'
import { normalizeRoute } from '../../../src/contracts/route.ts'
import { buildApp } from '../../../src/control/app.ts'
import { createSecretBox, type SecretBox } from '../../../src/control/secret-box.ts'
import { createRedisRouteStore } from '../../../src/control/store/redis-route-store.ts'
import { createCa, issue } from '../../helpers/pki.ts'
import { freePort, startRedisFor } from '../../helpers/redis-server.ts'
import { API_TOKEN } from '../harness.ts'
import { backends, proxyUrl, startAgent, startControl as startProxiedControl } from '../../proxy/harness.ts'

const HASH = '$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/'

/** A control plane on its own redis-server, listening on loopback. */
async function controlOnRedis(t: TestContext, secretBox: SecretBox): Promise<{ url: string; store: ReturnType<typeof createRedisRouteStore> }> {
  const redis = await startRedisFor(t)
  const store = createRedisRouteStore({ url: redis.url })
  const app = await buildApp({ store, secretBox, auth: { apiTokens: new Map([[API_TOKEN, 'ops']]) } })
  const port = await freePort()
  await app.listen({ host: '127.0.0.1', port })
  t.after(async () => {
    await app.close()
    await store.close()
  })
  return { url: `http://127.0.0.1:${port}`, store }
}

// biome-ignore lint/suspicious/noExplicitAny: a JSON answer, asserted field by field
async function call(base: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${API_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(30_000),
  })
  const text = await res.text()
  return { status: res.status, body: text === '' ? null : JSON.parse(text) }
}

/** `tether <role>` with the given standard input; its exit code and outputs. */
async function cli(role: 'backup' | 'restore', url: string, input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', role], {
    env: { PATH: process.env.PATH ?? '', TETHER_URL: url, TETHER_API_TOKEN: API_TOKEN },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
  child.stdin.end(input)
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000) // tsx compiles on start: slow on a loaded machine
  const [code] = (await once(child, 'exit')) as [number | null]
  clearTimeout(timer)
  return { code, stdout, stderr }
}

describe('backup and restore between two Redis servers', () => {
  it('tether backup, then tether restore into an empty Redis: the same routes, owners, certificate and config; recorded; idempotent', async (t) => {
    // The same TETHER_SECRET_KEY_FILE on both sides, as the disaster-recovery procedure requires.
    const secretBox = createSecretBox(randomBytes(32))
    const [old, fresh] = await Promise.all([controlOnRedis(t, secretBox), controlOnRedis(t, secretBox)])
    const leaf = await issue(await createCa(), ['shop.example.com'])
    assert.equal((await call(old.url, 'PUT', '/v1/routes/shop', { servicePath: ['/shop'], port: 8080, serviceDomain: ['shop.example.com'], sticky: true, httpsOnly: true, auth: { users: [{ name: 'alice', passwordHash: HASH }] } })).status, 200)
    const db = await call(old.url, 'PUT', '/v1/routes/db', { tcp: [{ srcPort: 15432, port: 5432 }] })
    assert.equal(db.status, 200, JSON.stringify(db.body))
    assert.equal((await call(old.url, 'PUT', '/v1/certificates/shop', { certificate: leaf.chain, key: leaf.key })).status, 200)
    await old.store.put(normalizeRoute({ serviceName: 'labels', destinations: [{ servicePath: ['/labels'], port: 80 }] }), { actor: 'discovery', source: 'discovery' })

    const backup = await cli('backup', old.url)
    assert.equal(backup.code, 0, backup.stderr)
    assert.ok(!backup.stdout.includes('PRIVATE KEY') && !backup.stdout.includes(API_TOKEN), 'no key in clear, no token')
    assert.equal((await call(fresh.url, 'GET', '/v1/routes')).body.routes.length, 0, 'the new Redis starts empty')

    const restore = await cli('restore', fresh.url, backup.stdout)
    assert.equal(restore.code, 0, restore.stderr)
    assert.match(restore.stderr, /^restored: version \d+; routes \d+ put, 0 removed, 0 unchanged; certificates 1 stored, 0 unchanged$/m)

    const table = async (url: string) => (await call(url, 'GET', '/v1/routes')).body.routes.map((r: { route: { serviceName: string }; source: string }) => ({ route: r.route, source: r.source }))
    const [before, after] = [await table(old.url), await table(fresh.url)]
    assert.deepEqual(before.map((r: { route: { serviceName: string }; source: string }) => [r.route.serviceName, r.source]), [['db', 'api'], ['labels', 'discovery'], ['shop', 'api']])
    assert.deepEqual(after, before)
    const configRoutes = async (url: string) => (await call(url, 'GET', '/v1/config')).body.routes
    assert.deepEqual(await configRoutes(fresh.url), await configRoutes(old.url))
    const cert = async (url: string) => (await call(url, 'GET', '/v1/certificates/shop')).body
    assert.deepEqual([(await cert(fresh.url)).fingerprint, (await cert(fresh.url)).domains], [(await cert(old.url)).fingerprint, ['shop.example.com']])

    const log = (await call(fresh.url, 'GET', '/v1/changes?since=0')).body.changes
    assert.equal(log.length, before.length)
    assert.deepEqual([...new Set(log.map((c: { version: number }) => c.version))].length, 1, 'the routes are one version')
    for (const c of log) {
      assert.equal(c.actor, 'ops')
      assert.match(c.note, /^restore of a backup taken at .* \(version \d+\)$/)
    }
    assert.equal(log.find((c: { serviceName: string }) => c.serviceName === 'labels').source, 'discovery')

    const version = (await call(fresh.url, 'GET', '/v1/routes')).body.version
    const again = await cli('restore', fresh.url, backup.stdout)
    assert.equal(again.code, 0, again.stderr)
    assert.match(again.stderr, new RegExp(`nothing to change: the table already equals the document \\(version ${version}\\)`))
    assert.equal((await call(fresh.url, 'GET', '/v1/routes')).body.version, version)
  })

  it('a proxy of the restored control plane answers as one of the old did (real HAProxy, wait=converged)', async (t) => {
    const secretBox = createSecretBox(randomBytes(32))
    const open = async () => {
      const redis = await startRedisFor(t)
      const store = createRedisRouteStore({ url: redis.url })
      t.after(() => store.close())
      return startProxiedControl(t, { store, secretBox })
    }
    const [old, fresh] = await Promise.all([open(), open()])
    const [b1, b2] = await backends(t, 2, 'restored')
    const route = { servicePath: ['/app'], port: 80, endpoints: [b1!.address, b2!.address], sticky: true }
    assert.equal((await old.api('PUT', '/v1/routes/app', route)).status, 200)
    const [p1, p2] = await Promise.all([startAgent(t, { id: 'old-proxy', controlUrls: [old.url] }), startAgent(t, { id: 'new-proxy', controlUrls: [fresh.url] })])
    const backup = await old.api('GET', '/v1/backup')
    assert.equal(backup.status, 200)
    const restored = await fresh.api('PUT', '/v1/backup?wait=converged&timeout=60', backup.body)
    assert.equal(restored.status, 200, JSON.stringify(restored.body))
    assert.deepEqual([restored.body.routes.put, restored.body.convergence?.converged], [['app'], 1])
    const answer = async (base: string, cookie?: string) => {
      const res = await fetch(`${base}/app`, { headers: cookie === undefined ? {} : { cookie }, signal: AbortSignal.timeout(10_000) })
      return { status: res.status, cookie: res.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ') || undefined, body: (await res.json()) as { instance: string; path: string } }
    }
    // Served alike by both proxies: /app on the same two backends, sticky (a client with its cookie stays on one).
    const firsts: Array<{ cookie: string; instance: string }> = []
    for (const p of [p1, p2]) {
      const deadline = Date.now() + 30_000
      let first = await answer(proxyUrl(p)).catch(() => undefined)
      while ((first?.status !== 200 || first.cookie === undefined) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100))
        first = await answer(proxyUrl(p)).catch(() => undefined)
      }
      assert.ok(first !== undefined && first.status === 200 && first.cookie !== undefined, `${p.id} serves /app with an affinity cookie`)
      assert.ok(['restored1', 'restored2'].includes(first.body.instance))
      for (let i = 0; i < 4; i++) {
        const next = await answer(proxyUrl(p), first.cookie)
        assert.deepEqual([next.status, next.body.instance, next.body.path], [200, first.body.instance, '/app'])
      }
      firsts.push({ cookie: first.cookie, instance: first.body.instance })
      const fresh = new Set<string>()
      for (let i = 0; i < 8 && fresh.size < 2; i++) fresh.add((await answer(proxyUrl(p))).body.instance)
      assert.deepEqual([...fresh].sort(), ['restored1', 'restored2'], `${p.id} spreads new clients over both backends`)
    }
    // The same affinity key on both sides: a session begun on the old proxy goes on through the new one.
    const viaNew = await answer(proxyUrl(p2), firsts[0]!.cookie)
    assert.equal(viaNew.body.instance, firsts[0]!.instance)
  })

  it('tether restore of a refused document exits 1 with the field and the rule, and changes nothing', async (t) => {
    const { url } = await controlOnRedis(t, createSecretBox(randomBytes(32)))
    const doc = { format: 'tether-backup/1', createdAt: new Date().toISOString(), version: 1, routes: [{ route: normalizeRoute({ serviceName: 'a', destinations: [{ servicePath: ['/a'], port: 70000 }] }), source: 'api' }], certificates: [] }
    const res = await cli('restore', url, JSON.stringify(doc))
    assert.equal(res.code, 1)
    assert.match(res.stderr, /400 VALIDATION_FAILED .*port/)
    assert.ok(!res.stderr.includes(API_TOKEN))
    assert.equal((await call(url, 'GET', '/v1/routes')).body.version, 0)
  })
})
