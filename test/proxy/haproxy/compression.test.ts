/**
 * Response compression per route (Docker Flow Proxy's compressionAlgo / compressionType) through
 * a real HAProxy to a real backend, with a client that asks for gzip or deflate and decompresses
 * what it gets (zlib): the body is the backend's, compressed only for the listed types, only
 * when asked, and never twice (a response the backend gzipped itself passes as it is). A route
 * with compression never takes a spare backend, and a change of it reaches HAProxy (a reload).
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { gunzipSync, gzipSync, inflateSync } from 'node:zlib'
import { request } from 'undici'
import { normalizeRoute, type Route } from '../../../src/contracts/route.ts'
import { spareKind } from '../../../src/proxy/haproxy/render.ts'
import { createTestProxy, route, type TestProxy } from '../../helpers/haproxy.ts'

/** Compressible text (repetitive), large enough that HAProxy compresses it. */
const TEXT = Array.from({ length: 400 }, (_, i) => `<p>line ${i} of a page that compresses well</p>`).join('\n')
const BODIES: Record<string, { type: string; body: string }> = {
  '/page': { type: 'text/html; charset=utf-8', body: TEXT },
  '/data': { type: 'application/json', body: JSON.stringify({ rows: Array.from({ length: 300 }, (_, i) => ({ i, name: 'row' })) }) },
  '/blob': { type: 'application/octet-stream', body: TEXT },
}

