import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { loadProxyConfig, EnvError, formatListen } from '../../src/proxy/config.ts'
import { resolveSettings } from '../../src/proxy/haproxy/settings.ts'

const base = { TETHER_CONTROL_URL: 'http://tasks.control:8080', TETHER_PROXY_TOKEN: 'proxy-secret', TETHER_COOKIE_KEY: 'cookie-key-123' }
const opts = { hostname: () => 'node-7', readFile: (path: string) => (path === '/run/secrets/key' ? 'from-a-file\n' : (() => { throw new Error('ENOENT: no such file') })()) }

function refusal(env: Record<string, string>): EnvError {
  try {
    loadProxyConfig(env, opts)
  } catch (error) {
    assert.ok(error instanceof EnvError, String(error))
    return error
  }
  assert.fail('the configuration was accepted')
}

describe('tether proxy configuration (environment)', () => {
  it('a listener address means the same to the environment and to the engine: what one takes, the other takes; what one refuses, so does the other', () => {
    const engine = (listen: string): string => {
      try {
        resolveSettings({ stateDir: '/tmp/tether-state', cookieKey: 'cookie-key-123', listen })
        return 'accepted'
      } catch (error) {
        assert.match(String(error), /listen must be \[address\]:port/)
        return 'refused'
      }
    }
    const environment = (listen: string): string => {
      try {
        return formatListen(loadProxyConfig({ ...base, TETHER_PROXY_LISTEN: listen }, opts).proxyListen) === listen.replace(/^\*/, '') ? 'accepted' : 'changed'
      } catch (error) {
        assert.ok(error instanceof EnvError && error.variable === 'TETHER_PROXY_LISTEN', String(error))
        return 'refused'
      }
    }
    const accepted = [':80', '127.0.0.1:8080', '[::1]:8443', '*:65535']
    const refused = ['localhost:80', '127.0.0.1:0', ':65536', '127.0.0.1', '[::1]', 'http://127.0.0.1:80', '']
    for (const listen of accepted) assert.deepEqual([engine(listen), environment(listen)], ['accepted', 'accepted'], listen)
    for (const listen of refused.filter((l) => l !== '')) assert.deepEqual([engine(listen), environment(listen)], ['refused', 'refused'], listen)
    assert.equal(engine(''), 'refused', 'the engine given nothing')
  })

  it('fills the documented defaults', () => {
    const config = loadProxyConfig(base, opts)
    assert.deepEqual(config.controlUrls, ['http://tasks.control:8080'])
    assert.deepEqual(config.proxyListen, { host: undefined, port: 80 })
    assert.deepEqual(config.adminListen, { host: undefined, port: 8404 })
    assert.deepEqual(config.tlsListen, { host: undefined, port: 443 })
    assert.deepEqual(config.dns, { host: '127.0.0.11', port: 53 })
    assert.equal(config.proxyId, 'node-7')
    assert.equal(config.node, 'node-7')
    assert.equal(config.dnsIntervalMs, 1000)
    assert.equal(config.maxconn, undefined, 'the default maxconn, which the proxy may lower to fit its descriptor limit')
    assert.deepEqual(config.deprecations, [])
    assert.equal(config.stateDir, '/var/lib/tether')
    assert.deepEqual(config.certificateFiles, { secretsDir: '/run/secrets', dir: undefined }, "Docker secrets cert-* (DFP's convention), no directory")
  })

  it('accepts several control URLs, listeners with an address, numbers as text, and the Swarm task id', () => {
    const config = loadProxyConfig(
      { ...base, TETHER_CONTROL_URL: 'http://10.0.0.1:8080, http://10.0.0.2:8080/', TETHER_PROXY_LISTEN: '127.0.0.1:8081', TETHER_ADMIN_LISTEN: '[::1]:9000', TETHER_DNS_INTERVAL_MS: '250', TETHER_MAXCONN: '20000', TETHER_TASK_ID: 'x7k2', TETHER_NODE: 'manager-1' },
      opts,
    )
    assert.deepEqual(config.controlUrls, ['http://10.0.0.1:8080', 'http://10.0.0.2:8080/'])
    assert.deepEqual(config.proxyListen, { host: '127.0.0.1', port: 8081 })
    assert.deepEqual(config.adminListen, { host: '::1', port: 9000 })
    assert.equal(loadProxyConfig({ ...base, TETHER_PROXY_LISTEN_TLS: 'off' }, opts).tlsListen, null)
    assert.deepEqual(loadProxyConfig({ ...base, TETHER_PROXY_LISTEN_TLS: '127.0.0.1:8443' }, opts).tlsListen, { host: '127.0.0.1', port: 8443 })
    assert.throws(() => loadProxyConfig({ ...base, TETHER_PROXY_LISTEN_TLS: ':443x' }, opts), /TETHER_PROXY_LISTEN_TLS/)
    assert.equal(config.dnsIntervalMs, 250)
    assert.equal(config.maxconn, 20000)
    assert.equal(config.spareBackends, 8, 'spare backends by default')
    assert.equal(loadProxyConfig({ ...base, TETHER_SPARE_BACKENDS: '0' }, opts).spareBackends, 0)
    assert.equal(config.proxyId, 'x7k2')
    assert.equal(config.node, 'manager-1')
  })

  it('drains old connections for an hour and bounds old workers and each client address by default; 0 turns each off', () => {
    const config = loadProxyConfig(base, opts)
    assert.equal(config.drainTimeoutSeconds, 3600)
    assert.equal(config.maxOldWorkers, 10)
    assert.equal(config.clientMaxConnections, 1000)
    assert.equal(config.clientMaxRequestRate, 0, 'the request rate is not limited unless asked for')
    const off = loadProxyConfig({ ...base, TETHER_DRAIN_TIMEOUT: '0', TETHER_MAX_OLD_WORKERS: '0', TETHER_CLIENT_MAX_CONNECTIONS: '0', TETHER_CLIENT_MAX_REQUEST_RATE: '0' }, opts)
    assert.deepEqual([off.drainTimeoutSeconds, off.maxOldWorkers, off.clientMaxConnections, off.clientMaxRequestRate], [0, 0, 0, 0])
    assert.equal(loadProxyConfig({ ...base, TETHER_DRAIN_TIMEOUT: '90' }, opts).drainTimeoutSeconds, 90)
  })

  it('accepts TETHER_SLOTS, the removed slot count, with a deprecation warning and nothing else', () => {
    const config = loadProxyConfig({ ...base, TETHER_SLOTS: '32' }, opts)
    assert.equal(config.deprecations.length, 1)
    assert.match(config.deprecations[0]!, /TETHER_SLOTS is deprecated and ignored.*no slot limit/)
    assert.deepEqual({ ...config, deprecations: [] }, loadProxyConfig(base, opts))
  })

  it("takes LOG_FORMAT 'json' (default) or 'pretty', and refuses anything else naming it", () => {
    assert.equal(loadProxyConfig(base, opts).logFormat, 'json')
    assert.equal(loadProxyConfig({ ...base, LOG_FORMAT: 'pretty' }, opts).logFormat, 'pretty')
    assert.match(refusal({ ...base, LOG_FORMAT: 'yaml' }).message, /LOG_FORMAT/)
  })

  it('takes the stats password from TETHER_STATS_AUTH or its _FILE, and refuses one HAProxy would misread without echoing it', () => {
    assert.equal(loadProxyConfig(base, opts).statsAuth, undefined)
    assert.equal(loadProxyConfig({ ...base, TETHER_STATS_AUTH: 'stats:0123456789abcdef' }, opts).statsAuth, 'stats:0123456789abcdef')
    const fromFile = { ...opts, readFile: (path: string) => (path === '/run/secrets/stats' ? 'ops:0123456789abcdef\n' : opts.readFile(path)) }
    assert.equal(loadProxyConfig({ ...base, TETHER_STATS_AUTH_FILE: '/run/secrets/stats' }, fromFile).statsAuth, 'ops:0123456789abcdef')
    const bad = refusal({ ...base, TETHER_STATS_AUTH: 'stats:pass word#secret' })
    assert.match(bad.message, /TETHER_STATS_AUTH.*must be user:password/)
    assert.doesNotMatch(bad.message, /pass word/)
  })

  it('reads the cookie key from a file (Docker secret)', () => {
    const { TETHER_COOKIE_KEY: _, ...rest } = base
    assert.equal(loadProxyConfig({ ...rest, TETHER_COOKIE_KEY_FILE: '/run/secrets/key' }, opts).cookieKey, 'from-a-file')
  })

  for (const [name, env, variable, pattern] of [
    ['no control URL', { ...base, TETHER_CONTROL_URL: '' }, 'TETHER_CONTROL_URL', /^TETHER_CONTROL_URL: is required\. Control plane URL/],
    ['a control URL without scheme', { ...base, TETHER_CONTROL_URL: 'control:8080' }, 'TETHER_CONTROL_URL', /is not in the expected form \(got /],
    ['a control URL with a user and password (logged; the proxy token authenticates)', { ...base, TETHER_CONTROL_URL: 'http://10.0.0.1:8080, http://tether:pa55word@control:8080' }, 'TETHER_CONTROL_URL', /must not carry a user or password.*\(http:\/\/control:8080 is enough/],
    ['a control URL with a token in the query', { ...base, TETHER_CONTROL_URL: 'http://control:8080/?token=abcdef' }, 'TETHER_CONTROL_URL', /must not carry .* a query/],
    ['a listener without port', { ...base, TETHER_PROXY_LISTEN: '80' }, 'TETHER_PROXY_LISTEN', /is not in the expected form \(got "80"\). HTTP listener/],
    ['a port out of range', { ...base, TETHER_ADMIN_LISTEN: ':70000' }, 'TETHER_ADMIN_LISTEN', /is not in the expected form \(got /],
    ['a discovery interval that is not a number', { ...base, TETHER_DNS_INTERVAL_MS: 'often' }, 'TETHER_DNS_INTERVAL_MS', /integer/],
    ['a discovery interval above a minute', { ...base, TETHER_DNS_INTERVAL_MS: '120000' }, 'TETHER_DNS_INTERVAL_MS', /60000/],
    ['a maxconn of 0', { ...base, TETHER_MAXCONN: '0' }, 'TETHER_MAXCONN', /1/],
    ['more spare backends than 256', { ...base, TETHER_SPARE_BACKENDS: '300' }, 'TETHER_SPARE_BACKENDS', /256/],
    ['a drain timeout as a duration', { ...base, TETHER_DRAIN_TIMEOUT: '1h' }, 'TETHER_DRAIN_TIMEOUT', /integer/],
    ['a negative drain timeout', { ...base, TETHER_DRAIN_TIMEOUT: '-1' }, 'TETHER_DRAIN_TIMEOUT', /0/],
    ['a negative client connection limit', { ...base, TETHER_CLIENT_MAX_CONNECTIONS: '-5' }, 'TETHER_CLIENT_MAX_CONNECTIONS', /0/],
    ['more old workers than 1000', { ...base, TETHER_MAX_OLD_WORKERS: '5000' }, 'TETHER_MAX_OLD_WORKERS', /1000/],
    ['a DNS server given by name', { ...base, TETHER_DNS: 'dns.local:53' }, 'TETHER_DNS', /is not in the expected form \(got /],
    ['no cookie key', { TETHER_CONTROL_URL: base.TETHER_CONTROL_URL, TETHER_PROXY_TOKEN: 'x' }, 'TETHER_COOKIE_KEY', /same on every proxy replica/],
    ['a cookie key file that cannot be read', { TETHER_CONTROL_URL: base.TETHER_CONTROL_URL, TETHER_PROXY_TOKEN: 'x', TETHER_COOKIE_KEY_FILE: '/nope' }, 'TETHER_COOKIE_KEY_FILE', /cannot read '\/nope'/],
    ['a cookie key with a quote', { ...base, TETHER_COOKIE_KEY: 'abc"defgh' }, 'TETHER_COOKIE_KEY', /quotes/],
    ['no proxy token', { TETHER_CONTROL_URL: base.TETHER_CONTROL_URL, TETHER_COOKIE_KEY: base.TETHER_COOKIE_KEY }, 'TETHER_PROXY_TOKEN', /required/],
    ['a proxy id with a slash', { ...base, TETHER_PROXY_ID: 'a/b' }, 'TETHER_PROXY_ID', /is not in the expected form \(got /],
  ] as const) {
    it(`refuses ${name}, naming ${variable}`, () => {
      const error = refusal(env as Record<string, string>)
      assert.equal(error.variable, variable)
      assert.ok(error.message.startsWith(`${variable}: `), error.message)
      assert.match(error.message, pattern)
      for (const secret of ['pa55word', 'abcdef']) assert.ok(!error.message.includes(secret), `the message repeats a secret: ${error.message}`)
    })
  }
})
