/**
 * The certificate part of the store contract (control/store/certificate-store.ts), run against
 * both stores: the memory store and the Redis store on a real redis-server, with a second Redis
 * client on the same prefix standing for another control replica.
 */
import assert from 'node:assert/strict'
import { after, afterEach, before, describe, it } from 'node:test'
import { createMemoryRouteStore } from '../../../src/control/store/memory-route-store.ts'
import { createRedisRouteStore } from '../../../src/control/store/redis-route-store.ts'
import type { CertificateFacts } from '../../../src/control/store/certificate-store.ts'
import type { RouteStore } from '../../../src/control/store/route-store.ts'
import { startRedisServer, type RedisServer } from '../../helpers/redis-server.ts'
import { ci, fakeClock, nextVersion, route } from '../store/route-store.contract.ts'

let redis: RedisServer
before(async () => {
  redis = await startRedisServer()
})
after(async () => {
  await redis?.stop()
})

const facts = (name: string, fingerprint: string): CertificateFacts => ({
  name,
  domains: [`${name}.example.com`],
  subject: `CN=${name}.example.com`,
  issuer: 'CN=Test CA',
  notBefore: '2026-01-01T00:00:00.000Z',
  notAfter: '2026-04-01T00:00:00.000Z',
  fingerprint,
  chainLength: 2,
  warnings: [],
})
const cert = (name: string, fingerprint: string) => ({ facts: facts(name, fingerprint), chainPem: `chain-of-${fingerprint}\n`, keyBox: `v1:00000000:sealed-${fingerprint}` })
const meta = { actor: 'ci', source: 'api' as const }
const TOKEN = 'tok_0123456789abcdefABCDEF'
const KEY_AUTH = `${TOKEN}.thumbprint0123456789abcdef`

let n = 0
const kinds: Array<[string, (now: () => number) => { store: RouteStore; peer: RouteStore }]> = [
  ['memory', (now) => {
    const store = createMemoryRouteStore({ now })
    return { store, peer: store }
  }],
  ['redis', (now) => {
    const prefix = `certs-${++n}:`
    return { store: createRedisRouteStore({ url: redis.url, prefix, now }), peer: createRedisRouteStore({ url: redis.url, prefix, now }) }
  }],
]

