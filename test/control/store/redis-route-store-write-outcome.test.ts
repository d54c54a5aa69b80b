/**
 * A write whose reply is lost never answers "Nothing was changed" when it may have been applied.
 * Real redis-server, paused with kill -STOP (it keeps its connections and answers nothing), made
 * slow by a long script on another connection, or killed: the store reads the write's outcome
 * back and answers what happened; when it cannot, it says the outcome is unknown
 * (WRITE_OUTCOME_UNKNOWN), and a write that never ran is cancelled for good (STORE_UNAVAILABLE
 * is then true: nothing was changed).
 */
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, it } from 'node:test'
import type { RouteStore } from '../../../src/control/store/route-store.ts'
import { redisFixtures } from '../../helpers/redis-fixtures.ts'
import type { RedisServer } from '../../helpers/redis-server.ts'
import { createSecretBox } from '../../../src/control/secret-box.ts'
import { createCa, issue } from '../../helpers/pki.ts'
import { api, startControl } from '../harness.ts'
import { ci, route } from './route-store.contract.ts'

const { redisServer, store, raw } = redisFixtures()

/** Pauses Redis now and resumes it after `ms` (a bound on the outage, not a measurement). */
function pauseFor(redis: RedisServer, ms: number): Promise<void> {
  redis.pause()
  return sleep(ms).then(() => redis.resume())
}


/** Keeps Redis busy for `ms` with one script, the way a slow command or a loaded machine does. */
const BUSY_SCRIPT = `
local t0 = redis.call('TIME')
local start = t0[1] * 1000000 + t0[2]
for _ = 1, 100000000 do
  local t = redis.call('TIME')
  if t[1] * 1000000 + t[2] - start > tonumber(ARGV[1]) * 1000 then return 1 end
end
return 0
`

describe('Redis route store: the outcome of a write whose reply was lost', () => {
  it('answers a write sent while Redis is paused for 1.5 s (longer than the 1 s command timeout) with what happened: applied, at its version', async () => {
    const redis = await redisServer()
    const s = store(redis.url)
    await s.put(route('first'), ci)
    const resumed = pauseFor(redis, 1500)
    const result = await s.put(route('go-demo'), ci)
    await resumed
    assert.deepEqual(result, { route: route('go-demo'), version: 2, changed: true })
    assert.equal((await s.get('go-demo'))?.version, 2)
    const log = await s.changes(0, 10)
    assert.deepEqual(
      log.map((c) => [c.version, c.serviceName, c.operation]),
      [
        [1, 'first', 'put'],
        [2, 'go-demo', 'put'],
      ],
    )
  })

  it('answers a remove sent to a slow Redis (a 1.5 s command ahead of it) with the route it removed', async () => {
    const redis = await redisServer()
    const s = store(redis.url)
    await s.put(route('go-demo'), ci)
    const other = await raw(redis.url)
    const busy = other.eval(BUSY_SCRIPT, 0, 1500)
    await sleep(50) // the script is running
    const removed = await s.remove('go-demo', ci)
    assert.equal(await busy, 1)
    assert.deepEqual(removed, { version: 2, removed: route('go-demo') })
    assert.equal(await s.get('go-demo'), null)
  })

  it('says WRITE_OUTCOME_UNKNOWN, not "nothing was changed", when Redis stays paused past the read-back bound; the write then lands and repeating it is safe', async () => {
    const redis = await redisServer()
    const s = store(redis.url, { commandTimeoutMs: 200, outcomeTimeoutMs: 500 })
    await s.put(route('first'), ci)
    redis.pause()
    try {
      await assert.rejects(s.put(route('go-demo'), ci), (err: Error & { code?: string; statusCode?: number }) => {
        assert.equal(err.code, 'WRITE_OUTCOME_UNKNOWN', err.message)
        assert.equal(err.statusCode, 503)
        assert.match(err.message, /may or may not have been applied; repeating the same request is safe/)
        assert.doesNotMatch(err.message, /Nothing was changed/i)
        return true
      })
    } finally {
      redis.resume()
    }
    // The write was in Redis' socket all along: it runs once Redis resumes.
    const stored = await waitForRecord(s, 'go-demo')
    assert.equal(stored.version, 2)
    assert.deepEqual(await s.put(route('go-demo'), ci), { route: route('go-demo'), version: 2, changed: false })
  })

  it('cancels a write that never ran (Redis killed while paused, restarted empty): STORE_UNAVAILABLE (nothing was changed) is then true', async () => {
    const redis = await redisServer()
    const s = store(redis.url, { commandTimeoutMs: 300, outcomeTimeoutMs: 5000 })
    await s.put(route('first'), ci)
    redis.pause()
    const write = s.put(route('go-demo'), ci)
    await sleep(400) // sent, and timed out
    await redis.stop()
    await redis.start() // the same port, empty: the write died with the old process
    await assert.rejects(write, (err: Error & { code?: string }) => {
      assert.equal(err.code, 'STORE_UNAVAILABLE', err.message)
      assert.match(err.message, /the write did not run, and never will/)
      return true
    })
    assert.deepEqual(await s.snapshot(), { version: 0, routes: [] })
  })
})

