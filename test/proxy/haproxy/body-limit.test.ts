/**
 * Request body limits (bodyLimit per route, TETHER_MAX_BODY_SIZE for the others) through a real
 * HAProxy and a real HTTP service that records every body it receives: a body under the limit
 * arrives intact; a Content-Length over it is answered 413 (a JSON body) by the proxy and the
 * service sees nothing; another route is unaffected. A chunked body (no Content-Length) is not
 * judged, as the docs say: the test pins that down so the docs cannot drift from the proxy.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, request as httpRequest, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { normalizeRoute } from '../../../src/contracts/route.ts'
import { createTestProxy, type TestProxy } from '../../helpers/haproxy.ts'

/** An HTTP service answering 200 with the size of the body it received, and keeping what it saw. */
async function recordingService(t: { after(fn: () => Promise<void> | void): void }): Promise<{ address: string; seen: Array<{ path: string; body: Buffer }> }> {
  const seen: Array<{ path: string; body: Buffer }> = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      seen.push({ path: req.url ?? '', body })
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ received: body.length }))
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => {
    server.closeAllConnections()
    server.close()
  })
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}

/** A POST of `body` through the proxy, with Content-Length or (chunked) without; the status, content type and body of the answer. */
async function post(proxy: TestProxy, path: string, body: Buffer, chunked = false): Promise<{ status: number; type: string | undefined; text: string }> {
  const headers: Record<string, string> = { connection: 'close', 'content-type': 'application/octet-stream' }
  if (!chunked) headers['content-length'] = String(body.length)
  const req = httpRequest(`${proxy.url}${path}`, { method: 'POST', headers, timeout: 10_000 })
  req.on('error', () => {}) // the proxy may close before the whole body is written; the answer is what counts
  if (chunked) {
    // Two chunks: Node sends Transfer-Encoding: chunked without a Content-Length.
    req.write(body.subarray(0, body.length >> 1))
    req.end(body.subarray(body.length >> 1))
  } else req.end(body)
  const [res] = (await once(req, 'response')) as [IncomingMessage]
  const chunks: Buffer[] = []
  for await (const c of res) chunks.push(c as Buffer)
  return { status: res.statusCode ?? 0, type: res.headers['content-type'], text: Buffer.concat(chunks).toString() }
}

const bytes = (n: number, fill = 'x') => Buffer.alloc(n, fill)

describe('request body limits through HAProxy', () => {
  it('passes a body up to bodyLimit intact and answers 413 past it before the service sees anything', async (t) => {
    const service = await recordingService(t)
    const proxy = await createTestProxy(t)
    t.after(() => proxy.stop())
    await proxy.engine.apply({
      version: 1,
      routes: [
        normalizeRoute({ serviceName: 'upload', destinations: [{ servicePath: ['/upload'], port: 80 }], endpoints: [service.address], bodyLimit: 1000 }),
        normalizeRoute({ serviceName: 'free', destinations: [{ servicePath: ['/free'], port: 80 }], endpoints: [service.address] }),
      ],
    })

    const exact = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251))
    assert.deepEqual(await post(proxy, '/upload/a', exact), { status: 200, type: 'application/json', text: '{"received":1000}' }, 'a body of exactly the limit is served')
    assert.equal(service.seen.length, 1)
    assert.ok(service.seen[0]!.body.equals(exact), 'the service got the body byte for byte')

    const over = await post(proxy, '/upload/b', bytes(1001))
    assert.equal(over.status, 413, 'one byte over the limit')
    assert.equal(over.type, 'application/json')
    assert.deepEqual(JSON.parse(over.text), { statusCode: 413, code: 'BODY_TOO_LARGE', error: 'Content Too Large', message: 'The request body (its Content-Length) is larger than this route accepts' })
    assert.equal((await post(proxy, '/upload/c', bytes(200_000))).status, 413, 'a large body')
    assert.deepEqual(service.seen.map((s) => s.path), ['/upload/a'], 'the refused requests never reached the service')

    assert.deepEqual(await post(proxy, '/free/d', bytes(200_000)), { status: 200, type: 'application/json', text: '{"received":200000}' }, 'a route without a limit takes a large body')
  })

  it('limits routes without bodyLimit by TETHER_MAX_BODY_SIZE, and a route with its own bodyLimit by that', async (t) => {
    const service = await recordingService(t)
    const proxy = await createTestProxy(t, { maxBodySize: 500 })
    t.after(() => proxy.stop())
    await proxy.engine.apply({
      version: 1,
      routes: [
        normalizeRoute({ serviceName: 'plain', destinations: [{ servicePath: ['/plain'], port: 80 }], endpoints: [service.address] }),
        normalizeRoute({ serviceName: 'big', destinations: [{ servicePath: ['/big'], port: 80 }], endpoints: [service.address], bodyLimit: 5000 }),
      ],
    })
    assert.equal((await post(proxy, '/plain/a', bytes(500))).status, 200, 'up to the default')
    assert.equal((await post(proxy, '/plain/b', bytes(501))).status, 413, 'over the default')
    assert.equal((await post(proxy, '/big/c', bytes(5000))).status, 200, 'a route of its own limit takes more than the default')
    assert.equal((await post(proxy, '/big/d', bytes(5001))).status, 413, 'and no more than its own')
    assert.deepEqual(service.seen.map((s) => [s.path, s.body.length]), [['/plain/a', 500], ['/big/c', 5000]])
  })

  it('does not judge a chunked body (no Content-Length), as documented', async (t) => {
    const service = await recordingService(t)
    const proxy = await createTestProxy(t)
    t.after(() => proxy.stop())
    await proxy.engine.apply({ version: 1, routes: [normalizeRoute({ serviceName: 'upload', destinations: [{ servicePath: ['/upload'], port: 80 }], endpoints: [service.address], bodyLimit: 1000 })] })
    assert.deepEqual(await post(proxy, '/upload/chunked', bytes(3000), true), { status: 200, type: 'application/json', text: '{"received":3000}' })
    assert.deepEqual(service.seen.map((s) => [s.path, s.body.length]), [['/upload/chunked', 3000]])
  })
})
