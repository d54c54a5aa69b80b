/**
 * Only canonical forms are accepted, by the same rule in every form (query, JSON, resource,
 * Docker Flow Proxy): an endpoint host a resolver could read as another address than it shows
 * ('0127.0.0.1' is octal to libc, '1.27.0.0.1' and '80' are addresses to inet_aton), and a port
 * that is not plain decimal digits ('0x50', '8e1', ' 80' were coerced to 80 by the query form).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { rules } from '../../src/contracts/route.ts'
import { buildApp, type ControlApp } from '../../src/control/app.ts'
import { createMemoryRouteStore } from '../../src/control/store/memory-route-store.ts'
import type { RouteStore } from '../../src/control/store/route-store.ts'
import { API_TOKEN, api, PROXY_TOKEN } from './harness.ts'

let app: ControlApp
let store: RouteStore
before(async () => {
  store = createMemoryRouteStore()
  app = await buildApp({ store, auth: { apiTokens: new Map([[API_TOKEN, 'ci']]), proxyToken: PROXY_TOKEN } })
})
after(async () => {
  await app.close()
  await store.close()
})

const query = (params: Record<string, string>) => new URLSearchParams({ serviceName: 'go-demo', servicePath: '/demo', port: '8080', ...params }).toString()

/** The same endpoint list through each form; returns [form, status, message]. */
async function throughEveryForm(endpoints: string[]): Promise<Array<[string, number, string]>> {
  const answers = await Promise.all([
    app.inject({ method: 'PUT', url: `/v1/reconfigure?${query({ endpoints: endpoints.join(',') })}`, headers: api }),
    app.inject({ method: 'POST', url: '/v1/reconfigure', headers: api, payload: { serviceName: 'go-demo', servicePath: ['/demo'], port: 8080, endpoints } }),
    app.inject({ method: 'PUT', url: '/v1/routes/go-demo', headers: api, payload: { servicePath: ['/demo'], port: 8080, endpoints } }),
    app.inject({ method: 'PUT', url: `/v1/docker-flow-proxy/reconfigure?${query({ endpoints: endpoints.join(',') })}`, headers: api }),
  ])
  return ['query', 'JSON', 'resource', 'Docker Flow Proxy'].map((form, i) => {
    const res = answers[i]!
    return [form, res.statusCode, res.statusCode === 200 ? '' : String(res.json().message)]
  })
}

describe('endpoints: canonical hosts only, in every form', () => {
  for (const [endpoint, why] of [
    ['999.999.999.999:80', 'octets over 255'],
    ['[1:2:3]:80', 'not an IPv6 address'],
    ['[::1::2]:80', 'two :: in an IPv6 address'],
    ['0127.0.0.1:19001', 'a leading zero (octal to libc)'],
    ['1.27.0.0.1:19001', 'five numeric labels'],
    ['80:19001', 'an all-digit host (an address to inet_aton)'],
    ['0x7f.0.0.1:19001', 'a hexadecimal octet'],
    ['1.2.3:80', 'three numeric labels'],
  ] as const) {
    it(`refuses ${endpoint} (${why}) with 400 naming the field and the rule, and stores nothing`, async () => {
      const version = await store.version()
      for (const [form, status, message] of await throughEveryForm(['127.0.0.1:19000', endpoint])) {
        assert.equal(status, 400, `${form}: ${message}`)
        assert.match(message, /^endpoints(\[1\])?: /, `${form} names the field: ${message}`)
        assert.ok(message.includes(rules.endpoint.text), `${form} states the rule: ${message}`)
      }
      assert.equal(await store.version(), version)
    })
  }

  it('accepts canonical IPv4 and IPv6 addresses and host names in every form', async () => {
    const endpoints = ['127.0.0.1:19001', '10.0.0.255:80', '[::1]:8080', '[2001:db8::1]:443', '[::ffff:10.0.0.1]:80', 'localhost:80', 'tasks.go-demo:8080', 'web-1.example.com:65535', '1a:80']
    for (const [form, status, message] of await throughEveryForm(endpoints)) assert.equal(status, 200, `${form}: ${message}`)
    assert.deepEqual((await store.get('go-demo'))?.route.endpoints, endpoints)
  })
})