describe('compression through HAProxy', () => {
  let backend: Server
  let address = ''
  let proxy: TestProxy
  let base: Route

  before(async () => {
    // A task that answers the bodies above, and one it compressed itself (Content-Encoding: gzip).
    backend = createServer((req, res) => {
      if (req.url === '/pre') {
        res.writeHead(200, { 'content-type': 'text/html', 'content-encoding': 'gzip' })
        res.end(gzipSync(TEXT))
        return
      }
      const b = BODIES[req.url ?? ''] ?? { type: 'text/plain', body: 'not found' }
      res.writeHead(BODIES[req.url ?? ''] === undefined ? 404 : 200, { 'content-type': b.type })
      res.end(b.body)
    })
    backend.listen(0, '127.0.0.1')
    await once(backend, 'listening')
    address = `127.0.0.1:${(backend.address() as { port: number }).port}`
    // Spares on (a small table has them): a route with compression must not take one.
    proxy = await createTestProxy(undefined, { spareFromRoutes: 1, spareBackends: 2 })
    base = route({ serviceName: 'base', paths: ['/base'], endpoints: [address] })
    await proxy.engine.apply({ version: 1, routes: [base] })
  })

  after(async () => {
    await proxy?.stop()
    backend?.closeAllConnections()
    backend?.close()
  })

  /** One request; the raw body (not decompressed) and the headers that say how it came. */
  const get = async (path: string, acceptEncoding?: string) => {
    const res = await request(`${proxy.url}${path}`, { headers: { connection: 'close', ...(acceptEncoding === undefined ? {} : { 'accept-encoding': acceptEncoding }) } })
    const raw = Buffer.from(await res.body.arrayBuffer())
    return { status: res.statusCode, encoding: res.headers['content-encoding'] as string | undefined, vary: res.headers.vary as string | undefined, raw }
  }

  const web = (compressionType?: string[]): Route =>
    normalizeRoute({
      serviceName: 'web',
      destinations: [{ servicePath: ['/page', '/data', '/blob', '/pre'], port: 80 }],
      endpoints: [address],
      compressionAlgo: ['gzip', 'deflate'],
      ...(compressionType === undefined ? {} : { compressionType }),
    })

  it('compresses the listed types for a client asking for gzip or deflate, the same body once decompressed; nothing else', async () => {
    const routeWeb = web(['text/html', 'application/json'])
    assert.equal(spareKind(routeWeb), undefined, 'a route with compression has rules of its own: no spare')
    await proxy.engine.apply({ version: 2, routes: [base, routeWeb] })
    assert.equal(proxy.engine.counters.reloads, 2, 'the new route took its own backend (a reload), not a spare')
    const config = await readFile(proxy.engine.paths.config, 'utf8')
    assert.match(config, /\nbackend svc_web_80\n(?: {4}.*\n)*? {4}compression algo gzip deflate\n {4}compression type application\/json text\/html\n/)

    for (const path of ['/page', '/data']) {
      const gz = await get(path, 'gzip')
      assert.equal(gz.status, 200)
      assert.equal(gz.encoding, 'gzip', `${path}: compressed for a client asking for gzip`)
      assert.equal(gunzipSync(gz.raw).toString(), BODIES[path]!.body, `${path}: the backend's body once decompressed`)
      assert.ok(gz.raw.length < Buffer.byteLength(BODIES[path]!.body), `${path}: smaller compressed`)
      console.log(`MEASURED ${path} ${Buffer.byteLength(BODIES[path]!.body)} bytes → ${gz.raw.length} gzip`)
      const df = await get(path, 'deflate')
      assert.equal(df.encoding, 'deflate', `${path}: deflate when that is what the client asks for`)
      assert.equal(inflateSync(df.raw).toString(), BODIES[path]!.body)
      // No Accept-Encoding: the body as the backend sent it.
      const plain = await get(path)
      assert.equal(plain.status, 200)
      assert.equal(plain.encoding, undefined, `${path}: not compressed for a client that did not ask`)
      assert.equal(plain.raw.toString(), BODIES[path]!.body)
    }
    // A type not listed passes uncompressed, even when asked.
    const blob = await get('/blob', 'gzip')
    assert.equal(blob.status, 200)
    assert.equal(blob.encoding, undefined, 'application/octet-stream is not listed')
    assert.equal(blob.raw.toString(), TEXT)
  })

  it('never compresses a response the backend compressed itself (Content-Encoding set): the client decompresses it once', async () => {
    const pre = await get('/pre', 'gzip')
    assert.equal(pre.status, 200)
    assert.equal(pre.encoding, 'gzip')
    assert.equal(gunzipSync(pre.raw).toString(), TEXT, 'one gunzip gives the page: not compressed twice')
    // The same for a client that does not accept gzip at all: HAProxy passes what the backend sent.
    const asIs = await get('/pre')
    assert.deepEqual(asIs.raw, gzipSync(TEXT))
  })

  it('a change of the types reaches HAProxy (a reload): the type added is compressed, the one removed no longer', async () => {
    const reloads = proxy.engine.counters.reloads
    await proxy.engine.apply({ version: 3, routes: [base, web(['application/octet-stream', 'application/json'])] })
    assert.equal(proxy.engine.counters.reloads, reloads + 1, 'a compression change is a reload')
    const blob = await get('/blob', 'gzip')
    assert.equal(blob.encoding, 'gzip', 'application/octet-stream is listed now')
    assert.equal(gunzipSync(blob.raw).toString(), TEXT)
    const page = await get('/page', 'gzip')
    assert.equal(page.encoding, undefined, 'text/html is no longer listed')
    assert.equal(page.raw.toString(), TEXT)
    // Without compressionType every type is compressed; without compressionAlgo nothing is.
    await proxy.engine.apply({ version: 4, routes: [base, web()] })
    assert.equal((await get('/page', 'gzip')).encoding, 'gzip')
    assert.equal((await get('/blob', 'gzip')).encoding, 'gzip')
    const { compressionAlgo: _a, ...off } = web()
    await proxy.engine.apply({ version: 5, routes: [base, off] })
    const uncompressed = await get('/page', 'gzip')
    assert.equal(uncompressed.status, 200)
    assert.equal(uncompressed.encoding, undefined, 'compression removed from the route')
    assert.equal(uncompressed.raw.toString(), TEXT)
  })
})
