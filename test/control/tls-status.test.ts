/** The HTTPS part of GET /v1/status, decided by a pure function (services/tls-status.ts). */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { tlsStatusOf } from '../../src/control/services/tls-status.ts'
import type { CertificateInfo } from '../../src/contracts/certificate.ts'

const now = Date.parse('2026-06-01T00:00:00Z')
const cert = (name: string, domains: string[], notAfter = '2026-09-01T00:00:00.000Z'): CertificateInfo => ({
  name,
  domains,
  subject: `CN=${domains[0]}`,
  issuer: 'CN=CA',
  notBefore: '2026-01-01T00:00:00.000Z',
  notAfter,
  fingerprint: `fp-${name}`,
  chainLength: 2,
  source: 'api',
  version: 1,
  updatedAt: '2026-01-01T00:00:00.000Z',
  actor: 'ci',
  warnings: [],
})
const route = (serviceName: string, serviceDomain: string[]) => ({ serviceName, serviceDomain, destinations: [{ servicePath: ['/'], port: 80 }] }) as never
const tls = (certificates: number, files: Array<{ name: string; domains: string[] }> = [], problems: Array<{ file: string; error: string }> = []) => ({
  certificates,
  defaultOnly: certificates === 0,
  files: files.map((f) => ({ ...f, file: `/run/secrets/${f.name}`, notAfter: '2026-09-01T00:00:00.000Z', fingerprint: `fp-${f.name}` })),
  problems,
})
const NO_CERT = 'no certificate: HTTPS answers every name with the self-signed default certificate'

describe('tlsStatusOf', () => {
  const cases: Array<[string, Parameters<typeof tlsStatusOf>[0], { warnings: RegExp[]; noWarning?: RegExp; uncovered: string[] }]> = [
    ['every proxy with only the default certificate: the warning', { certificates: [], routes: [], proxies: [{ id: 'p1', tls: tls(0) }, { id: 'p2', tls: tls(0) }], acme: null, now }, { warnings: [new RegExp(`^${NO_CERT}`)], uncovered: [] }],
    ['HTTPS off on every proxy (no TLS report): no HTTPS warning', { certificates: [], routes: [route('web', ['a.test'])], proxies: [{ id: 'p1' }], acme: null, now }, { warnings: [], noWarning: /certificate/, uncovered: ['web a.test'] }],
    ['one proxy lacks them (not fetched yet): named', { certificates: [cert('web', ['a.test'])], routes: [], proxies: [{ id: 'p1', tls: tls(1) }, { id: 'p2', tls: tls(0) }], acme: null, now }, { warnings: [/^proxies p2 have no certificate yet/], uncovered: [] }],
    ['a Docker secret counts; a bad file is a warning', { certificates: [], routes: [route('web', ['a.test', 'b.test'])], proxies: [{ id: 'p1', tls: tls(1, [{ name: 'cert-a', domains: ['*.test'] }], [{ file: '/run/secrets/cert-x', error: 'key: does not match' }]) }], acme: null, now }, { warnings: [/^proxy p1: certificate file \/run\/secrets\/cert-x not served: key: does not match$/], noWarning: /^no certificate/, uncovered: [] }],
    ['an expired certificate covers nothing and warns', { certificates: [{ ...cert('old', ['a.test'], '2026-05-01T00:00:00.000Z'), warnings: ['expired on 2026-05-01'] }], routes: [route('web', ['a.test', '*.w.test'])], proxies: [], acme: null, now }, { warnings: [/^certificate 'old': expired/], uncovered: ['web a.test'] }],
  ]
  for (const [what, input, expected] of cases) {
    it(what, () => {
      const out = tlsStatusOf(input)
      assert.equal(out.warnings.length, expected.warnings.length, out.warnings.join(' | '))
      expected.warnings.forEach((w, i) => assert.match(out.warnings[i] ?? '', w))
      if (expected.noWarning !== undefined) assert.ok(!out.warnings.some((w) => expected.noWarning!.test(w)))
      assert.deepEqual(out.uncoveredDomains.map((u) => `${u.serviceName} ${u.domain}`), expected.uncovered)
    })
  }
  it('ACME: an order past its deadline names its replica; an attempt overdue (no replica runs rounds) is a warning; one under way or waiting for its time is not', () => {
    const name = (over: Record<string, unknown>) => ({ name: 'acme-web', serviceName: 'web', domains: ['a.test'], reason: 'route' as const, state: 'pending' as const, failures: 0, ...over })
    const acme = (certificates: unknown[]) => ({ directory: 'https://ca.test/dir', everyDomain: false, leader: false, certificates, skipped: [], lastRound: { by: 'replica-a', at: '2026-05-31T22:00:00.000Z', nextAt: '2026-05-31T22:01:00.000Z' } }) as never
    const warningsOf = (a: unknown) => tlsStatusOf({ certificates: [], routes: [], proxies: [], acme: acme([a]), now }).warnings
    assert.deepEqual(warningsOf(name({ state: 'pending', ordering: { by: 'replica-a', since: '2026-05-31T23:50:00.000Z', deadline: '2026-05-31T23:55:00.000Z', overdue: true } })), [
      "ACME order for a.test ('acme-web') started by replica-a at 2026-05-31T23:50:00.000Z has not ended by its deadline 2026-05-31T23:55:00.000Z: that replica was stopped or is stuck; another replica takes over once its lease expires",
    ])
    assert.deepEqual(warningsOf(name({ nextAttemptAt: '2026-05-31T22:01:00.000Z' })), [
      "ACME order for a.test ('acme-web') overdue since 2026-05-31T22:01:00.000Z: no control replica has run an ACME round since 2026-05-31T22:00:00.000Z (replica-a); check that the control replicas are running and can reach the store",
    ])
    assert.deepEqual(warningsOf(name({ state: 'ordering', ordering: { by: 'replica-a', since: '2026-05-31T23:59:00.000Z', deadline: '2026-06-01T00:04:00.000Z', overdue: false } })), [])
    assert.deepEqual(warningsOf(name({ nextAttemptAt: '2026-05-31T23:59:30.000Z' })), [], 'within the grace of a round')
    assert.deepEqual(warningsOf(name({ state: 'valid', renewAt: '2026-07-01T00:00:00.000Z' })), [])
  })
  it('gives each stored certificate its seconds to expiry', () => {
    const out = tlsStatusOf({ certificates: [cert('web', ['a.test'], '2026-06-02T00:00:00.000Z')], routes: [], proxies: [], acme: null, now })
    assert.deepEqual(out.certificates, [{ name: 'web', domains: ['a.test'], source: 'api', notAfter: '2026-06-02T00:00:00.000Z', expiresInSeconds: 86_400, warnings: [] }])
    assert.equal(out.acme, undefined)
  })
})
