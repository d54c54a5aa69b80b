/**
 * One path, two destinations told apart by the listener the request arrived on: Docker Flow
 * Proxy's srcPort.1=80 / srcPort.2=443 of an HTTP route (its documented multi-destination
 * example), stored as `listener: 'http' | 'https'`. Through a real HAProxy with its HTTP and
 * HTTPS listeners (the default self-signed certificate), to a real backend.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { request } from 'undici'
import { normalizeRoute } from '../../../src/contracts/route.ts'
import { closeBackends, startBackends } from '../../helpers/backends.ts'
import { createTestProxy } from '../../helpers/haproxy.ts'
import { httpsGet } from '../../helpers/https.ts'
import { freePort } from '../../helpers/redis-server.ts'

describe('routing by listener (DFP srcPort 80 / 443 of HTTP destinations)', () => {
  it('sends plain HTTP to the http destination and HTTPS to the https one on the same path; a destination without a listener takes both', async (t) => {
    const backends = await startBackends(1, { prefix: 'listener' })
    t.after(() => closeBackends(backends))
    const tlsPort = await freePort()
    const proxy = await createTestProxy(t, { tlsListen: `127.0.0.1:${tlsPort}` })
    const endpoints = [backends[0]!.address]
    // One endpoint serves every port here: each destination tags the path to show which one served.
    await proxy.engine.apply({
      version: 1,
      routes: [
        normalizeRoute({
          serviceName: 'foo',
          endpoints,
          destinations: [
            { servicePath: ['/'], port: 8080, listener: 'http', pathRewrite: [{ search: '^/(.*)', replace: '/from-8080/\\1' }] },
            { servicePath: ['/'], port: 8081, listener: 'https', pathRewrite: [{ search: '^/(.*)', replace: '/from-8081/\\1' }] },
          ],
        }),
        normalizeRoute({ serviceName: 'both', endpoints, destinations: [{ servicePath: ['/both'], port: 80 }] }),
      ],
    })
    const plain = await request(`${proxy.url}/x?q=1`, { headers: { connection: 'close' } })
    const plainBody = (await plain.body.json()) as { path: string }
    assert.equal(plain.statusCode, 200)
    assert.equal(plainBody.path, '/from-8080/x?q=1')
    const secure = await httpsGet({ port: tlsPort, host: 'foo.example', path: '/x?q=1' })
    assert.equal(secure.status, 200)
    assert.equal(secure.body.path, '/from-8081/x?q=1')
    // Without a listener: served on both.
    const both = await request(`${proxy.url}/both`, { headers: { connection: 'close' } })
    assert.equal(both.statusCode, 200)
    await both.body.dump()
    assert.equal((await httpsGet({ port: tlsPort, host: 'foo.example', path: '/both' })).status, 200)
  })
})
