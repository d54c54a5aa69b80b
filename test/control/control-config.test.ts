import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { EnvError, loadConfig } from '../../src/control/config.ts'

const TOKEN = 'abcdefghijklmnop0123'

describe('control-plane configuration (environment)', () => {
  it('defaults to 0.0.0.0:8080, the in-memory store, and generated API and proxy tokens', () => {
    const c = loadConfig({})
    assert.equal(c.host, '0.0.0.0')
    assert.equal(c.port, 8080)
    assert.equal(c.redisUrl, undefined)
    assert.ok(c.generated.apiToken !== undefined && c.generated.apiToken.length >= 16)
    assert.ok(c.apiTokens !== 'off' && c.apiTokens.get(c.generated.apiToken) === 'admin')
    assert.equal(c.proxyToken, c.generated.proxyToken)
    assert.notEqual(loadConfig({}).generated.apiToken, c.generated.apiToken, 'a fresh token each start')
  })

  it('reads name=token pairs, the proxy token, Redis, and the numbers', () => {
    const c = loadConfig({ TETHER_API_TOKENS: `ci=${TOKEN},ops=${TOKEN}X`, TETHER_PROXY_TOKEN: `${TOKEN}P`, REDIS_URL: 'redis://redis:6379', PORT: '9000', HOST: '127.0.0.1', TETHER_PROXY_TTL_SECONDS: '30' })
    assert.deepEqual(c.apiTokens, new Map([[TOKEN, 'ci'], [`${TOKEN}X`, 'ops']]))
    assert.equal(c.proxyToken, `${TOKEN}P`)
    assert.deepEqual(c.generated, {})
    assert.equal(c.redisUrl, 'redis://redis:6379')
    assert.equal(c.port, 9000)
    assert.equal(c.proxyTtlMs, 30_000)
  })

  it('ACME: Let\'s Encrypt staging, only routes that ask, a round a minute by default; TETHER_ACME_EVERY_DOMAIN and the interval read; a bad value names its variable', () => {
    const d = loadConfig({}).acme
    assert.deepEqual({ directoryUrl: d.directoryUrl, everyDomain: d.everyDomain, intervalMs: d.intervalMs }, { directoryUrl: 'https://acme-staging-v02.api.letsencrypt.org/directory', everyDomain: false, intervalMs: 60_000 })
    const c = loadConfig({ TETHER_ACME_EVERY_DOMAIN: 'on', TETHER_ACME_INTERVAL_SECONDS: '5' }).acme
    assert.deepEqual([c.everyDomain, c.intervalMs], [true, 5000])
    assert.throws(() => loadConfig({ TETHER_ACME_EVERY_DOMAIN: 'yes' }), /TETHER_ACME_EVERY_DOMAIN/)
    assert.throws(() => loadConfig({ TETHER_ACME_INTERVAL_SECONDS: '0' }), /TETHER_ACME_INTERVAL_SECONDS/)
  })

  it('ACME deadlines: 30 s a request and 5 min an order by default; read in seconds; out of range names its variable', () => {
    const d = loadConfig({}).acme
    assert.deepEqual([d.requestTimeoutMs, d.orderTimeoutMs], [30_000, 300_000])
    const c = loadConfig({ TETHER_ACME_REQUEST_TIMEOUT_SECONDS: '5', TETHER_ACME_ORDER_TIMEOUT_SECONDS: '60' }).acme
    assert.deepEqual([c.requestTimeoutMs, c.orderTimeoutMs], [5_000, 60_000])
    assert.throws(() => loadConfig({ TETHER_ACME_REQUEST_TIMEOUT_SECONDS: '0' }), /TETHER_ACME_REQUEST_TIMEOUT_SECONDS/)
    assert.throws(() => loadConfig({ TETHER_ACME_ORDER_TIMEOUT_SECONDS: '2' }), /TETHER_ACME_ORDER_TIMEOUT_SECONDS/)
  })

  it('reads tokens from files (Docker secrets)', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'tether-config-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    await writeFile(join(dir, 'api'), `ci=${TOKEN}\nops=${TOKEN}Y\n`)
    await writeFile(join(dir, 'proxy'), `${TOKEN}Z\n`)
    const c = loadConfig({ TETHER_API_TOKENS_FILE: join(dir, 'api'), TETHER_PROXY_TOKEN_FILE: join(dir, 'proxy') })
    assert.equal(c.apiTokens !== 'off' && c.apiTokens.get(`${TOKEN}Y`), 'ops')
    assert.equal(c.proxyToken, `${TOKEN}Z`)
  })

  it("turns auth off with TETHER_AUTH=off", () => {
    const c = loadConfig({ TETHER_AUTH: 'off' })
    assert.equal(c.apiTokens, 'off')
    assert.deepEqual(c.generated, {})
  })

  it('reads TETHER_LOG_LEVEL, the spelling every role shares; LOG_LEVEL still works, with a deprecation warning', () => {
    assert.deepEqual([loadConfig({ TETHER_LOG_LEVEL: 'debug' }).logLevel, loadConfig({ TETHER_LOG_LEVEL: 'debug' }).deprecations], ['debug', []])
    const old = loadConfig({ LOG_LEVEL: 'warn' })
    assert.equal(old.logLevel, 'warn')
    assert.deepEqual(old.deprecations, ['LOG_LEVEL is deprecated: use TETHER_LOG_LEVEL (the same for every role).'])
    const both = loadConfig({ LOG_LEVEL: 'warn', TETHER_LOG_LEVEL: 'error' })
    assert.equal(both.logLevel, 'error')
    assert.match(both.deprecations[0]!, /LOG_LEVEL is deprecated and ignored because TETHER_LOG_LEVEL is set/)
    assert.equal(loadConfig({}).logLevel, 'info')
  })

  const wrong: Array<[string, Record<string, string>]> = [
    ['TETHER_LOG_LEVEL', { TETHER_LOG_LEVEL: 'chatty' }],
    ['PORT', { PORT: 'eighty' }],
    ['PORT', { PORT: '70000' }],
    ['REDIS_URL', { REDIS_URL: 'http://redis:6379' }],
    ['TETHER_AUTH', { TETHER_AUTH: 'maybe' }],
    ['LOG_LEVEL', { LOG_LEVEL: 'loud' }],
    ['TETHER_API_TOKENS', { TETHER_API_TOKENS: 'just-a-token-without-name' }],
    ['TETHER_API_TOKENS', { TETHER_API_TOKENS: 'ci=short' }],
    ['TETHER_API_TOKENS', { TETHER_API_TOKENS: `ci=${TOKEN},ci=${TOKEN}2` }],
    ['TETHER_API_TOKENS_FILE', { TETHER_API_TOKENS_FILE: join(tmpdir(), 'tether-does-not-exist', 'tokens') }],
    ['TETHER_PROXY_TOKEN', { TETHER_PROXY_TOKEN: 'short' }],
    ['TETHER_PROXY_TOKEN', { TETHER_API_TOKENS: `ci=${TOKEN}`, TETHER_PROXY_TOKEN: TOKEN }],
    ['TETHER_REDIS_PREFIX', { TETHER_REDIS_PREFIX: 'has space' }],
    ['TETHER_LONG_POLL_MAX_SECONDS', { TETHER_LONG_POLL_MAX_SECONDS: '120' }],
  ]
  for (const [variable, env] of wrong) {
    it(`fails at start naming ${variable} for ${JSON.stringify(Object.values(env).at(-1))}`, () => {
      assert.throws(
        () => loadConfig(env),
        (err: unknown) => err instanceof EnvError && err.message.startsWith(`${variable}:`),
      )
    })
  }

  it('never prints a token in a configuration error', () => {
    assert.throws(
      () => loadConfig({ TETHER_PROXY_TOKEN: 'secret!' }),
      (err: unknown) => err instanceof Error && !err.message.includes('secret!'),
    )
  })
})
