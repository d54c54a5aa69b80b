/**
 * Replacing a certificate by one that no longer covers names routes serve (issue: PUT
 * /v1/certificates/site with a certificate for other.test answered 200 and site.test silently
 * fell back to the self-signed default). Through the real app (app.inject, memory store):
 * refused with 409 naming the names and routes unless force=true; forced, the answer warns and
 * /v1/status says so while the names stay uncovered; DFP's form stores with the warning.
 */
import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import { createCa, createIntermediate, issue, type Leaf } from '../../helpers/pki.ts'
import { api, startControl, type TestControl } from '../harness.ts'

let site: Leaf
let other: Leaf
let siteOnly: Leaf
let wildcard: Leaf
let apex: Leaf

before(async () => {
  const ca = await createIntermediate(await createCa()) // a full chain: no warning of its own
  site = await issue(ca, ['site.test', 'www.site.test', 'unused.test'])
  other = await issue(ca, ['other.test'])
  siteOnly = await issue(ca, ['site.test', 'www.site.test'])
  wildcard = await issue(ca, ['*.site.test'])
  apex = await issue(ca, ['site.test'])
})

const json = { ...api, 'content-type': 'application/json' }
const put = (app: TestControl['app'], url: string, leaf: Leaf) => app.inject({ method: 'PUT', url, headers: json, payload: { certificate: leaf.chain, key: leaf.key } })
const tlsStatus = async (app: TestControl['app']) => {
  const res = await app.inject({ method: 'GET', url: '/v1/status' })
  assert.equal(res.statusCode, 200, res.body)
  return res.json().tls as { warnings: string[]; uncoveredDomains: Array<{ serviceName: string; domain: string }> }
}

async function withRoutes(t: Parameters<typeof startControl>[0]): Promise<TestControl['app']> {
  const { app } = await startControl(t)
  for (const q of ['serviceName=site&servicePath=/&port=80&serviceDomain=site.test,www.site.test', 'serviceName=blog&servicePath=/blog&port=80&serviceDomain=www.site.test']) {
    const res = await app.inject({ method: 'PUT', url: `/v1/reconfigure?${q}`, headers: api })
    assert.equal(res.statusCode, 200, res.body)
  }
  const first = await put(app, '/v1/certificates/site', site)
  assert.equal(first.statusCode, 200, first.body)
  return app
}

describe('PUT /v1/certificates/{name} replacing a certificate', () => {
  it('refuses a replacement that leaves names routes serve uncovered (409 naming names and routes), and stores nothing', async (t) => {
    const app = await withRoutes(t)
    const res = await put(app, '/v1/certificates/site', other)
    assert.equal(res.statusCode, 409, res.body)
    const body = res.json()
    assert.equal(body.code, 'CERTIFICATE_DROPS_NAMES')
    assert.equal(
      body.message,
      "certificate 'site' covers site.test (route site), www.site.test (routes blog, site) and the new one does not, nor does any other certificate: HTTPS would answer them with the self-signed default certificate. Nothing was stored; store the new one under another name, or repeat with force=true to replace it anyway",
    )
    const stored = (await app.inject({ method: 'GET', url: '/v1/certificates/site' })).json()
    assert.equal(stored.fingerprint, site.fingerprint, 'the certificate in force is kept')
    const tls = await tlsStatus(app)
    assert.deepEqual(tls.uncoveredDomains, [])
    assert.ok(!tls.warnings.some((w) => w.includes('no certificate covers it')), JSON.stringify(tls.warnings))
  })

  it('with force=true stores it, warns in the answer, and /v1/status warns while the names stay uncovered; a certificate covering them again ends the warning', async (t) => {
    const app = await withRoutes(t)
    const res = await put(app, '/v1/certificates/site?force=true', other)
    assert.equal(res.statusCode, 200, res.body)
    const body = res.json()
    assert.deepEqual(body.certificate.domains, ['other.test'])
    assert.deepEqual(body.warnings, [
      'no longer covered: site.test (route site), www.site.test (routes blog, site); HTTPS answers them with the self-signed default certificate until a certificate covers them (shown in GET /v1/status tls.warnings meanwhile)',
    ])
    let tls = await tlsStatus(app)
    assert.deepEqual(tls.uncoveredDomains, [
      { serviceName: 'blog', domain: 'www.site.test' },
      { serviceName: 'site', domain: 'site.test' },
      { serviceName: 'site', domain: 'www.site.test' },
    ])
    const lines = tls.warnings.filter((w) => w.includes('no certificate covers it'))
    assert.equal(lines.length, 2, JSON.stringify(tls.warnings))
    assert.match(lines[0]!, /^site\.test \(route site\): no certificate covers it since 'site' was replaced at \d{4}-\d\d-\d\dT[\d:.]+Z by one for other\.test; HTTPS answers it with the self-signed default certificate$/)
    assert.match(lines[1]!, /^www\.site\.test \(routes blog, site\): no certificate covers it since 'site' was replaced at /)

    // Covered again (under another name): the warning goes, with the uncovered names.
    assert.equal((await put(app, '/v1/certificates/site-new', siteOnly)).statusCode, 200)
    tls = await tlsStatus(app)
    assert.deepEqual(tls.uncoveredDomains, [])
    assert.ok(!tls.warnings.some((w) => w.includes('no certificate covers it')), JSON.stringify(tls.warnings))
    assert.equal((await app.inject({ method: 'GET', url: '/v1/certificates/site' })).json().fingerprint, other.fingerprint)
  })

  it('accepts without a warning a replacement that drops only names no route serves, or names another certificate covers', async (t) => {
    const app = await withRoutes(t)
    const fewer = await put(app, '/v1/certificates/site', siteOnly)
    assert.equal(fewer.statusCode, 200, fewer.body)
    assert.deepEqual(fewer.json().warnings, [], 'unused.test is served by no route')
    assert.equal((await put(app, '/v1/certificates/wild', wildcard)).statusCode, 200)
    const res = await put(app, '/v1/certificates/site', apex)
    assert.equal(res.statusCode, 200, res.body)
    assert.deepEqual(res.json().warnings, [], 'www.site.test is covered by *.site.test')
    const tls = await tlsStatus(app)
    assert.deepEqual(tls.uncoveredDomains, [])
    // *.site.test does not cover site.test itself: dropping it is refused.
    const refused = await put(app, '/v1/certificates/site', other)
    assert.equal(refused.statusCode, 409, refused.body)
    assert.match(refused.json().message, /^certificate 'site' covers site\.test \(route site\) and the new one does not/)
  })

  it("stores through Docker Flow Proxy's form (its scripts know no force), with the warning", async (t) => {
    const app = await withRoutes(t)
    const res = await app.inject({ method: 'PUT', url: '/v1/docker-flow-proxy/cert?certName=site', headers: { ...api, 'content-type': 'application/x-pem-file' }, payload: `${other.chain}\n${other.key}` })
    assert.equal(res.statusCode, 200, res.body)
    assert.deepEqual(res.json().warnings, [
      'no longer covered: site.test (route site), www.site.test (routes blog, site); HTTPS answers them with the self-signed default certificate until a certificate covers them (shown in GET /v1/status tls.warnings meanwhile)',
    ])
    assert.equal((await tlsStatus(app)).warnings.filter((w) => w.includes('no certificate covers it')).length, 2)
  })
})