describe('port: decimal digits only, in every form', () => {
  for (const port of ['0x50', '8e1', '\n80', ' 80', '80 ', '+80', '8.0', '-80', '']) {
    it(`refuses port=${JSON.stringify(port)} in the query and Docker Flow Proxy forms alike`, async () => {
      const version = await store.version()
      for (const path of ['/v1/reconfigure', '/v1/docker-flow-proxy/reconfigure']) {
        const res = await app.inject({ method: 'PUT', url: `${path}?${query({ serviceName: 'port-test', servicePath: '/port-test', port })}`, headers: api })
        assert.equal(res.statusCode, 400, `${path}: ${res.body}`)
        assert.equal(res.json().code, 'VALIDATION_FAILED')
        assert.ok(res.json().message.startsWith('port: '), `${path}: ${res.json().message}`)
        assert.ok(res.json().message.includes(rules.port.text), `${path}: ${res.json().message}`)
      }
      assert.equal(await store.get('port-test'), null)
      assert.equal(await store.version(), version)
    })
  }

  it('accepts port=80 in both forms and stores the number 80', async () => {
    for (const path of ['/v1/reconfigure', '/v1/docker-flow-proxy/reconfigure']) {
      const res = await app.inject({ method: 'PUT', url: `${path}?${query({ serviceName: 'port-test', servicePath: '/port-test', port: '80' })}`, headers: api })
      assert.equal(res.statusCode, 200, res.body)
      assert.equal((await store.get('port-test'))?.route.destinations[0]?.port, 80)
    }
  })
})

describe('numbers in query strings: decimal digits only (since, limit, to, hstsMaxAge, httpsRedirectCode; wait and timeout are patterns already)', () => {
  const cases: Array<[string, string, string]> = [
    ['GET', '/v1/config?since=0x10', 'since'],
    ['GET', '/v1/changes?since=1e3', 'since'],
    ['GET', '/v1/changes?limit=%2010', 'limit'],
    ['GET', '/v1/changes?limit=+5', 'limit'],
    ['POST', '/v1/config/rollback?to=0x1', 'to'],
    ['POST', '/v1/config/rollback?to=', 'to'],
    ['PUT', `/v1/reconfigure?${query({ serviceName: 'hsts-test', servicePath: '/hsts-test', hstsMaxAge: '0x10' })}`, 'hstsMaxAge'],
    ['PUT', `/v1/reconfigure?${query({ serviceName: 'hsts-test', servicePath: '/hsts-test', httpsOnly: 'true', httpsRedirectCode: '3.01e2' })}`, 'httpsRedirectCode'],
  ]
  for (const [method, url, field] of cases) {
    it(`${method} ${decodeURIComponent(url.replace(/serviceName=[^&]*&servicePath=[^&]*&port=[^&]*&?/, ''))}: 400 naming ${field}, nothing changed`, async () => {
      const version = await store.version()
      const res = await app.inject({ method: method as 'GET', url, headers: api })
      assert.equal(res.statusCode, 400, res.body)
      assert.equal(res.json().code, 'VALIDATION_FAILED')
      assert.match(res.json().message, new RegExp(`^${field}: .* must be written in decimal digits`))
      assert.equal(await store.version(), version)
    })
  }

  it('takes the same numbers in decimal digits', async () => {
    assert.equal((await app.inject({ method: 'GET', url: '/v1/changes?since=0&limit=10', headers: api })).statusCode, 200)
    assert.equal((await app.inject({ method: 'GET', url: '/v1/config?since=16', headers: api })).statusCode !== 400, true)
    const res = await app.inject({ method: 'PUT', url: `/v1/reconfigure?${query({ serviceName: 'hsts-test', servicePath: '/hsts-test', hstsMaxAge: '16', httpsOnly: 'true', httpsRedirectCode: '301' })}`, headers: api })
    assert.equal(res.statusCode, 200, res.body)
    assert.deepEqual([res.json().route.hstsMaxAge, res.json().route.httpsRedirectCode], [16, 301])
  })
})
