/**
 * HTTPS certificates on a running proxy, with real HAProxy 2.6 and real TLS clients:
 * - added, replaced and removed over the runtime API (`new|set|commit ssl cert`, `add|del ssl
 *   crt-list`): no reload (the engine's reload count and HAProxy's worker process unchanged),
 *   a keep-alive TLS connection opened before keeps working, no failed request under load;
 * - before any certificate: HTTPS answers with the self-signed default and /v1/status warns;
 * - certificates from the proxy's own files (Docker secrets cert-*, a directory): served by
 *   SNI, shown in the proxy's status; a bad file is reported and the rest is served; a file
 *   added to the directory is served without a reload.
 */
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { Agent as HttpsAgent, request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { HaproxyEngine } from '../../src/proxy/haproxy/haproxy-engine.ts'
import { closeBackends, startBackends } from '../helpers/backends.ts'
import { waitFor } from '../helpers/haproxy.ts'
import { httpsGet } from '../helpers/https.ts'
import { createCa, issue } from '../helpers/pki.ts'
import { freePort } from '../helpers/redis-server.ts'
import { reconfigureQuery, startAgent, startControl } from './harness.ts'

/** One keep-alive TLS connection (maxSockets 1) and whether each request reused it. */
function keepAliveClient(port: number, host: string) {
  const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false, servername: host })
  return {
    get(path: string): Promise<{ status: number; reused: boolean; fingerprint: string }> {
      return new Promise((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path, agent, servername: host, headers: { host } }, (res) => {
          const peer = (res.socket as import('node:tls').TLSSocket).getPeerCertificate()
          res.resume()
          res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket, fingerprint: new X509Certificate(peer.raw).fingerprint256 }))
        })
        req.setTimeout(10_000, () => req.destroy(new Error('timed out')))
        req.on('error', reject)
        req.end()
      })
    },
    close: () => agent.destroy(),
  }
}

async function workerPids(engine: HaproxyEngine): Promise<number[]> {
  const proc = await engine.process!.proc()
  return proc.workers.map((w) => w.pid)
}

