/**
 * HTTPS through a real HAProxy: the self-signed default certificate before any certificate,
 * SNI selecting among certificates (checked against the test CA), TLS 1.2+ and ALPN h2,
 * X-Forwarded-Proto, stickiness over HTTPS with a Secure affinity cookie (and not over HTTP),
 * ACME HTTP-01 answers, and certificates served again after a restart from the state directory.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { X509Certificate } from 'node:crypto'
import type { CertificateMaterial } from '../../../src/contracts/certificate.ts'
import type { ConfigSnapshot } from '../../../src/contracts/config-snapshot.ts'
import { closeBackends, startBackends, type Backend, type BackendReply } from '../../helpers/backends.ts'
import { createClient, createTestProxy, route, waitFor, type TestProxy } from '../../helpers/haproxy.ts'
import { handshake, httpsGet } from '../../helpers/https.ts'
import { createCa, createIntermediate, issue, type Issuer, type Leaf } from '../../helpers/pki.ts'
import { freePort } from '../../helpers/redis-server.ts'

const material = (name: string, leaf: Leaf): CertificateMaterial => ({ name, fingerprint: leaf.fingerprint, pem: `${leaf.chain}${leaf.key}` })

describe('HTTPS termination in HAProxy', () => {
  let ca: Issuer
  let web: Leaf
  let api: Leaf
  let wildcard: Leaf
  let backends: Backend[]
  let proxy: TestProxy
  let tlsPort: number
  const snapshot = (version: number, extra: Partial<ConfigSnapshot> = {}): ConfigSnapshot => ({
    version,
    routes: [
      route({ serviceName: 'app', paths: ['/'], sticky: true, endpoints: backends.map((b) => b.address) }),
      route({ serviceName: 'api', paths: ['/'], domains: ['api.example.com'], endpoints: [backends[0]!.address] }),
    ],
    ...extra,
  })

  before(async () => {
    ca = await createCa()
    const intermediate = await createIntermediate(ca)
    web = await issue(intermediate, ['web.example.com'])
    api = await issue(intermediate, ['api.example.com'])
    wildcard = await issue(intermediate, ['*.apps.example.com'])
    backends = await startBackends(2)
    tlsPort = await freePort()
    proxy = await createTestProxy(undefined, { tlsListen: `127.0.0.1:${tlsPort}` })
  })
  after(async () => {
    await proxy?.stop()
    await closeBackends(backends ?? [])
  })

  it('answers HTTPS before any certificate exists, with the self-signed default certificate, and routes as over HTTP', async () => {
    await proxy.engine.apply(snapshot(1))
    await waitFor('backends up', async () => ((await proxy.engine.health()).every((h) => h.up >= 1) ? true : undefined))
    const reply = await httpsGet({ port: tlsPort, host: 'web.example.com', path: '/hello?x=1' })
    assert.equal(reply.status, 200)
    assert.match(String(reply.peer.subject.CN), /Tether default certificate/)
    assert.equal((reply.body as BackendReply).path, '/hello?x=1')
    assert.equal((reply.body as BackendReply).forwardedProto, 'https')
    const plain = await createClient().get(`${proxy.url}/hello`)
    assert.equal((plain.body as BackendReply).forwardedProto, 'http')
    await assert.rejects(httpsGet({ port: tlsPort, host: 'web.example.com', ca: ca.pem }), /self.signed|unable to verify/i, 'a client that trusts only real CAs refuses the default certificate')
  })

  it('selects the certificate by SNI (exact and wildcard names); an unknown name gets the default certificate', async () => {
    await proxy.engine.certificates!.set([material('web', web), material('api', api), material('apps', wildcard)])
    await proxy.engine.apply(snapshot(2))
    const onWeb = await httpsGet({ port: tlsPort, host: 'web.example.com', ca: ca.pem })
    assert.equal(onWeb.status, 200)
    assert.equal(new X509Certificate(onWeb.peer.raw).fingerprint256, web.fingerprint)
    const onApi = await httpsGet({ port: tlsPort, host: 'api.example.com', ca: ca.pem })
    assert.equal(new X509Certificate(onApi.peer.raw).fingerprint256, api.fingerprint)
    assert.equal((onApi.body as BackendReply).instance, backends[0]!.name, 'the host route is chosen over HTTPS too')
    const onApps = await httpsGet({ port: tlsPort, host: 'shop.apps.example.com', ca: ca.pem })
    assert.equal(new X509Certificate(onApps.peer.raw).fingerprint256, wildcard.fingerprint)
    const unknown = await handshake({ port: tlsPort, servername: 'nobody.example.org' })
    assert.match(String(unknown.peer.subject.CN), /Tether default certificate/)
    const noSni = await handshake({ port: tlsPort })
    assert.match(String(noSni.peer.subject.CN), /Tether default certificate/)
  })

  it('negotiates h2 by ALPN and refuses TLS 1.1', async () => {
    const h2 = await handshake({ port: tlsPort, servername: 'web.example.com', alpn: ['h2', 'http/1.1'] })
    assert.equal(h2.alpn, 'h2')
    assert.match(String(h2.protocol), /^TLSv1\.[23]$/)
    const h1 = await handshake({ port: tlsPort, servername: 'web.example.com', alpn: ['http/1.1'] })
    assert.equal(h1.alpn, 'http/1.1')
    await assert.rejects(handshake({ port: tlsPort, servername: 'web.example.com', minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' }))
  })

  it('keeps a client on one backend over HTTPS with a Secure affinity cookie; over HTTP the cookie is not Secure', async () => {
    const first = await httpsGet({ port: tlsPort, host: 'web.example.com', ca: ca.pem })
    const issued = first.setCookies.find((c) => c.startsWith('TETHER_app='))
    assert.ok(issued !== undefined, JSON.stringify(first.setCookies))
    assert.match(issued, /; Secure$/)
    assert.match(issued, /HttpOnly/)
    const pinned = (first.body as BackendReply).instance
    const cookie = (issued.split(';')[0] as string)
    for (let i = 0; i < 10; i++) {
      const again = await httpsGet({ port: tlsPort, host: 'web.example.com', ca: ca.pem, headers: { cookie } })
      assert.equal((again.body as BackendReply).instance, pinned)
    }
    const plain = await createClient().get(`${proxy.url}/`)
    const plainCookie = plain.setCookies.find((c) => c.startsWith('TETHER_app='))
    assert.ok(plainCookie !== undefined)
    assert.doesNotMatch(plainCookie, /Secure/i)
    const backendCookie = first.setCookies.find((c) => c.startsWith('sid='))
    assert.ok(backendCookie !== undefined && !/Secure/.test(backendCookie), "the backend's own cookies are left as they are")
  })

  it('answers ACME HTTP-01 challenges of the snapshot on HTTP, before any route', async () => {
    const token = 'tok_0123456789abcdefABCDEF'
    const keyAuthorization = `${token}.thumbprint0123456789abcdef`
    await proxy.engine.apply(snapshot(3, { challenges: [{ token, keyAuthorization }] }))
    const client = createClient({ reuse: false })
    const answer = await client.get(`${proxy.url}/.well-known/acme-challenge/${token}`, { host: 'web.example.com' })
    assert.equal(answer.status, 200)
    assert.equal(answer.body, keyAuthorization)
    const unknown = await client.get(`${proxy.url}/.well-known/acme-challenge/some-other-token-0000000`, { host: 'web.example.com' })
    assert.equal((unknown.body as BackendReply).path, '/.well-known/acme-challenge/some-other-token-0000000', 'an unknown token goes to the routes')
    await proxy.engine.apply(snapshot(4))
    const gone = await client.get(`${proxy.url}/.well-known/acme-challenge/${token}`, { host: 'web.example.com' })
    assert.notEqual(gone.body, keyAuthorization)
  })

  it('serves the certificates again after a restart, from the state directory, before any control plane', async () => {
    const stateDir = proxy.stateDir
    await proxy.engine.stop()
    const { createHaproxyEngine } = await import('../../../src/proxy/haproxy/haproxy-engine.ts')
    const port = await freePort()
    const again = await createHaproxyEngine({ stateDir, listen: `127.0.0.1:${port}`, adminListen: `127.0.0.1:${await freePort()}`, resolvers: ['127.0.0.1:1'], cookieKey: 'tether-test-cookie-key', tlsListen: `127.0.0.1:${tlsPort}` })
    try {
      assert.deepEqual(again.certificates!.refs().map((r) => r.name), ['api', 'apps', 'web'])
      await again.apply(snapshot(5))
      const onWeb = await httpsGet({ port: tlsPort, host: 'web.example.com', ca: ca.pem })
      assert.equal(new X509Certificate(onWeb.peer.raw).fingerprint256, web.fingerprint)
    } finally {
      await again.stop()
    }
  })
})

describe('per-route HTTPS behaviour in HAProxy', () => {
  let backends: Backend[]
  let proxy: TestProxy
  let tlsPort: number
  before(async () => {
    backends = await startBackends(1)
    tlsPort = await freePort()
    proxy = await createTestProxy(undefined, { tlsListen: `127.0.0.1:${tlsPort}` })
    const at = [backends[0]!.address]
    await proxy.engine.apply({
      version: 1,
      routes: [
        { ...route({ serviceName: 'secure', paths: ['/secure', '/'], endpoints: at }), httpsOnly: true, hstsMaxAge: 31536000 },
        { ...route({ serviceName: 'moved', paths: ['/moved'], endpoints: at }), httpsOnly: true, httpsRedirectCode: 308, hstsMaxAge: 63072000, hstsIncludeSubDomains: true, hstsPreload: true },
        { ...route({ serviceName: 'closed', paths: ['/closed'], endpoints: at }), denyHttp: true },
        { ...route({ serviceName: 'behind', paths: ['/behind'], endpoints: at }), redirectWhenHttpProto: true, httpsRedirectCode: 301 },
        route({ serviceName: 'open', paths: ['/open'], endpoints: at }),
      ],
      challenges: [{ token: 'tok_0123456789abcdefABCDEF', keyAuthorization: 'tok_0123456789abcdefABCDEF.thumbprint0123456789abcdef' }],
    })
    await waitFor('backend up', async () => ((await proxy.engine.health()).every((h) => h.up === 1) ? true : undefined))
  })
  after(async () => {
    await proxy?.stop()
    await closeBackends(backends ?? [])
  })

  it('redirects plain HTTP to HTTPS keeping host, path and query (302 by default, or the code asked), and serves HTTPS with HSTS', async () => {
    const client = createClient({ reuse: false })
    const redirected = await client.get(`${proxy.url}/secure/a/b?x=1&y=%20z`, { host: 'shop.example.com' })
    assert.equal(redirected.status, 302)
    assert.equal(redirected.headers.location, 'https://shop.example.com/secure/a/b?x=1&y=%20z')
    assert.equal(redirected.headers['strict-transport-security'], undefined, 'no HSTS over plain HTTP')
    const moved = await client.get(`${proxy.url}/moved/x?q=2`, { host: 'shop.example.com' })
    assert.equal(moved.status, 308)
    assert.equal(moved.headers.location, 'https://shop.example.com/moved/x?q=2')
    const served = await httpsGet({ port: tlsPort, host: 'shop.example.com', path: '/secure/a/b?x=1' })
    assert.equal(served.status, 200)
    assert.equal((served.body as BackendReply).path, '/secure/a/b?x=1')
    assert.equal(served.headers['strict-transport-security'], 'max-age=31536000')
    const preloaded = await httpsGet({ port: tlsPort, host: 'shop.example.com', path: '/moved/x' })
    assert.equal(preloaded.status, 200)
    assert.equal(preloaded.headers['strict-transport-security'], 'max-age=63072000; includeSubDomains; preload')
    const open = await client.get(`${proxy.url}/open`, { host: 'shop.example.com' })
    assert.equal(open.status, 200, 'a route without httpsOnly still serves plain HTTP')
  })

  it('refuses plain HTTP with 403 on a denyHttp route and serves it over HTTPS', async () => {
    const denied = await createClient({ reuse: false }).get(`${proxy.url}/closed`)
    assert.equal(denied.status, 403)
    const served = await httpsGet({ port: tlsPort, host: 'shop.example.com', path: '/closed' })
    assert.equal(served.status, 200)
  })

  it('redirects when a balancer in front says X-Forwarded-Proto: http, and not when it says https', async () => {
    const client = createClient({ reuse: false })
    const viaHttp = await client.get(`${proxy.url}/behind/p?q=1`, { host: 'shop.example.com', headers: { 'x-forwarded-proto': 'http' } })
    assert.equal(viaHttp.status, 301)
    assert.equal(viaHttp.headers.location, 'https://shop.example.com/behind/p?q=1')
    const viaHttps = await client.get(`${proxy.url}/behind/p`, { host: 'shop.example.com', headers: { 'x-forwarded-proto': 'https' } })
    assert.equal(viaHttps.status, 200)
  })

  it('answers an ACME challenge over plain HTTP even under an httpsOnly catch-all', async () => {
    const answer = await createClient({ reuse: false }).get(`${proxy.url}/.well-known/acme-challenge/tok_0123456789abcdefABCDEF`, { host: 'shop.example.com' })
    assert.equal(answer.status, 200)
    assert.equal(answer.body, 'tok_0123456789abcdefABCDEF.thumbprint0123456789abcdef')
  })
})