describe('PUT /v1/reconfigure when the reply from Redis is lost', () => {
  it('answers 503 WRITE_OUTCOME_UNKNOWN with a message saying retrying is safe; the retry answers changed: false', async (t) => {
    const redis = await redisServer()
    const s = store(redis.url, { commandTimeoutMs: 200, outcomeTimeoutMs: 500 })
    const { app } = await startControl(t, { store: s })
    const url = '/v1/reconfigure?serviceName=go-demo&servicePath=/demo&port=8080'
    // Connected first: a Redis that hangs before the store ever connected gets no write sent
    // at all, and that is answered STORE_UNAVAILABLE (nothing was changed), rightly.
    await s.ping()
    redis.pause()
    let answer
    try {
      answer = await app.inject({ method: 'PUT', url, headers: api })
    } finally {
      redis.resume()
    }
    assert.equal(answer.statusCode, 503)
    const body = answer.json()
    assert.equal(body.code, 'WRITE_OUTCOME_UNKNOWN')
    assert.equal(body.error, 'Service Unavailable')
    assert.match(body.message, /may or may not have been applied/)
    assert.match(body.message, /repeating the same request is safe/)
    await waitForRecord(s, 'go-demo')
    const retry = await app.inject({ method: 'PUT', url, headers: api })
    assert.equal(retry.statusCode, 200)
    assert.equal(retry.json().changed, false)
    assert.equal(retry.json().version, 1)
  })
})

describe('Redis store: certificate and ACME challenge writes whose reply was lost (the same guarantee as routes)', () => {
  const facts = (fingerprint: string) => ({
    name: 'web',
    domains: ['web.example.com'],
    subject: 'CN=web.example.com',
    issuer: 'CN=Test CA',
    notBefore: '2026-01-01T00:00:00.000Z',
    notAfter: '2027-01-01T00:00:00.000Z',
    fingerprint,
    chainLength: 2,
    warnings: [],
  })
  const cert = (fingerprint: string) => ({ facts: facts(fingerprint), chainPem: `chain-of-${fingerprint}\n`, keyBox: `v1:00000000:sealed-${fingerprint}` })
  const meta = { actor: 'ci', source: 'api' as const }
  const TOKEN = 'tok_0123456789abcdefABCDEF'

  it('answers a certificate write sent while Redis is paused 1.5 s with what happened: stored, at its version; a removal likewise', async () => {
    const redis = await redisServer()
    const s = store(redis.url)
    await s.put(route('first'), ci)
    const resumed = pauseFor(redis, 1500)
    const put = await s.putCertificate(cert('AA:01'), meta)
    await resumed
    assert.deepEqual({ version: put.version, changed: put.changed, fingerprint: put.info.fingerprint }, { version: 2, changed: true, fingerprint: 'AA:01' })
    assert.equal((await s.getCertificate('web'))?.info.version, 2)
    const resumedAgain = pauseFor(redis, 1500)
    const removed = await s.removeCertificate('web', meta)
    await resumedAgain
    assert.equal(removed?.version, 3)
    assert.equal(removed?.removed.fingerprint, 'AA:01')
    assert.deepEqual(
      (await s.certificateChanges(0, 10)).map((c) => [c.version, c.operation, c.fingerprint]),
      [
        [2, 'put', 'AA:01'],
        [3, 'remove', null],
      ],
    )
  })

  it('says WRITE_OUTCOME_UNKNOWN, not "nothing was changed", for a certificate or a challenge when Redis stays paused; each lands once Redis resumes and repeating is safe', async () => {
    const redis = await redisServer()
    const s = store(redis.url, { commandTimeoutMs: 200, outcomeTimeoutMs: 500 })
    await s.put(route('first'), ci)
    const unknown = (err: Error & { code?: string }) => {
      assert.equal(err.code, 'WRITE_OUTCOME_UNKNOWN', err.message)
      assert.doesNotMatch(err.message, /Nothing was changed/i)
      return true
    }
    redis.pause()
    try {
      await assert.rejects(s.putCertificate(cert('AA:01'), meta), unknown)
      await assert.rejects(s.putChallenge(TOKEN, `${TOKEN}.thumbprint0123456789abcdef`), unknown)
    } finally {
      redis.resume()
    }
    for (let i = 0; i < 100 && (await s.getCertificate('web').catch(() => null)) === null; i++) await sleep(50)
    assert.equal((await s.getCertificate('web'))?.info.fingerprint, 'AA:01')
    assert.deepEqual((await s.snapshot()).challenges, [{ token: TOKEN, keyAuthorization: `${TOKEN}.thumbprint0123456789abcdef` }])
    const again = await s.putCertificate(cert('AA:01'), meta)
    assert.deepEqual({ changed: again.changed, version: again.version }, { changed: false, version: 3 })
  })

  it('cancels a certificate write that never ran (Redis killed while paused, restarted empty): STORE_UNAVAILABLE is then true', async () => {
    const redis = await redisServer()
    const s = store(redis.url, { commandTimeoutMs: 300, outcomeTimeoutMs: 5000 })
    await s.put(route('first'), ci)
    redis.pause()
    const write = s.putCertificate(cert('AA:01'), meta)
    await sleep(400)
    await redis.stop()
    await redis.start()
    await assert.rejects(write, (err: Error & { code?: string }) => {
      assert.equal(err.code, 'STORE_UNAVAILABLE', err.message)
      assert.match(err.message, /the write did not run, and never will/)
      return true
    })
    assert.equal(await s.getCertificate('web'), null)
    assert.deepEqual(await s.listCertificates(), [])
  })
})