describe('certificate changes without a reload', () => {
  it('adds, replaces and removes a certificate over the runtime API: no reload, the same worker, an open connection keeps working', async (t) => {
    const ca = await createCa()
    const first = await issue(ca, ['web.example.com'])
    const second = await issue(ca, ['web.example.com'])
    const other = await issue(ca, ['other.example.com'])
    const backends = await startBackends(1)
    t.after(() => closeBackends(backends))
    const control = await startControl(t)
    const tlsPort = await freePort()
    const proxy = await startAgent(t, { id: 'p1', controlUrls: [control.url], proxy: { tlsListen: `127.0.0.1:${tlsPort}` } })
    const engine = proxy.engine as HaproxyEngine
    const routed = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'web', path: '/web', endpoints: backends.map((b) => b.address) })}&wait=converged&timeout=20`)
    assert.equal(routed.status, 200, JSON.stringify(routed.body))

    // Before any certificate: the default answers, and /v1/status says so.
    const before = await httpsGet({ port: tlsPort, host: 'web.example.com', path: '/web' })
    assert.equal(before.status, 200)
    assert.match(String(before.peer.subject.CN), /Tether default certificate/)
    const warned = await waitFor('the proxy to report its TLS state', async () => {
      const s = (await control.api('GET', '/v1/status')).body
      return s.proxies[0]?.tls !== undefined ? s : undefined
    })
    assert.deepEqual(warned.proxies[0].tls, { certificates: 0, defaultOnly: true, files: [], problems: [] })
    assert.ok(warned.tls.warnings.some((w: string) => w.startsWith('no certificate: HTTPS answers every name with the self-signed default certificate')), JSON.stringify(warned.tls))
    assert.deepEqual(warned.tls.certificates, [])

    const reloads = engine.counters.reloads
    const workers = await workerPids(engine)
    const client = keepAliveClient(tlsPort, 'web.example.com')
    t.after(() => client.close())
    const opened = await client.get('/web')
    assert.equal(opened.status, 200)

    // Added.
    const put = await control.api('PUT', '/v1/certificates/web?wait=converged&timeout=20', { certificate: first.chain, key: first.key })
    assert.equal(put.status, 200, JSON.stringify(put.body))
    const served = await httpsGet({ port: tlsPort, host: 'web.example.com', path: '/web', ca: ca.pem })
    assert.equal(new X509Certificate(served.peer.raw).fingerprint256, first.fingerprint)
    const kept = await client.get('/web')
    assert.deepEqual({ status: kept.status, reused: kept.reused }, { status: 200, reused: true }, 'the connection opened before the change still serves')
    assert.equal(kept.fingerprint, opened.fingerprint, 'it keeps the session it negotiated')
    // A second certificate, for another name, beside it.
    assert.equal((await control.api('PUT', '/v1/certificates/other?wait=converged&timeout=20', { certificate: other.chain, key: other.key })).status, 200)
    assert.equal(new X509Certificate((await httpsGet({ port: tlsPort, host: 'other.example.com', path: '/web', ca: ca.pem })).peer.raw).fingerprint256, other.fingerprint)

    // Replaced under HTTPS load.
    const load = loadOver(tlsPort, 'web.example.com', ca.pem)
    await new Promise((r) => setTimeout(r, 200))
    assert.equal((await control.api('PUT', '/v1/certificates/web?wait=converged&timeout=20', { certificate: second.chain, key: second.key })).status, 200)
    await new Promise((r) => setTimeout(r, 200))
    const result = await load.stop()
    assert.equal(result.failed, 0, result.failures.join('; '))
    assert.ok(result.ok > 0)
    assert.equal(new X509Certificate((await httpsGet({ port: tlsPort, host: 'web.example.com', path: '/web', ca: ca.pem })).peer.raw).fingerprint256, second.fingerprint)

    // Removed: the default answers that name again; the other one stays.
    assert.equal((await control.api('DELETE', '/v1/certificates/web?wait=converged&timeout=20')).status, 200)
    assert.match(String((await httpsGet({ port: tlsPort, host: 'web.example.com', path: '/web' })).peer.subject.CN), /Tether default certificate/)
    assert.equal(new X509Certificate((await httpsGet({ port: tlsPort, host: 'other.example.com', path: '/web', ca: ca.pem })).peer.raw).fingerprint256, other.fingerprint)

    assert.equal(engine.counters.reloads, reloads, 'no reload for any certificate change')
    assert.equal(engine.counters.certificateChanges, 4, 'added, added, replaced, removed: each over the runtime API')
    assert.deepEqual(await workerPids(engine), workers, 'the same HAProxy worker serves throughout')
    const last = await client.get('/web')
    assert.deepEqual({ status: last.status, reused: last.reused }, { status: 200, reused: true })

    const status = await waitFor('the heartbeat with one certificate', async () => {
      const s = (await control.api('GET', '/v1/status')).body
      return s.proxies[0]?.tls?.certificates === 1 ? s : undefined
    })
    assert.deepEqual(
      status.tls.certificates.map((c: { name: string; domains: string[] }) => [c.name, c.domains]),
      [['other', ['other.example.com']]],
    )
    assert.ok(status.tls.certificates[0].expiresInSeconds > 0)
    assert.ok(!status.tls.warnings.some((w: string) => w.startsWith('no certificate')), JSON.stringify(status.tls.warnings))
    assert.deepEqual(status.tls.uncoveredDomains, [])
  })
})

describe('certificates from the proxy\'s own files (Docker secrets)', () => {
  it("serves cert-* secrets and a directory's files by SNI, reports bad ones without failing, shows them in /v1/status, and picks up a new file without a reload", async (t) => {
    const ca = await createCa()
    const site = await issue(ca, ['site.example.com'])
    const expired = await issue(ca, ['old.example.com'], { notBefore: new Date(Date.now() - 10 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) })
    const later = await issue(ca, ['later.example.com'])
    const secrets = await mkdtemp(join(tmpdir(), 'tether-secrets-'))
    const dir = await mkdtemp(join(tmpdir(), 'tether-certdir-'))
    t.after(() => Promise.all([rm(secrets, { recursive: true, force: true }), rm(dir, { recursive: true, force: true })]))
    await writeFile(join(secrets, 'cert-site'), site.combined)
    await writeFile(join(secrets, 'cert_old'), expired.combined)
    await writeFile(join(secrets, 'cert-garbage'), 'not a certificate at all\n')
    await writeFile(join(secrets, 'tether_proxy_token'), 'proxy-token-not-a-certificate')
    await writeFile(join(secrets, 'cert-unreadable'), site.combined)
    await chmod(join(secrets, 'cert-unreadable'), 0o000)
    const unreadable = process.getuid?.() !== 0 // root reads it anyway

    const backends = await startBackends(1)
    t.after(() => closeBackends(backends))
    const control = await startControl(t)
    const tlsPort = await freePort()
    const proxy = await startAgent(t, {
      id: 'p1',
      controlUrls: [control.url],
      proxy: { tlsListen: `127.0.0.1:${tlsPort}`, certificateFiles: { secretsDir: secrets, dir }, certificateFilesIntervalMs: 200 },
    })
    const engine = proxy.engine as HaproxyEngine
    const routed = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'web', path: '/', endpoints: backends.map((b) => b.address) })}&serviceDomain=site.example.com,later.example.com&wait=converged&timeout=20`)
    assert.equal(routed.status, 200, JSON.stringify(routed.body))

    const served = await httpsGet({ port: tlsPort, host: 'site.example.com', ca: ca.pem })
    assert.equal(served.status, 200)
    assert.equal(new X509Certificate(served.peer.raw).fingerprint256, site.fingerprint)
    assert.match(String((await httpsGet({ port: tlsPort, host: 'old.example.com' })).peer.subject.CN), /Tether default certificate/, 'the expired file is not served')

    const status = await waitFor('the proxy to report its files', async () => {
      const s = (await control.api('GET', '/v1/status')).body
      return s.proxies[0]?.tls !== undefined ? s : undefined
    })
    const tls = status.proxies[0].tls
    assert.equal(tls.defaultOnly, false)
    assert.deepEqual(
      tls.files.map((f: { name: string; file: string; domains: string[]; fingerprint: string }) => [f.name, f.file, f.domains, f.fingerprint]),
      [['cert-site', join(secrets, 'cert-site'), ['site.example.com'], site.fingerprint], ...(unreadable ? [] : [['cert-unreadable', join(secrets, 'cert-unreadable'), ['site.example.com'], site.fingerprint]])],
    )
    const problems = new Map(tls.problems.map((p: { file: string; error: string }) => [p.file, p.error]))
    assert.match(String(problems.get(join(secrets, 'cert_old'))), /^certificate: expired on /)
    assert.match(String(problems.get(join(secrets, 'cert-garbage'))), /no PEM certificate block/)
    if (unreadable) assert.match(String(problems.get(join(secrets, 'cert-unreadable'))), /cannot read it \(EACCES\)/)
    assert.equal(problems.has(join(secrets, 'tether_proxy_token')), false, 'other secrets are not certificates')
    for (const p of tls.problems) assert.doesNotMatch(p.error, /MI[A-Za-z0-9+/]{20}|not a certificate at all/, 'no file content (base64 DER, the text) in a report')
    assert.ok(status.tls.warnings.some((w: string) => w === `proxy p1: certificate file ${join(secrets, 'cert-garbage')} not served: ${problems.get(join(secrets, 'cert-garbage'))}`), JSON.stringify(status.tls.warnings))
    assert.ok(!status.tls.warnings.some((w: string) => w.startsWith('no certificate')), 'a file certificate counts')
    assert.deepEqual(status.tls.uncoveredDomains, [{ serviceName: 'web', domain: 'later.example.com' }])

    // A file added to the directory: served within the re-read interval, without a reload.
    const reloads = engine.counters.reloads
    await writeFile(join(dir, 'later.pem'), later.combined)
    const fingerprint = await waitFor('the new file to be served', async () => {
      const fp = new X509Certificate((await httpsGet({ port: tlsPort, host: 'later.example.com' })).peer.raw).fingerprint256
      return fp === later.fingerprint ? fp : undefined
    })
    assert.equal(fingerprint, later.fingerprint)
    assert.equal(engine.counters.reloads, reloads)
    assert.equal(new X509Certificate((await httpsGet({ port: tlsPort, host: 'site.example.com', ca: ca.pem })).peer.raw).fingerprint256, site.fingerprint)
    const after = await waitFor('the heartbeat with the new file', async () => {
      const s = (await control.api('GET', '/v1/status')).body
      return s.tls.uncoveredDomains.length === 0 ? s : undefined
    })
    assert.ok(after.proxies[0].tls.files.some((f: { name: string }) => f.name === 'later.pem'))
  })
})

/** Keep-alive HTTPS GETs on 4 connections until stopped. */
function loadOver(port: number, host: string, ca: string): { stop(): Promise<{ ok: number; failed: number; failures: string[] }> } {
  const agent = new HttpsAgent({ keepAlive: true, maxSockets: 4, ca, servername: host })
  const result = { ok: 0, failed: 0, failures: [] as string[] }
  let running = true
  const deadline = Date.now() + 30_000
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