for (const [kind, open] of kinds) {
  describe(`${kind} store: certificates (contract)`, () => {
    const clock = fakeClock()
    let opened: RouteStore[] = []
    const stores = () => {
      const s = open(clock.now)
      opened.push(s.store, s.peer)
      return s
    }
    afterEach(async () => {
      const closing = [...new Set(opened)]
      opened = []
      await Promise.all(closing.map((s) => s.close()))
    })

    it('stores a certificate as a new version of the feed: the snapshot names it with its fingerprint, never the key', async () => {
      const { store, peer } = stores()
      await store.put(route('web'), ci)
      const put = await store.putCertificate(cert('web', 'AA:01'), meta)
      assert.equal(put.changed, true)
      assert.equal(put.version, 2)
      assert.deepEqual(put.info, { ...facts('web', 'AA:01'), version: 2, updatedAt: new Date(clock.now()).toISOString(), actor: 'ci', source: 'api' })
      const snap = await peer.snapshot()
      assert.equal(snap.version, 2)
      assert.deepEqual(snap.certificates, [{ name: 'web', fingerprint: 'AA:01' }])
      assert.equal(snap.routes.length, 1)
      assert.ok(!JSON.stringify(snap).includes('sealed-'), 'no sealed key in the snapshot')
      assert.deepEqual(await peer.getCertificate('web'), { info: put.info, chainPem: 'chain-of-AA:01\n', keyBox: 'v1:00000000:sealed-AA:01' })
    })

    it('is idempotent on the chain: the same chain again changes nothing and keeps the version', async () => {
      const { store, peer } = stores()
      await store.putCertificate(cert('web', 'AA:01'), meta)
      const again = await peer.putCertificate({ ...cert('web', 'AA:01'), keyBox: 'v1:00000000:resealed' }, { actor: 'other', source: 'dfp' })
      assert.equal(again.changed, false)
      assert.equal(again.version, 1)
      assert.equal(again.info.actor, 'ci')
      assert.equal(await store.version(), 1)
    })

    it('replaces, lists sorted by name, removes; each change one version; the change log records name and fingerprints only', async () => {
      const { store, peer } = stores()
      await store.putCertificate(cert('web', 'AA:01'), meta)
      await store.putCertificate(cert('api', 'BB:01'), meta)
      await store.putCertificate(cert('web', 'AA:02'), { actor: 'ops', source: 'dfp' })
      assert.deepEqual((await peer.listCertificates()).map((c) => [c.info.name, c.info.fingerprint, c.info.version]), [
        ['api', 'BB:01', 2],
        ['web', 'AA:02', 3],
      ])
      const removed = await peer.removeCertificate('api', meta)
      assert.equal(removed?.version, 4)
      assert.equal(removed?.removed.fingerprint, 'BB:01')
      assert.equal(await store.removeCertificate('api', meta), null, 'removing an absent certificate changes nothing')
      assert.equal(await store.version(), 4)
      assert.deepEqual((await store.snapshot()).certificates, [{ name: 'web', fingerprint: 'AA:02' }])
      const log = await peer.certificateChanges(0, 100)
      assert.deepEqual(
        log.map((c) => [c.version, c.operation, c.name, c.fingerprint, c.previousFingerprint, c.actor, c.source]),
        [
          [1, 'put', 'web', 'AA:01', null, 'ci', 'api'],
          [2, 'put', 'api', 'BB:01', null, 'ci', 'api'],
          [3, 'put', 'web', 'AA:02', 'AA:01', 'ops', 'dfp'],
          [4, 'remove', 'api', null, 'BB:01', 'ci', 'api'],
        ],
      )
      assert.ok(!JSON.stringify(log).includes('sealed'), 'no key in the change log')
      assert.deepEqual((await store.certificateChanges(2, 1)).map((c) => c.version), [3])
      assert.equal((await store.changes(0, 100)).length, 0, 'the route change log is left alone')
    })

    it('announces a certificate change to subscribers of another client (another replica)', async () => {
      const { store, peer } = stores()
      await peer.version() // the peer has seen version 0
      const heard = nextVersion(peer, (v) => v >= 1)
      await store.putCertificate(cert('web', 'AA:01'), meta)
      assert.equal(await heard, 1)
    })

    it('publishes and withdraws ACME challenges as versions of the feed, idempotently', async () => {
      const { store, peer } = stores()
      assert.equal(await store.putChallenge(TOKEN, KEY_AUTH), 1)
      assert.equal(await store.putChallenge(TOKEN, KEY_AUTH), 1)
      assert.deepEqual((await peer.snapshot()).challenges, [{ token: TOKEN, keyAuthorization: KEY_AUTH }])
      assert.equal(await peer.removeChallenge(TOKEN), 2)
      assert.equal(await peer.removeChallenge(TOKEN), 2)
      const snap = await store.snapshot()
      assert.equal(snap.challenges, undefined)
      assert.deepEqual(snap, { version: 2, routes: [] })
      await assert.rejects(store.putChallenge('bad token', KEY_AUTH), /challenge token must be/)
    })

    it('keeps the ACME values (no version bump)', async () => {
      const { store, peer } = stores()
      await store.setAcmeValue('account', 'v1:x:y')
      assert.equal(await peer.getAcmeValue('account'), 'v1:x:y')
      assert.deepEqual(await peer.acmeValues(), { account: 'v1:x:y' })
      await peer.setAcmeValue('account', null)
      assert.equal(await store.getAcmeValue('account'), null)
      assert.equal(await store.version(), 0)
    })

    it('interleaves route and certificate versions on one counter, so a rollback still works', async () => {
      const { store } = stores()
      await store.put(route('a'), ci)
      await store.putCertificate(cert('web', 'AA:01'), meta)
      await store.put(route('b'), ci)
      const rolled = await store.rollback(1, ci)
      assert.equal(rolled.version, 4)
      const snap = await store.snapshot()
      assert.deepEqual(snap.routes.map((r) => r.serviceName), ['a'])
      assert.deepEqual(snap.certificates, [{ name: 'web', fingerprint: 'AA:01' }], 'a route rollback leaves certificates alone')
    })
  })
}
