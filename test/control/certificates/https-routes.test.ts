/**
 * Per-route HTTPS behaviour through every form: Tether's query string and JSON body, Docker
 * Flow Proxy's parameters and com.df.* labels; bad values refused naming the field, nothing
 * stored; TLS to backends refused as not implemented rather than ignored.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { routeFromLabels } from '../../../src/control/discovery/swarm-labels.ts'
import { api, startControl } from '../harness.ts'

describe('per-route HTTPS fields', () => {
  it('are stored from the query form, the JSON form and the DFP form, only when on', async (t) => {
    const { app } = await startControl(t)
    const q = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=a&servicePath=/a&port=80&httpsOnly=true&httpsRedirectCode=308&hstsMaxAge=31536000', headers: api })
    assert.equal(q.statusCode, 200, q.body)
    assert.deepEqual(q.json().route, { serviceName: 'a', destinations: [{ servicePath: ['/a'], port: 80 }], serviceDomain: [], sticky: false, endpoints: [], httpsOnly: true, httpsRedirectCode: 308, hstsMaxAge: 31536000 })
    const j = await app.inject({ method: 'PUT', url: '/v1/routes/b', headers: api, payload: { servicePath: ['/b'], port: 80, denyHttp: true } })
    assert.equal(j.statusCode, 200, j.body)
    assert.equal(j.json().route.denyHttp, true)
    const d = await app.inject({ method: 'PUT', url: '/v1/docker-flow-proxy/reconfigure?serviceName=c&servicePath=/c&port=80&redirectWhenHttpProto=true&httpsRedirectCode=301', headers: api })
    assert.equal(d.statusCode, 200, d.body)
    assert.equal(d.json().warnings, undefined, 'nothing ignored')
    assert.equal(d.json().route.redirectWhenHttpProto, true)
    assert.equal(d.json().route.httpsRedirectCode, 301)
    const off = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=e&servicePath=/e&port=80&httpsOnly=false', headers: api })
    assert.equal(off.json().route.httpsOnly, undefined, 'false is the default and is not stored')
  })

  it('take HSTS includeSubDomains and preload from the query, JSON and DFP forms and labels', async (t) => {
    const { app } = await startControl(t)
    const hsts = { hstsMaxAge: 31536000, hstsIncludeSubDomains: true, hstsPreload: true }
    const q = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=a&servicePath=/a&port=80&hstsMaxAge=31536000&hstsIncludeSubDomains=true&hstsPreload=true', headers: api })
    assert.equal(q.statusCode, 200, q.body)
    assert.deepEqual(q.json().route, { serviceName: 'a', destinations: [{ servicePath: ['/a'], port: 80 }], serviceDomain: [], sticky: false, endpoints: [], ...hsts })
    const j = await app.inject({ method: 'PUT', url: '/v1/routes/b', headers: api, payload: { servicePath: ['/b'], port: 80, hstsMaxAge: 600, hstsIncludeSubDomains: true, hstsPreload: false } })
    assert.equal(j.statusCode, 200, j.body)
    assert.deepEqual([j.json().route.hstsMaxAge, j.json().route.hstsIncludeSubDomains, j.json().route.hstsPreload], [600, true, undefined])
    const d = await app.inject({ method: 'PUT', url: '/v1/docker-flow-proxy/reconfigure?serviceName=c&servicePath=/c&port=80&hstsMaxAge=31536000&hstsIncludeSubDomains=true&hstsPreload=true', headers: api })
    assert.equal(d.statusCode, 200, d.body)
    assert.equal(d.json().warnings, undefined, 'nothing ignored')
    assert.deepEqual([d.json().route.hstsIncludeSubDomains, d.json().route.hstsPreload], [true, true])
    const listed = await app.inject({ method: 'GET', url: '/v1/routes', headers: api })
    const shown = listed.json().routes.map((r: { route: Record<string, unknown> }) => [r.route.serviceName, r.route.hstsIncludeSubDomains, r.route.hstsPreload])
    assert.deepEqual(shown, [['a', true, true], ['b', true, undefined], ['c', true, true]], 'GET /v1/routes shows them')
    const labelled = routeFromLabels('web', { 'com.df.notify': 'true', 'com.df.servicePath': '/', 'com.df.port': '80', 'com.df.hstsMaxAge': '31536000', 'com.df.hstsIncludeSubDomains': 'true' })
    assert.ok('route' in labelled)
    assert.deepEqual([labelled.route.hstsMaxAge, labelled.route.hstsIncludeSubDomains, labelled.route.hstsPreload], [31536000, true, undefined])
  })

  it('are read from com.df.* labels like DFP parameters', () => {
    const mapped = routeFromLabels('web', { 'com.df.notify': 'true', 'com.df.servicePath': '/', 'com.df.port': '80', 'com.df.httpsOnly': 'true', 'com.df.httpsRedirectCode': '307' })
    assert.ok('route' in mapped)
    assert.equal(mapped.route.httpsOnly, true)
    assert.equal(mapped.route.httpsRedirectCode, 307)
    // DFP's sslVerifyNone: TLS to the tasks, not verified.
    const tls = routeFromLabels('web', { 'com.df.notify': 'true', 'com.df.servicePath': '/', 'com.df.port': '80', 'com.df.sslVerifyNone': 'true' })
    assert.ok('route' in tls)
    assert.equal(tls.route.sslVerifyNone, true)
    assert.equal(tls.route.backendScheme, 'https')
  })

  it('refuse bad values naming the field and the rule, and store nothing', async (t) => {
    const { app, store } = await startControl(t)
    for (const [url, code, field] of [
      ['/v1/reconfigure?serviceName=a&servicePath=/a&port=80&httpsOnly=true&httpsRedirectCode=303', 'VALIDATION_FAILED', 'httpsRedirectCode'],
      ['/v1/reconfigure?serviceName=a&servicePath=/a&port=80&hstsMaxAge=-1', 'VALIDATION_FAILED', 'hstsMaxAge'],
      ['/v1/reconfigure?serviceName=a&servicePath=/a&port=80&hstsIncludeSubDomains=true', 'VALIDATION_FAILED', 'hstsIncludeSubDomains'],
      ['/v1/reconfigure?serviceName=a&servicePath=/a&port=80&hstsMaxAge=31536000&hstsPreload=true', 'VALIDATION_FAILED', 'hstsPreload'],
      ['/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80&hstsMaxAge=86400&hstsIncludeSubDomains=true&hstsPreload=true', 'VALIDATION_FAILED', 'hstsPreload'],
      ['/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80&hstsMaxAge=600&hstsIncludeSubDomains=yes', 'VALIDATION_FAILED', 'hstsIncludeSubDomains'],
      ['/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80&httpsOnly=yes', 'VALIDATION_FAILED', 'httpsOnly'],
      ['/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80&httpsOnly=true&denyHttp=true', 'VALIDATION_FAILED', 'denyHttp'],
      ['/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80&httpsRedirectCode=302&httpsOnly=true&hstsMaxAge=100000000', 'VALIDATION_FAILED', 'hstsMaxAge'],
      ['/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80&sslVerifyNone=maybe', 'VALIDATION_FAILED', 'sslVerifyNone'],
      ['/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80&sslVerifyNone=true&backendScheme=h2c', 'VALIDATION_FAILED', 'sslVerifyNone'],
    ] as const) {
      const res = await app.inject({ method: 'PUT', url, headers: api })
      assert.equal(res.statusCode, 400, `${url}: ${res.body}`)
      assert.equal(res.json().code, code, url)
      assert.ok(res.json().message.startsWith(`${field}:`), `${url}: ${res.json().message}`)
    }
    const body = await app.inject({ method: 'PUT', url: '/v1/routes/a', headers: api, payload: { servicePath: ['/a'], port: 80, httpsOnly: true, httpsRedirectCode: 300 } })
    assert.equal(body.statusCode, 400)
    assert.match(body.json().message, /^httpsRedirectCode/)
    assert.equal(await store.version(), 0)
  })
})