describe('PUT /v1/certificates/{name} when the reply from Redis is lost', () => {
  it('answers 503 WRITE_OUTCOME_UNKNOWN (retrying is safe); the retry answers changed: false', async (t) => {
    const redis = await redisServer()
    const s = store(redis.url, { commandTimeoutMs: 200, outcomeTimeoutMs: 500 })
    const { app } = await startControl(t, { store: s, secretBox: createSecretBox(Buffer.alloc(32, 3)) })
    const ca = await createCa()
    const leaf = await issue(ca, ['web.example.com'])
    await s.ping()
    // Redis stops at the moment the certificate write is sent: the route first reads the stored
    // certificate (a replacement may not drop names routes serve), and a Redis already stopped
    // there answers STORE_UNAVAILABLE, which is true (nothing was sent). This test is about the
    // write whose reply is lost.
    const putCertificate = s.putCertificate.bind(s)
    s.putCertificate = (...args) => {
      s.putCertificate = putCertificate
      redis.pause()
      return putCertificate(...args)
    }
    let answer
    try {
      answer = await app.inject({ method: 'PUT', url: '/v1/certificates/web', headers: { ...api, 'content-type': 'application/json' }, payload: { certificate: leaf.chain, key: leaf.key } })
    } finally {
      redis.resume()
    }
    assert.equal(answer.statusCode, 503, answer.body)
    assert.equal(answer.json().code, 'WRITE_OUTCOME_UNKNOWN')
    assert.match(answer.json().message, /repeating the same request is safe/)
    assert.doesNotMatch(answer.body, /PRIVATE KEY/)
    for (let i = 0; i < 100 && (await s.getCertificate('web').catch(() => null)) === null; i++) await sleep(50)
    const retry = await app.inject({ method: 'PUT', url: '/v1/certificates/web', headers: { ...api, 'content-type': 'application/json' }, payload: { certificate: leaf.chain, key: leaf.key } })
    assert.equal(retry.statusCode, 200, retry.body)
    assert.equal(retry.json().changed, false)
    assert.equal(retry.json().certificate.fingerprint, leaf.fingerprint)
  })
})

/** Polls the store until the route is there (bounded: 5 s). */
async function waitForRecord(s: RouteStore, serviceName: string) {
  for (let i = 0; i < 100; i++) {
    const record = await s.get(serviceName).catch(() => null)
    if (record !== null) return record
    await sleep(50)
  }
  throw new Error(`no route for ${serviceName} after 5 s`)
}
