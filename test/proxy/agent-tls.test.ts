/**
 * Certificates end to end: the API stores one, every proxy agent fetches the key with the proxy
 * token and its HAProxy serves it by SNI, checked against the test CA; a rotation under HTTPS
 * load fails no request; a removal brings the default certificate back.
 */
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { Agent as HttpsAgent, request } from 'node:https'
import { describe, it } from 'node:test'
import { closeBackends, startBackends } from '../helpers/backends.ts'
import { httpsGet } from '../helpers/https.ts'
import { createCa, createIntermediate, issue } from '../helpers/pki.ts'
import { freePort } from '../helpers/redis-server.ts'
import { reconfigureQuery, startAgent, startControl } from './harness.ts'

/** Keep-alive HTTPS GETs back to back until stopped; counts answers other than 200 and errors. */
function httpsLoad(port: number, host: string, ca: string): { stop(): Promise<{ ok: number; failed: number; failures: string[] }> } {
  const agent = new HttpsAgent({ keepAlive: true, maxSockets: 4, ca, servername: host })
  const result = { ok: 0, failed: 0, failures: [] as string[] }
  let running = true
  const deadline = Date.now() + 60_000
  const one = () =>
    new Promise<void>((resolve) => {
      const req = request({ host: '127.0.0.1', port, path: '/web', agent, servername: host, headers: { host } }, (res) => {
        res.resume()
        res.on('end', () => {
          if (res.statusCode === 200) result.ok++
          else {
            result.failed++
            result.failures.push(`HTTP ${res.statusCode}`)
          }
          resolve()
        })
      })
      req.on('error', (e) => {
        result.failed++
        result.failures.push(e.message)
        resolve()
      })
      req.end()
    })
  const loops = Array.from({ length: 4 }, async () => {
    while (running && Date.now() < deadline) await one()
  })
  return {
    async stop() {
      running = false
      await Promise.all(loops)
      agent.destroy()
      return result
    },
  }
}

describe('certificates from the API to every proxy', () => {
  it('serves a stored certificate by SNI on every proxy, rotates it under load without a failed request, and falls back to the default when it is removed', async (t) => {
    const ca = await createCa()
    const intermediate = await createIntermediate(ca)
    const first = await issue(intermediate, ['web.example.com'])
    const second = await issue(intermediate, ['web.example.com'])
    const backends = await startBackends(2)
    t.after(() => closeBackends(backends))
    const control = await startControl(t)
    const tlsPorts = [await freePort(), await freePort()]
    await Promise.all(tlsPorts.map((port, i) => startAgent(t, { id: `p${i + 1}`, controlUrls: [control.url], proxy: { tlsListen: `127.0.0.1:${port}` } })))

    const routed = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'web', path: '/web', endpoints: backends.map((b) => b.address) })}&wait=converged&timeout=20`)
    assert.equal(routed.status, 200, JSON.stringify(routed.body))
    const put = await control.api('PUT', '/v1/certificates/web?wait=converged&timeout=20', { certificate: first.chain, key: first.key })
    assert.equal(put.status, 200, JSON.stringify(put.body))
    assert.equal(put.body.convergence.converged, 2)
    for (const port of tlsPorts) {
      const reply = await httpsGet({ port, host: 'web.example.com', path: '/web', ca: ca.pem })
      assert.equal(reply.status, 200)
      assert.equal(new X509Certificate(reply.peer.raw).fingerprint256, first.fingerprint)
    }

    const load = httpsLoad(tlsPorts[0]!, 'web.example.com', ca.pem)
    await new Promise((r) => setTimeout(r, 300))
    const rotated = await control.api('PUT', '/v1/certificates/web?wait=converged&timeout=20', { certificate: second.chain, key: second.key })
    assert.equal(rotated.status, 200, JSON.stringify(rotated.body))
    await new Promise((r) => setTimeout(r, 300))
    const result = await load.stop()
    assert.equal(result.failed, 0, result.failures.join('; '))
    assert.ok(result.ok > 0)
    for (const port of tlsPorts) {
      const reply = await httpsGet({ port, host: 'web.example.com', path: '/web', ca: ca.pem })
      assert.equal(new X509Certificate(reply.peer.raw).fingerprint256, second.fingerprint)
    }

    const removed = await control.api('DELETE', '/v1/certificates/web?wait=converged&timeout=20')
    assert.equal(removed.status, 200)
    const after = await httpsGet({ port: tlsPorts[1]!, host: 'web.example.com', path: '/web' })
    assert.equal(after.status, 200)
    assert.match(String(after.peer.subject.CN), /Tether default certificate/)
  })
})
