/**
 * The certificates API through the real app (buildApp, app.inject): upload in both shapes and
 * through DFP's endpoint, refusals that store nothing, keys never in answers, logs or change
 * log, keys only for the proxy token, certificates in the versioned feed.
 */
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { before, describe, it } from 'node:test'
import pino from 'pino'
import { createSecretBox } from '../../../src/control/secret-box.ts'
import { createCa, createIntermediate, issue, type Issuer, type Leaf } from '../../helpers/pki.ts'
import { api, proxy, startControl } from '../harness.ts'

let ca: Issuer
let intermediate: Issuer
let web: Leaf
let web2: Leaf
let other: Leaf

before(async () => {
  ca = await createCa()
  intermediate = await createIntermediate(ca)
  web = await issue(intermediate, ['web.example.com', 'www.example.com'])
  web2 = await issue(intermediate, ['web.example.com'])
  other = await issue(intermediate, ['other.example.com'])
})

const json = { ...api, 'content-type': 'application/json' }
const pem = { ...api, 'content-type': 'application/x-pem-file' }

describe('PUT /v1/certificates/{name}', () => {
  it('stores JSON {certificate, key}: answers the facts (never the key) and a new config version that names it', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ method: 'PUT', url: '/v1/certificates/web', headers: json, payload: { certificate: web.chain, key: web.key } })
    assert.equal(res.statusCode, 200, res.body)
    const body = res.json()
    assert.equal(body.changed, true)
    assert.equal(body.version, 1)
    assert.deepEqual(body.warnings, [])
    assert.deepEqual(body.certificate.domains, ['web.example.com', 'www.example.com'])
    assert.equal(body.certificate.fingerprint, web.fingerprint)
    assert.equal(body.certificate.issuer, 'CN=Tether Test Intermediate')
    assert.equal(body.certificate.source, 'api')
    assert.equal(body.certificate.actor, 'ci')
    assert.doesNotMatch(res.body, /PRIVATE KEY|BEGIN CERTIFICATE/)

    const config = await app.inject({ url: '/v1/config', headers: proxy })
    assert.deepEqual(config.json().certificates, [{ name: 'web', fingerprint: web.fingerprint }])
    assert.doesNotMatch(config.body, /PRIVATE KEY/)

    const get = await app.inject({ url: '/v1/certificates/web' })
    assert.equal(get.statusCode, 200)
    assert.deepEqual(get.json(), body.certificate)
    const list = await app.inject({ url: '/v1/certificates' })
    assert.deepEqual(list.json(), { version: 1, certificates: [body.certificate] })
  })

  it('stores a combined PEM body, and the same chain again is changed:false with the same version', async (t) => {
    const { app } = await startControl(t)
    const first = await app.inject({ method: 'PUT', url: '/v1/certificates/web', headers: pem, payload: web.combined })
    assert.equal(first.statusCode, 200, first.body)
    const again = await app.inject({ method: 'PUT', url: '/v1/certificates/web', headers: { ...api, 'content-type': 'text/plain' }, payload: `${web.key}\n${web.chain}` })
    assert.equal(again.statusCode, 200, again.body)
    assert.equal(again.json().changed, false)
    assert.equal(again.json().version, 1)
    const replaced = await app.inject({ method: 'PUT', url: '/v1/certificates/web', headers: pem, payload: web2.combined })
    assert.equal(replaced.json().version, 2)
    const changes = await app.inject({ url: '/v1/certificate-changes' })
    assert.deepEqual(
      changes.json().changes.map((c: Record<string, unknown>) => [c.version, c.operation, c.name, c.fingerprint, c.previousFingerprint]),
      [
        [1, 'put', 'web', web.fingerprint, null],
        [2, 'put', 'web', web2.fingerprint, web.fingerprint],
      ],
    )
  })

  it('refuses a bad certificate with 400 CERTIFICATE_INVALID naming the problem, and stores nothing', async (t) => {
    const { app, store } = await startControl(t)
    const cases: Array<[unknown, string, RegExp]> = [
      [{ certificate: web.chain, key: other.key }, 'json', /^key: does not match the certificate \(CN=web\.example\.com\).*nothing was stored$/],
      [web.chain, 'pem', /^key: no PEM private key block/],
      ['not a pem at all', 'pem', /^certificate: no PEM certificate block/],
    ]
    for (const [payload, kind, expected] of cases) {
      const res = await app.inject({ method: 'PUT', url: '/v1/certificates/web', headers: kind === 'json' ? json : pem, payload: payload as string })
      assert.equal(res.statusCode, 400, res.body)
      assert.equal(res.json().code, 'CERTIFICATE_INVALID')
      assert.match(res.json().message, expected)
      assert.ok(!res.body.includes(other.key.split('\n')[1] as string), 'no key material in the answer')
    }
    for (const [payload, expected] of [
      [{ certificate: web.chain }, /^body\.key: is required/],
      [{ certificate: web.chain, key: web.key, extra: 1 }, /^body\.extra: is not a known field/],
      [{ certificate: 7, key: web.key }, /^body\.certificate: is required, a PEM string \(got 7\)/],
    ] as const) {
      const res = await app.inject({ method: 'PUT', url: '/v1/certificates/web', headers: json, payload })
      assert.equal(res.statusCode, 400, res.body)
      assert.equal(res.json().code, 'VALIDATION_FAILED')
      assert.match(res.json().message, expected)
    }
    const badName = await app.inject({ method: 'PUT', url: '/v1/certificates/-bad', headers: pem, payload: web.combined })
    assert.equal(badName.statusCode, 400)
    assert.match(badName.json().message, /name/)
    assert.equal(await store.version(), 0)
    assert.deepEqual(await store.listCertificates(), [])
  })

  it('needs an API token to write; DELETE removes (404 when absent) as a new version', async (t) => {
    const { app, store } = await startControl(t)
    const anonymous = await app.inject({ method: 'PUT', url: '/v1/certificates/web', headers: { 'content-type': 'application/x-pem-file' }, payload: web.combined })
    assert.equal(anonymous.statusCode, 401)
    const byProxy = await app.inject({ method: 'PUT', url: '/v1/certificates/web', headers: { ...proxy, 'content-type': 'application/x-pem-file' }, payload: web.combined })
    assert.equal(byProxy.statusCode, 401)
    await app.inject({ method: 'PUT', url: '/v1/certificates/web', headers: pem, payload: web.combined })
    const removed = await app.inject({ method: 'DELETE', url: '/v1/certificates/web', headers: api })
    assert.equal(removed.statusCode, 200, removed.body)
    assert.equal(removed.json().version, 2)
    assert.equal(removed.json().removed.fingerprint, web.fingerprint)
    const again = await app.inject({ method: 'DELETE', url: '/v1/certificates/web', headers: api })
    assert.equal(again.statusCode, 404)
    assert.equal(again.json().code, 'CERTIFICATE_NOT_FOUND')
    assert.equal((await app.inject({ url: '/v1/certificates/web' })).statusCode, 404)
    assert.equal((await store.snapshot()).certificates, undefined)
  })

  it('refuses to store certificates without a secret key (shared store, no TETHER_SECRET_KEY_FILE): 503 naming the variable', async (t) => {
    const { app, store } = await startControl(t, { secretBox: null })
    const res = await app.inject({ method: 'PUT', url: '/v1/certificates/web', headers: pem, payload: web.combined })
    assert.equal(res.statusCode, 503)
    assert.equal(res.json().code, 'SECRET_KEY_MISSING')
    assert.match(res.json().message, /TETHER_SECRET_KEY_FILE/)
    assert.equal(await store.version(), 0)
  })

  it('never logs a key or a PEM: the log records name and fingerprint', async (t) => {
    const lines: string[] = []
    const logger = pino({ level: 'trace' }, new Writable({ write: (chunk, _enc, cb) => (lines.push(String(chunk)), cb()) }))
    const { app } = await startControl(t, { logger })
    await app.inject({ method: 'PUT', url: '/v1/certificates/web', headers: pem, payload: web.combined })
    await app.inject({ method: 'PUT', url: '/v1/certificates/web', headers: json, payload: { certificate: web.chain, key: other.key } })
    await app.inject({ url: '/v1/proxy/certificates', headers: proxy })
    const text = lines.join('')
    assert.match(text, new RegExp(`"certificate":"web","fingerprint":"${web.fingerprint}"`))
    assert.doesNotMatch(text, /PRIVATE KEY|BEGIN CERTIFICATE|MII/)
  })
})

