/**
 * The client address from a trusted balancer (TETHER_TRUSTED_PROXIES) through a real HAProxy:
 * loopback source addresses stand for the balancer (127.0.0.2, trusted) and for a client that
 * connects directly (127.0.0.3, not trusted). ipAllow and the per-client request rate judge the
 * address the balancer vouches for; a spoofed X-Forwarded-For or PROXY header from anyone else
 * changes nothing.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { normalizeRoute } from '../../../src/contracts/route.ts'
import { closeBackends, startBackends, type BackendReply } from '../../helpers/backends.ts'
import { createTestProxy, type TestProxy } from '../../helpers/haproxy.ts'

const BALANCER = '127.0.0.2'
const DIRECT = '127.0.0.3'

/** Sends `raw` (one or more requests, the last with Connection: close) from `source`; the answers' statuses and bodies, in order. */
async function exchange(proxy: TestProxy, source: string, raw: string): Promise<Array<{ status: number; reply?: BackendReply }>> {
  const socket = connect({ host: '127.0.0.1', port: proxy.port, localAddress: source })
  socket.on('error', () => {})
  socket.write(raw)
  let text = ''
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')))
  const timer = setTimeout(() => socket.destroy(), 10_000)
  await new Promise((resolve) => socket.on('close', resolve))
  clearTimeout(timer)
  const answers: Array<{ status: number; reply?: BackendReply }> = []
  for (const m of text.matchAll(/HTTP\/1\.1 (\d{3})[^]*?\r\n\r\n(\{[^\n]*?\}(?=HTTP\/1\.1 |$))?/g)) {
    answers.push(m[2] === undefined || m[1] !== '200' ? { status: Number(m[1]) } : { status: 200, reply: JSON.parse(m[2]) as BackendReply })
  }
  return answers
}

const get = (path: string, headers: Record<string, string> = {}, close = true): string =>
  `GET ${path} HTTP/1.1\r\nHost: app.test\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}${close ? 'Connection: close\r\n' : ''}\r\n`

const routes = (endpoint: string) => [
  normalizeRoute({ serviceName: 'office', destinations: [{ servicePath: ['/office'], port: 80 }], endpoints: [endpoint], ipAllow: ['10.0.0.0/8'] }),
  normalizeRoute({ serviceName: 'open', destinations: [{ servicePath: ['/open'], port: 80 }], endpoints: [endpoint] }),
]

for (const mode of ['X-Forwarded-For', 'PROXY protocol'] as const) {
  describe(`client addresses from trusted proxies (${mode})`, () => {
    it('believes the trusted balancer about its client, and nobody else', async (t) => {
      const backends = await startBackends(1)
      t.after(() => closeBackends(backends))
      const proxy = await createTestProxy(t, { trustedProxies: [`${BALANCER}/32`], proxyProtocol: mode === 'PROXY protocol', clientMaxRequestRate: 0 })
      t.after(() => proxy.stop())
      await proxy.engine.apply({ version: 1, routes: routes(backends[0]!.address) })

      // A direct client claiming an allowed address is judged by its own: refused, in either mode.
      assert.deepEqual(
        (await exchange(proxy, DIRECT, get('/office', { 'X-Forwarded-For': '10.1.2.3' }))).map((a) => a.status),
        [403],
        'a spoofed X-Forwarded-For from an untrusted peer changes nothing',
      )
      if (mode === 'PROXY protocol') {
        const spoofed = await exchange(proxy, DIRECT, `PROXY TCP4 10.1.2.3 127.0.0.1 40000 80\r\n${get('/office')}`)
        assert.ok(spoofed.every((a) => a.status !== 200), `a PROXY header from an untrusted peer is not read (answers: ${JSON.stringify(spoofed)})`)
        const served = await exchange(proxy, BALANCER, `PROXY TCP4 10.1.2.3 127.0.0.1 40000 80\r\n${get('/office')}`)
        assert.deepEqual(served.map((a) => a.status), [200], 'the balancer vouches for 10.1.2.3 in its PROXY header')
        assert.equal(served[0]!.reply?.forwardedFor, '10.1.2.3', 'the service is told the client, not the balancer')
        const outside = await exchange(proxy, BALANCER, `PROXY TCP4 192.0.2.9 127.0.0.1 40000 80\r\n${get('/office')}`)
        assert.deepEqual(outside.map((a) => a.status), [403], 'a client outside ipAllow is refused though its balancer is trusted')
        const open = await exchange(proxy, DIRECT, get('/open'))
        assert.deepEqual(open.map((a) => a.status), [200], 'a direct client without a PROXY header is served as before')
        assert.equal(open[0]!.reply?.forwardedFor, DIRECT)
        return
      }
      const served = await exchange(proxy, BALANCER, get('/office', { 'X-Forwarded-For': '10.1.2.3' }))
      assert.deepEqual(served.map((a) => a.status), [200], 'the balancer vouches for 10.1.2.3')
      assert.match(served[0]!.reply?.forwardedFor ?? '', /(^|, )10\.1\.2\.3$/, 'the service is told the client')
      // The rightmost address is the one the balancer added; what its client wrote before it is not believed.
      const chained = await exchange(proxy, BALANCER, get('/office', { 'X-Forwarded-For': '10.9.9.9, 192.0.2.9' }))
      assert.deepEqual(chained.map((a) => a.status), [403], "the client's own X-Forwarded-For entry (left of the balancer's) is not believed")
      assert.deepEqual((await exchange(proxy, BALANCER, get('/office'))).map((a) => a.status), [403], "without the header the request is the balancer's own")
      // One keep-alive connection of the balancer carries two clients: each request is judged by its own.
      const both = await exchange(proxy, BALANCER, get('/office', { 'X-Forwarded-For': '10.1.2.3' }, false) + get('/office', { 'X-Forwarded-For': '192.0.2.9' }, false) + get('/office'))
      assert.deepEqual(both.map((a) => a.status), [200, 403, 403], 'the second client and then the balancer itself are refused on the connection the first was served on')
    })

    it('counts the request rate per client behind the trusted balancer', async (t) => {
      const backends = await startBackends(1)
      t.after(() => closeBackends(backends))
      const proxy = await createTestProxy(t, { trustedProxies: [BALANCER], proxyProtocol: mode === 'PROXY protocol', clientMaxRequestRate: 3 })
      t.after(() => proxy.stop())
      await proxy.engine.apply({ version: 1, routes: routes(backends[0]!.address) })
      const as = (client: string) => (mode === 'PROXY protocol' ? `PROXY TCP4 ${client} 127.0.0.1 40000 80\r\n${get('/open')}` : get('/open', { 'X-Forwarded-For': client }))
      const statuses: number[] = []
      for (let i = 0; i < 5; i++) statuses.push(...(await exchange(proxy, BALANCER, as('10.0.0.1'))).map((a) => a.status))
      assert.deepEqual(statuses, [200, 200, 200, 429, 429], 'the fourth request of 10.0.0.1 in 10 s is over its rate')
      assert.deepEqual((await exchange(proxy, BALANCER, as('10.0.0.2'))).map((a) => a.status), [200], 'another client behind the same balancer has a rate of its own')
    })
  })
}
