/**
 * SNI passthrough end to end, with curl: on the proxy's one HTTPS port, TLS for a passthrough
 * name reaches a real TLS server behind the proxy unterminated (curl verifies that server's own
 * certificate), while a name the proxy terminates is answered with the certificate stored in
 * Tether and routed by host and path, the client's address kept (X-Forwarded-For) across the
 * internal hop.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { promisify } from 'node:util'
import { startBackend } from '../helpers/backends.ts'
import { createCa, createIntermediate, issue } from '../helpers/pki.ts'
import { freePort } from '../helpers/redis-server.ts'
import { startAgent, startControl } from './harness.ts'

const run = promisify(execFile)

/** curl over HTTPS to `name` on 127.0.0.1:port (--resolve), trusting only `caFile`; body and the certificate subject curl saw. */
async function curl(name: string, port: number, caFile: string, path = '/'): Promise<{ body: string; subject: string }> {
  const { stdout, stderr } = await run('curl', ['-sS', '-v', '--max-time', '10', '--resolve', `${name}:${port}:127.0.0.1`, '--cacert', caFile, `https://${name}:${port}${path}`], { timeout: 15_000 })
  const subject = /subject: (.*)/.exec(stderr)?.[1] ?? ''
  return { body: stdout, subject }
}

describe('SNI passthrough beside terminated HTTPS on one port', () => {
  it('passes TLS for db.example.com and *.pass.example.com through to their server, and terminates web.example.com itself', async (t) => {
    const ca = await createCa()
    const intermediate = await createIntermediate(ca)
    const backendLeaf = await issue(intermediate, ['db.example.com', '*.pass.example.com'], { cn: 'backend-own-certificate' })
    const tetherLeaf = await issue(intermediate, ['web.example.com'], { cn: 'tether-stored-certificate' })
    const dir = await mkdtemp(join(tmpdir(), 'tether-sni-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    const caFile = join(dir, 'ca.pem')
    await writeFile(caFile, ca.pem)

    // A real TLS server behind the proxy: it holds its own certificate and key.
    const tlsServer = createServer({ cert: backendLeaf.chain, key: backendLeaf.key }, (req, res) => res.end(`tls-backend ${req.headers.host}`))
    await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve))
    t.after(() => new Promise<void>((resolve) => tlsServer.close(() => resolve())))
    const tlsPort = (tlsServer.address() as { port: number }).port
    const web = await startBackend({ name: 'web' })
    t.after(() => web.close())

    const control = await startControl(t)
    const httpsPort = await freePort()
    await startAgent(t, { id: 'p1', controlUrls: [control.url], proxy: { tlsListen: `127.0.0.1:${httpsPort}` } })
    const routes = [
      `serviceName=web&servicePath=/&port=80&serviceDomain=web.example.com&endpoints=${web.address}`,
      `serviceName=db&reqMode=sni&serverName=db.example.com,*.pass.example.com&port=${tlsPort}&endpoints=127.0.0.1:${tlsPort}`,
    ]
    for (const q of routes) {
      const res = await control.api('PUT', `/v1/reconfigure?${q}&wait=converged&timeout=20`)
      assert.equal(res.status, 200, JSON.stringify(res.body))
    }
    const cert = await control.api('PUT', '/v1/certificates/web?wait=converged&timeout=20', { certificate: tetherLeaf.chain, key: tetherLeaf.key })
    assert.equal(cert.status, 200, JSON.stringify(cert.body))

    const db = await curl('db.example.com', httpsPort, caFile)
    assert.equal(db.body, 'tls-backend db.example.com:' + httpsPort)
    assert.match(db.subject, /backend-own-certificate/)
    const wildcard = await curl('x.pass.example.com', httpsPort, caFile)
    assert.equal(wildcard.body, 'tls-backend x.pass.example.com:' + httpsPort)

    const terminated = await curl('web.example.com', httpsPort, caFile, '/hello')
    assert.match(terminated.subject, /tether-stored-certificate/)
    const reply = JSON.parse(terminated.body) as { instance: string; path: string; forwardedFor: string | null; forwardedProto: string | null }
    assert.deepEqual([reply.instance, reply.path, reply.forwardedProto], ['web', '/hello', 'https'])
    // The client's address crossed the internal hop (PROXY protocol), not the socket's.
    assert.equal(reply.forwardedFor, '127.0.0.1')

    // Removing the passthrough route gives the port back to termination alone.
    assert.equal((await control.api('DELETE', '/v1/routes/db?wait=converged&timeout=20')).status, 200)
    await assert.rejects(curl('db.example.com', httpsPort, caFile), /SSL|certificate|subject/i)
    assert.match((await curl('web.example.com', httpsPort, caFile, '/again')).body, /"path":"\/again"/)
  })
})