describe('PUT /v1/docker-flow-proxy/cert', () => {
  it('stores the combined PEM as DFP users send it (curl --data-binary: form-urlencoded), source dfp, distribute accepted', async (t) => {
    const { app, store } = await startControl(t)
    const res = await app.inject({
      method: 'PUT',
      url: '/v1/docker-flow-proxy/cert?certName=web.example.com.pem&distribute=true',
      headers: { ...api, 'content-type': 'application/x-www-form-urlencoded' },
      payload: web.combined,
    })
    assert.equal(res.statusCode, 200, res.body)
    assert.equal(res.json().certificate.name, 'web.example.com.pem')
    assert.equal(res.json().certificate.source, 'dfp')
    assert.equal((await store.getCertificate('web.example.com.pem'))?.info.fingerprint, web.fingerprint)
    const bad = await app.inject({ method: 'PUT', url: '/v1/docker-flow-proxy/cert?certName=x.pem', headers: { ...api, 'content-type': 'application/x-www-form-urlencoded' }, payload: web.chain })
    assert.equal(bad.statusCode, 400)
    assert.equal(bad.json().code, 'CERTIFICATE_INVALID')
  })
  it('takes the PEM whatever the Content-Type, or none (Go and Python clients send none), on this route only', async (t) => {
    const { app, store } = await startControl(t)
    // No Content-Type at all: a string payload is sent as is by inject, as by Go's http.NewRequest.
    const none = await app.inject({ method: 'PUT', url: '/v1/docker-flow-proxy/cert?certName=none.pem', headers: api, payload: web.combined })
    assert.equal(none.statusCode, 200, none.body)
    assert.equal((await store.getCertificate('none.pem'))?.info.fingerprint, web.fingerprint)
    for (const [name, type] of [['json.pem', 'application/json'], ['text.pem', 'text/plain; charset=utf-8'], ['odd.pem', 'application/x-whatever']] as const) {
      const res = await app.inject({ method: 'PUT', url: `/v1/docker-flow-proxy/cert?certName=${name}`, headers: { ...api, 'content-type': type }, payload: web.combined })
      assert.equal(res.statusCode, 200, `${type}: ${res.body}`)
      assert.equal((await store.getCertificate(name))?.info.fingerprint, web.fingerprint, type)
    }
    // Text that is not a PEM is judged as before, whatever the type, and nothing is stored.
    const junk = await app.inject({ method: 'PUT', url: '/v1/docker-flow-proxy/cert?certName=junk.pem', headers: api, payload: 'not a certificate' })
    assert.equal(junk.statusCode, 400, junk.body)
    assert.equal(junk.json().code, 'CERTIFICATE_INVALID')
    assert.equal(await store.getCertificate('junk.pem'), null)
    // The other routes keep their parsers: Tether's own upload still says what it accepts.
    const own = await app.inject({ method: 'PUT', url: '/v1/certificates/own', headers: { ...api, 'content-type': 'application/x-whatever' }, payload: web.combined })
    assert.equal(own.statusCode, 415, own.body)
    const ownJson = await app.inject({ method: 'PUT', url: '/v1/certificates/own', headers: json, payload: { certificate: web.chain, key: web.key } })
    assert.equal(ownJson.statusCode, 200, ownJson.body)
  })
})

