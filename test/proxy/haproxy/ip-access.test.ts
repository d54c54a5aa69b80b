/**
 * Access by client address per route (ipAllow / ipDeny) through a real HAProxy: clients on
 * different loopback source addresses (127.0.0.1, .2, .3, ...: any of 127.0.0.0/8 binds on
 * Linux) are served or refused with 403, and a refused request never reaches the service.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { once } from 'node:events'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { normalizeRoute, type Route } from '../../../src/contracts/route.ts'
import { spareKind } from '../../../src/proxy/haproxy/render.ts'
import { closeBackends, startBackends, type Backend, type BackendReply } from '../../helpers/backends.ts'
import { createTestProxy, type TestProxy } from '../../helpers/haproxy.ts'

describe('ipAllow and ipDeny through HAProxy', () => {
  let backends: Backend[]
  let proxy: TestProxy

  /** One request from `source` (a loopback address, node:http's localAddress); the status and the instance that answered. */
  const from = async (source: string, path: string): Promise<{ status: number; instance?: string }> => {
    const req = httpRequest(`${proxy.url}${path}`, { localAddress: source, headers: { connection: 'close' }, timeout: 10_000 })
    req.end()
    const [res] = (await once(req, 'response')) as [IncomingMessage]
    const chunks: Buffer[] = []
    for await (const chunk of res) chunks.push(chunk as Buffer)
    const text = Buffer.concat(chunks).toString()
    return res.statusCode === 200 ? { status: 200, instance: (JSON.parse(text) as BackendReply).instance } : { status: res.statusCode ?? 0 }
  }

  const routes = (allow: string[] | undefined): Route[] => [
    normalizeRoute({ serviceName: 'allow', destinations: [{ servicePath: ['/allow'], port: 80 }], endpoints: [backends[0]!.address], ...(allow === undefined ? {} : { ipAllow: allow }) }),
    normalizeRoute({ serviceName: 'deny', destinations: [{ servicePath: ['/deny'], port: 80 }], endpoints: [backends[1]!.address], ipDeny: ['127.0.0.3'] }),
    normalizeRoute({ serviceName: 'both', destinations: [{ servicePath: ['/both'], port: 80 }], endpoints: [backends[2]!.address], ipAllow: ['127.0.0.0/29'], ipDeny: ['127.0.0.4/32'] }),
  ]

  before(async () => {
    backends = await startBackends(3, { prefix: 'ip' })
    proxy = await createTestProxy(undefined, { spareFromRoutes: 1, spareBackends: 2 })
    await proxy.engine.apply({ version: 1, routes: routes(['127.0.0.2/32', '::1']) })
  })

  after(async () => {
    await proxy?.stop()
    await closeBackends(backends ?? [])
  })

  it('serves the listed addresses and refuses the others with 403, before the service sees them', async () => {
    const config = await readFile(proxy.engine.paths.config, 'utf8')
    assert.match(config, /\n {4}http-request deny deny_status 403 if !\{ src 127\.0\.0\.2\/32 ::1 \}\n/)
    assert.equal(spareKind(routes(['127.0.0.2'])[0]!), undefined, 'a route restricted by address never takes a spare backend (whose rules are empty)')
    const seen = backends[0]!.requests
    assert.deepEqual(await from('127.0.0.1', '/allow'), { status: 403 })
    assert.deepEqual(await from('127.0.0.5', '/allow'), { status: 403 })
    assert.equal(backends[0]!.requests, seen, 'the refused requests never reached the service')
    assert.deepEqual(await from('127.0.0.2', '/allow'), { status: 200, instance: 'ip1' })

    // ipDeny alone: everyone but the listed address.
    assert.deepEqual(await from('127.0.0.3', '/deny'), { status: 403 })
    assert.deepEqual(await from('127.0.0.1', '/deny'), { status: 200, instance: 'ip2' })

    // Both: the block lets .1-.7 in, the denied address inside it is still refused.
    assert.deepEqual(await from('127.0.0.4', '/both'), { status: 403 })
    assert.deepEqual(await from('127.0.0.9', '/both'), { status: 403 })
    assert.deepEqual(await from('127.0.0.6', '/both'), { status: 200, instance: 'ip3' })
  })

  it('a change of the list reaches HAProxy: without ipAllow every address is served again', async () => {
    const reloads = proxy.engine.counters.reloads
    await proxy.engine.apply({ version: 2, routes: routes(undefined) })
    assert.equal(proxy.engine.counters.reloads, reloads + 1, 'a change of access rules is a reload')
    assert.deepEqual(await from('127.0.0.1', '/allow'), { status: 200, instance: 'ip1' })
    assert.deepEqual(await from('127.0.0.3', '/deny'), { status: 403 }, 'the other routes keep theirs')
  })
})
