/** The pure parts of the ACME orderer and the route fields that ask for it. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { renewalTime, requestFailure, retryDelay, seconds, wantedCertificates } from '../../../src/control/acme.ts'
import { api, startControl } from '../harness.ts'

describe('ACME, pure parts', () => {
  it('renews at two thirds of the lifetime', () => {
    assert.equal(new Date(renewalTime({ notBefore: '2026-01-01T00:00:00.000Z', notAfter: '2026-04-01T00:00:00.000Z' })).toISOString(), '2026-03-02T00:00:00.000Z')
  })
  it('says what a request without an answer ran into, naming the CA (origin and path, no query)', () => {
    const url = 'https://ca.test:14000/dir?x=1'
    for (const [err, timedOut, expected] of [
      [{}, 30_000, 'CA at https://ca.test:14000/dir did not answer within 30 s'],
      [{}, 1_500, 'CA at https://ca.test:14000/dir did not answer within 1.5 s'],
      [{ code: 'ECONNRESET', message: 'read ECONNRESET' }, undefined, 'connection reset by https://ca.test:14000/dir'],
      [{ message: 'socket hang up' }, undefined, 'connection reset by https://ca.test:14000/dir'],
      [{ code: 'ECONNREFUSED', message: 'connect ECONNREFUSED' }, undefined, 'connection refused by https://ca.test:14000/dir'],
      [{ code: 'ENOTFOUND', message: 'getaddrinfo ENOTFOUND ca.test' }, undefined, 'the name of https://ca.test:14000/dir does not resolve (ENOTFOUND)'],
      [{ code: 'DEPTH_ZERO_SELF_SIGNED_CERT', message: 'self-signed certificate' }, undefined, 'TLS with https://ca.test:14000/dir failed: self-signed certificate (DEPTH_ZERO_SELF_SIGNED_CERT)'],
      [{ message: 'odd', cause: { code: 'EHOSTUNREACH' } }, undefined, 'request to https://ca.test:14000/dir failed: odd (EHOSTUNREACH)'],
    ] as const) assert.equal(requestFailure(err, url, timedOut), expected)
    assert.deepEqual([seconds(300_000), seconds(90_000), seconds(1_000)], ['5 min', '90 s', '1 s'])
  })
  it('backs off with the shared backoff: exponential, capped, between half the ceiling and the ceiling', () => {
    for (const [failures, random, expected] of [
      [1, 0.5, 45_000],
      [2, 0.5, 90_000],
      [3, 0, 120_000],
      [3, 0.999999, 240_000],
      [30, 0, 43_200_000],
      [30, 0.5, 64_800_000],
    ] as const) assert.equal(retryDelay(failures, 60_000, 86_400_000, random), expected, `${failures} failures, random ${random}`)
  })
  it('wants one certificate per route that asks, named acme-<serviceName>; without the every-domain switch, a route with only a serviceDomain gets none', () => {
    assert.deepEqual(wantedCertificates([{ serviceName: 'web', acmeDomains: ['b.test', 'a.test'] }, { serviceName: 'api', serviceDomain: ['api.test'] }]), {
      wanted: [{ name: 'acme-web', serviceName: 'web', domains: ['a.test', 'b.test'], reason: 'route' }],
      skipped: [],
    })
  })
  it('with every domain: each route gets one for its names (route and per-destination), minus wildcards, IPs, bare names and names a non-ACME certificate covers', () => {
    const now = Date.parse('2026-06-01T00:00:00Z')
    const certificates = [
      { name: 'uploaded', domains: ['*.shop.test'], notAfter: '2027-01-01T00:00:00Z', source: 'api' },
      { name: 'expired', domains: ['old.test'], notAfter: '2026-01-01T00:00:00Z', source: 'api' },
      { name: 'acme-api', domains: ['api.test'], notAfter: '2027-01-01T00:00:00Z', source: 'acme' },
    ]
    const cases: Array<[string, Parameters<typeof wantedCertificates>[0][number], ReturnType<typeof wantedCertificates>]> = [
      ['names of the route', { serviceName: 'api', serviceDomain: ['API.test', 'www.api.test'] }, { wanted: [{ name: 'acme-api', serviceName: 'api', domains: ['api.test', 'www.api.test'], reason: 'every-domain' }], skipped: [] }],
      ['per-destination names too', { serviceName: 'm', serviceDomain: [], destinations: [{ serviceDomain: ['b.test'] }, {}] }, { wanted: [{ name: 'acme-m', serviceName: 'm', domains: ['b.test'], reason: 'every-domain' }], skipped: [] }],
      ['no names: nothing', { serviceName: 'plain', serviceDomain: [] }, { wanted: [], skipped: [] }],
      [
        'covered by an uploaded wildcard: skipped, saying which',
        { serviceName: 'shop', serviceDomain: ['a.shop.test', 'x.test'] },
        { wanted: [{ name: 'acme-shop', serviceName: 'shop', domains: ['x.test'], reason: 'every-domain' }], skipped: [{ serviceName: 'shop', domain: 'a.shop.test', reason: "covered by certificate 'uploaded' (api)" }] },
      ],
      ['an expired upload does not cover', { serviceName: 'o', serviceDomain: ['old.test'] }, { wanted: [{ name: 'acme-o', serviceName: 'o', domains: ['old.test'], reason: 'every-domain' }], skipped: [] }],
      [
        'wildcards, IPs and bare names cannot be ordered',
        { serviceName: 'w', serviceDomain: ['*.w.test', '10.0.0.1', 'intranet'] },
        {
          wanted: [],
          skipped: [
            { serviceName: 'w', domain: '*.w.test', reason: 'a wildcard name cannot be validated over HTTP-01; upload a certificate for it' },
            { serviceName: 'w', domain: '10.0.0.1', reason: 'an IP address, not a DNS name' },
            { serviceName: 'w', domain: 'intranet', reason: 'not a fully qualified DNS name' },
          ],
        },
      ],
      ['a route that asks keeps its own list', { serviceName: 'own', serviceDomain: ['a.test', 'b.test'], acmeDomains: ['a.test'] }, { wanted: [{ name: 'acme-own', serviceName: 'own', domains: ['a.test'], reason: 'route' }], skipped: [] }],
    ]
    for (const [what, route, expected] of cases) assert.deepEqual(wantedCertificates([route], { everyDomain: true, certificates, now }), expected, what)
  })
})

describe('routes asking for ACME', () => {
  it('acme=true takes the serviceDomain; DFP letsencrypt.host names them; wildcards and missing names are refused', async (t) => {
    const { app, store } = await startControl(t)
    const own = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=a&servicePath=/&port=80&serviceDomain=a.test,www.a.test&acme=true', headers: api })
    assert.equal(own.statusCode, 200, own.body)
    assert.deepEqual(own.json().route.acmeDomains, ['a.test', 'www.a.test'])
    const dfp = await app.inject({ method: 'PUT', url: '/v1/docker-flow-proxy/reconfigure?serviceName=b&servicePath=/b&port=80&letsencrypt.host=b.test&letsencrypt.email=ops@b.test', headers: api })
    assert.equal(dfp.statusCode, 200, dfp.body)
    assert.deepEqual(dfp.json().route.acmeDomains, ['b.test'])
    assert.equal(dfp.json().warnings, undefined)
    const before = await store.version()
    for (const [url, field] of [
      ['/v1/reconfigure?serviceName=c&servicePath=/c&port=80&acme=true', 'acme'],
      ['/v1/reconfigure?serviceName=c&servicePath=/c&port=80&serviceDomain=*.c.test&acme=true', 'acme'],
      ['/v1/docker-flow-proxy/reconfigure?serviceName=c&servicePath=/c&port=80&letsencrypt.host=bad_name', 'letsencrypt.host'],
    ] as const) {
      const res = await app.inject({ method: 'PUT', url, headers: api })
      assert.equal(res.statusCode, 400, `${url}: ${res.body}`)
      assert.ok(res.json().message.startsWith(`${field}:`), res.json().message)
    }
    assert.equal(await store.version(), before)
  })
})