describe('GET /v1/proxy/certificates', () => {
  it('gives chains and keys to the proxy token only; API tokens and anonymous are refused', async (t) => {
    const { app } = await startControl(t, { secretBox: createSecretBox(Buffer.alloc(32, 1)) })
    await app.inject({ method: 'PUT', url: '/v1/certificates/web', headers: pem, payload: web.combined })
    assert.equal((await app.inject({ url: '/v1/proxy/certificates', headers: api })).statusCode, 401)
    assert.equal((await app.inject({ url: '/v1/proxy/certificates' })).statusCode, 401)
    const res = await app.inject({ url: '/v1/proxy/certificates', headers: proxy })
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['cache-control'], 'no-store')
    const [material] = res.json().certificates
    assert.equal(material.name, 'web')
    assert.equal(material.fingerprint, web.fingerprint)
    assert.match(material.pem, /^-----BEGIN CERTIFICATE-----[\s\S]*-----BEGIN PRIVATE KEY-----/)
    assert.deepEqual(res.json().problems, [])
  })

  it('reports, and does not send, a key sealed with another secret key (replicas with different TETHER_SECRET_KEY_FILE)', async (t) => {
    const { app, store } = await startControl(t, { secretBox: createSecretBox(Buffer.alloc(32, 1)) })
    await app.inject({ method: 'PUT', url: '/v1/certificates/web', headers: pem, payload: web.combined })
    const { app: other } = await startControl(t, { store, secretBox: createSecretBox(Buffer.alloc(32, 2)) })
    const res = await other.inject({ url: '/v1/proxy/certificates', headers: proxy })
    assert.deepEqual(res.json().certificates, [])
    assert.match(res.json().problems[0].error, /sealed with another secret key/)
  })
})
