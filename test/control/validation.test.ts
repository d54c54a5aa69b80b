/**
 * Every value ends up in an HAProxy configuration file: table-driven tests of what is refused
 * (with the field and the rule named, and nothing stored) and what is accepted.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { rules } from '../../src/contracts/route.ts'
import { api, heartbeat, proxy, sharedControl, startControl } from './harness.ts'

const base = { serviceName: 'go-demo', servicePath: '/demo', port: '8080' }

function url(params: Record<string, string>): string {
  return `/v1/reconfigure?${new URLSearchParams({ ...base, ...params }).toString()}`
}

const refused: Array<{ name: string; params: Record<string, string>; field: string; rule: string }> = [
  { name: 'a servicePath with a space', params: { servicePath: '/a b' }, field: 'servicePath', rule: rules.servicePath.text },
  { name: "a servicePath with '#'", params: { servicePath: '/a#b' }, field: 'servicePath', rule: rules.servicePath.text },
  { name: 'a servicePath with a newline (config injection)', params: { servicePath: '/a\n    use_backend evil' }, field: 'servicePath', rule: rules.servicePath.text },
  { name: 'a servicePath with a trailing newline', params: { servicePath: '/a\n' }, field: 'servicePath', rule: rules.servicePath.text },
  { name: "a servicePath with a '..' segment", params: { servicePath: '/../x' }, field: 'servicePath', rule: rules.servicePath.text },
  { name: "a servicePath ending in '..'", params: { servicePath: '/a/..' }, field: 'servicePath', rule: rules.servicePath.text },
  { name: "a servicePath with a '.' segment", params: { servicePath: '/a/./b' }, field: 'servicePath', rule: rules.servicePath.text },
  { name: 'a servicePath with an empty segment', params: { servicePath: '/a//b' }, field: 'servicePath', rule: rules.servicePath.text },
  { name: 'a servicePath with a double quote', params: { servicePath: '/a"b' }, field: 'servicePath', rule: rules.servicePath.text },
  { name: 'a servicePath with a single quote', params: { servicePath: "/a'b" }, field: 'servicePath', rule: rules.servicePath.text },
  { name: 'a servicePath with a backslash', params: { servicePath: '/a\\b' }, field: 'servicePath', rule: rules.servicePath.text },
  { name: "a servicePath with '$'", params: { servicePath: '/a${x}' }, field: 'servicePath', rule: rules.servicePath.text },
  { name: "a servicePath with '?'", params: { servicePath: '/a?b' }, field: 'servicePath', rule: rules.servicePath.text },
  { name: 'a servicePath with a tab', params: { servicePath: '/a\tb' }, field: 'servicePath', rule: rules.servicePath.text },
  { name: 'a servicePath with a NUL byte', params: { servicePath: '/a\u0000' }, field: 'servicePath', rule: rules.servicePath.text },
  { name: "a servicePath not starting with '/'", params: { servicePath: 'demo' }, field: 'servicePath', rule: rules.servicePath.text },
  { name: 'a malformed %-escape', params: { servicePath: '/a%zz' }, field: 'servicePath', rule: rules.servicePath.text },
  { name: 'an over-long servicePath', params: { servicePath: `/${'a'.repeat(300)}` }, field: 'servicePath', rule: 'at most 256 characters' },
  { name: 'too many servicePaths', params: { servicePath: Array.from({ length: 33 }, (_, i) => `/p${i}`).join(',') }, field: 'servicePath', rule: 'at most 32' },
  { name: 'an empty servicePath list', params: { servicePath: ',' }, field: 'servicePath', rule: rules.servicePath.text },
  { name: 'a serviceName with a space', params: { serviceName: 'go demo' }, field: 'serviceName', rule: rules.serviceName.text },
  { name: "a serviceName starting with '-'", params: { serviceName: '-demo' }, field: 'serviceName', rule: rules.serviceName.text },
  { name: 'a serviceName with a newline', params: { serviceName: 'demo\nbackend x' }, field: 'serviceName', rule: rules.serviceName.text },
  { name: 'a serviceName over 63 characters', params: { serviceName: 'a'.repeat(64) }, field: 'serviceName', rule: 'at most 63' },
  { name: 'port 0', params: { port: '0' }, field: 'port', rule: rules.port.text },
  { name: 'port 65536', params: { port: '65536' }, field: 'port', rule: rules.port.text },
  { name: 'a port that is not a number', params: { port: 'http' }, field: 'port', rule: rules.port.text },
  { name: 'a fractional port', params: { port: '80.5' }, field: 'port', rule: rules.port.text },
  { name: 'a domain with an underscore', params: { serviceDomain: 'my_app.example.com' }, field: 'serviceDomain', rule: rules.serviceDomain.text },
  { name: 'a domain with a space', params: { serviceDomain: 'a b.com' }, field: 'serviceDomain', rule: rules.serviceDomain.text },
  { name: 'a domain label starting with -', params: { serviceDomain: '-a.example.com' }, field: 'serviceDomain', rule: rules.serviceDomain.text },
  { name: 'a wildcard not in front', params: { serviceDomain: 'a.*.example.com' }, field: 'serviceDomain', rule: rules.serviceDomain.text },
  { name: 'a domain label over 63 characters', params: { serviceDomain: `${'a'.repeat(64)}.com` }, field: 'serviceDomain', rule: rules.serviceDomain.text },
  { name: 'a domain with a port', params: { serviceDomain: 'example.com:80' }, field: 'serviceDomain', rule: rules.serviceDomain.text },
  { name: 'a cookie name with a space', params: { sticky: 'true', stickyCookie: 'MY COOKIE' }, field: 'stickyCookie', rule: rules.stickyCookie.text },
  { name: "a cookie name with '='", params: { sticky: 'true', stickyCookie: 'a=b' }, field: 'stickyCookie', rule: rules.stickyCookie.text },
  { name: "a cookie name with ';'", params: { sticky: 'true', stickyCookie: 'a;httponly' }, field: 'stickyCookie', rule: rules.stickyCookie.text },
  { name: 'a cookie name over 64 characters', params: { sticky: 'true', stickyCookie: 'c'.repeat(65) }, field: 'stickyCookie', rule: rules.stickyCookie.text },
  { name: 'an endpoint without a port', params: { endpoints: '127.0.0.1' }, field: 'endpoints', rule: rules.endpoint.text },
  { name: 'an endpoint with port 0', params: { endpoints: '127.0.0.1:0' }, field: 'endpoints', rule: rules.endpoint.text },
  { name: 'an endpoint with a space', params: { endpoints: 'a b:80' }, field: 'endpoints', rule: rules.endpoint.text },
  { name: 'a sticky flag that is not a boolean', params: { sticky: 'yes' }, field: 'sticky', rule: 'must be boolean' },
  { name: 'a wait that is neither absent nor converged', params: { wait: 'forever' }, field: 'wait', rule: 'converged' },
  { name: 'a convergence timeout over 300 s', params: { wait: 'converged', timeout: '301' }, field: 'timeout', rule: 'from 0 to 300' },
]

describe('PUT /v1/reconfigure validation', () => {
  // One app per table: a refused case stores nothing, so the version stays 0 for all of them.
  const control = sharedControl()
  for (const c of refused) {
    it(`refuses ${c.name}, naming the field and the rule, and stores nothing`, async () => {
      const { app, store } = control()
      const res = await app.inject({ method: 'PUT', url: url(c.params), headers: api })
      assert.equal(res.statusCode, 400, res.body)
      const body = res.json()
      assert.deepEqual(Object.keys(body).sort(), ['code', 'error', 'message', 'statusCode'])
      assert.equal(body.code, 'VALIDATION_FAILED')
      assert.ok(body.message.startsWith(`${c.field}:`), `message names the field: ${body.message}`)
      assert.ok(body.message.includes(c.rule), `message states the rule: ${body.message}`)
      assert.doesNotMatch(body.message, /must match pattern/, 'no raw ajv message')
      assert.doesNotMatch(body.message, /\n/, 'control characters are escaped in the message')
      assert.equal(await store.version(), 0)
    })
  }

  const accepted: Array<{ name: string; params: Record<string, string> }> = [
    { name: 'the catch-all path /', params: { servicePath: '/' } },
    { name: 'RFC 3986 sub-delims and escapes in a path', params: { servicePath: "/a-b_c.d~e!f&g(h)*i+j;k=l:m@n/%20" } },
    { name: 'a path with dots inside a segment', params: { servicePath: '/v1.2/..x/a..b' } },
    { name: 'a 256-character path', params: { servicePath: `/${'a'.repeat(255)}` } },
    { name: 'a 63-character service name with _ . -', params: { serviceName: `a${'_.-'.repeat(20)}bc` } },
    { name: 'port 1 and port 65535', params: { port: '1' } },
    { name: 'a wildcard domain and an IDN-style punycode domain', params: { serviceDomain: '*.example.com,xn--bcher-kva.example' } },
    { name: 'RFC 6265 token characters in a cookie name', params: { sticky: 'true', stickyCookie: "A!&*+-.^_`|~z" } },
  ]
  const acceptor = sharedControl()
  for (const [i, c] of accepted.entries()) {
    it(`accepts ${c.name}`, async () => {
      const { app, store } = acceptor()
      // A path of its own per case: on one app, another service on the same path would be a 409.
      const res = await app.inject({ method: 'PUT', url: url({ servicePath: `/case-${i}`, ...c.params }), headers: api })
      assert.equal(res.statusCode, 200, res.body)
      const serviceName = c.params.serviceName ?? base.serviceName
      assert.deepEqual((await store.get(serviceName))?.route, res.json().route, 'the answer is what is stored')
    })
  }

  it('accepts a convergence timeout given as 30s (with a live proxy that converges)', async (t) => {
    const { app } = await startControl(t)
    const beat = await app.inject({ method: 'PUT', url: '/v1/proxies/p1', headers: proxy, payload: heartbeat(1) })
    assert.equal(beat.statusCode, 204, beat.body)
    const res = await app.inject({ method: 'PUT', url: url({ wait: 'converged', timeout: '30s' }), headers: api })
    assert.equal(res.statusCode, 200, res.body)
    assert.deepEqual(res.json().convergence, { version: 1, live: 1, converged: 1, laggards: [] })
  })
})

describe('POST /v1/reconfigure validation', () => {
  const cases: Array<{ name: string; body: Record<string, unknown>; field: string; rule: string }> = [
    { name: 'a path with a newline inside a list', body: { servicePath: ['/ok', '/a\nb'] }, field: 'servicePath[1]', rule: rules.servicePath.text },
    { name: 'a destination path with quotes', body: { servicePath: undefined, port: undefined, destinations: [{ servicePath: ['/x"y'], port: 80 }] }, field: 'destinations[0].servicePath[0]', rule: rules.servicePath.text },
    { name: 'a destination without port', body: { servicePath: undefined, port: undefined, destinations: [{ servicePath: ['/x'] }] }, field: 'destinations[0].port', rule: 'is required' },
    { name: 'a bad domain', body: { serviceDomain: ['bad domain'] }, field: 'serviceDomain[0]', rule: rules.serviceDomain.text },
    { name: 'a bad endpoint', body: { endpoints: ['host:99999'] }, field: 'endpoints[0]', rule: rules.endpoint.text },
    { name: 'an empty servicePath list', body: { servicePath: [] }, field: 'servicePath', rule: 'at least 1' },
    { name: 'a missing serviceName', body: { serviceName: undefined }, field: 'serviceName', rule: 'is required' },
  ]
  const control = sharedControl()
  for (const c of cases) {
    it(`refuses ${c.name}, naming ${c.field}`, async () => {
      const { app, store } = control()
      const body = Object.fromEntries(Object.entries({ serviceName: 'go-demo', servicePath: ['/demo'], port: 8080, ...c.body }).filter(([, v]) => v !== undefined))
      const res = await app.inject({ method: 'POST', url: '/v1/reconfigure', headers: api, payload: body })
      assert.equal(res.statusCode, 400, res.body)
      assert.ok(res.json().message.startsWith(`${c.field}:`), res.json().message)
      assert.ok(res.json().message.includes(c.rule), res.json().message)
      assert.equal(await store.version(), 0)
    })
  }
})
