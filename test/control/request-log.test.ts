import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { Writable } from 'node:stream'
import { describe, it } from 'node:test'
import pino from 'pino'
import { EnvError, loadConfig } from '../../src/control/config.ts'
import { isRoutine } from '../../src/control/plugins/request-log.ts'
import { api, API_TOKEN, heartbeat, proxy, PROXY_TOKEN, startControl } from './harness.ts'

interface Line {
  level: number
  msg: string
  reqId?: string
}

function capture(level: string): { logger: pino.Logger; lines: Line[] } {
  const lines: Line[] = []
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const text of chunk.toString().split('\n')) if (text !== '') lines.push(JSON.parse(text) as Line)
      done()
    },
  })
  return { logger: pino({ level }, stream), lines }
}

describe('isRoutine', () => {
  const cases: Array<[string, string | undefined, number, boolean]> = [
    ['GET', '/healthz', 200, true],
    ['GET', '/v1/config', 304, true],
    ['PUT', '/v1/proxies/:id', 204, true],
    ['PUT', '/v1/proxies/:id', 400, false],
    ['GET', '/v1/routes/:serviceName', 404, false],
    ['PUT', '/v1/reconfigure', 200, false],
    ['POST', '/v1/config/rollback', 200, false],
    ['GET', '/readyz', 503, false],
  ]
  for (const [method, route, status, routine] of cases) {
    it(`${method} ${route} ${status} → ${routine ? 'debug' : 'info'}`, () => assert.equal(isRoutine(method, route, status), routine))
  }
})

describe('request logs', () => {
  it('never write a basic-auth password given in the query (users=name:password, also percent-encoded names), at any level', async (t) => {
    const { logger, lines } = capture('debug')
    const { app } = await startControl(t, { logger })
    const urls = [
      '/v1/reconfigure?serviceName=a&servicePath=/a&port=80&users=admin:s3cretA',
      '/v1/docker-flow-proxy/reconfigure?serviceName=b&servicePath=/b&port=80&us%65rs=admin:s3cretB&realm=Private',
      '/v1/docker-flow-proxy/reconfigure?serviceName=c&users=admin:s3cretC', // refused (nothing to route): logged too
    ]
    for (const url of urls) await app.inject({ method: url.includes('docker-flow') ? 'GET' : 'PUT', url, headers: api })
    const text = JSON.stringify(lines)
    assert.doesNotMatch(text, /s3cret/)
    const completed = lines.filter((l) => /^(GET|PUT) \/v1\//.test(l.msg)).map((l) => l.msg)
    assert.equal(completed.length, 3, text)
    assert.match(completed[0]!, /^PUT \/v1\/reconfigure\?serviceName=a&servicePath=\/a&port=80&users=\[redacted\] 200 /)
    assert.match(completed[1]!, /&us%65rs=\[redacted\]&realm=\[redacted\] 200 /)
    assert.match(completed[2]!, /users=\[redacted\] 409 /)
  })

  it('at info, an idle fleet (health checks, heartbeats, long polls, dashboard reads) writes nothing; a change writes one line', async (t) => {
    const { logger, lines } = capture('info')
    const { app } = await startControl(t, { logger })
    for (let i = 0; i < 3; i++) {
      assert.equal((await app.inject({ url: '/healthz' })).statusCode, 200)
      assert.equal((await app.inject({ method: 'PUT', url: '/v1/proxies/edge-1', headers: proxy, payload: heartbeat(0) })).statusCode, 204)
      assert.equal((await app.inject({ url: '/v1/config?since=0&wait=0', headers: proxy })).statusCode, 304)
      assert.equal((await app.inject({ url: '/v1/status' })).statusCode, 200)
    }
    assert.deepEqual(lines.map((l) => l.msg), [])
    const put = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=shop&servicePath=/shop&port=80', headers: api })
    assert.equal(put.statusCode, 200)
    assert.equal(lines.length, 1, JSON.stringify(lines))
    assert.match(lines[0]!.msg, /^PUT \/v1\/reconfigure\?serviceName=shop&servicePath=\/shop&port=80 200 \([0-9.]+ ms\)$/)
    assert.equal(lines[0]!.level, 30)
    assert.equal(lines[0]!.reqId, put.headers['x-request-id'], 'the answer names the request id of its log line')
  })

  it('at debug, the routine requests are there, one completed line each', async (t) => {
    const { logger, lines } = capture('debug')
    const { app } = await startControl(t, { logger })
    await app.inject({ url: '/healthz' })
    await app.inject({ method: 'PUT', url: '/v1/proxies/edge-1', headers: proxy, payload: heartbeat(0) })
    const completed = lines.filter((l) => / \([0-9.]+ ms\)$/.test(l.msg)).map((l) => l.msg.replace(/ \(.*$/, ''))
    assert.deepEqual(completed, ['GET /healthz 200', 'PUT /v1/proxies/edge-1 204'])
    assert.ok(lines.every((l) => l.level === 20), 'all at debug')
  })

  it('a refused request is logged at info with its reason', async (t) => {
    const { logger, lines } = capture('info')
    const { app } = await startControl(t, { logger })
    const res = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=shop&servicePath=/a%20b&port=80', headers: api })
    assert.equal(res.statusCode, 400)
    assert.ok(lines.some((l) => l.msg.startsWith('PUT /v1/reconfigure?serviceName=shop&servicePath=/a%20b&port=80 400')), JSON.stringify(lines))
  })
})

describe('secrets in requests never reach the log', () => {
  // Each appears in a request below and must be in no log line, at any level.
  const QUERY_TOKEN = 'qs-token-3f9a8b7c6d5e'
  const WRONG_BEARER = 'wrong-bearer-8a7b6c5d4e'
  const COOKIE = 'cookie-value-5e4d3c2b1a'
  const PASSWORD = 'users-passw0rd-6b5a'
  const HEADER_KEY = 'backend-api-key-7c6b5a'
  const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

  it('query values (but the public route parameters), Authorization and cookies: absent from every line, while each request has its line (method, path, parameter names, status)', async (t) => {
    const { logger, lines } = capture('debug')
    const { app } = await startControl(t, { logger })
    const route = 'serviceName=shop&servicePath=/shop&port=80'
    const requests: Array<{ method: 'GET' | 'PUT'; url: string; headers?: Record<string, string>; line: RegExp }> = [
      // the issue's case: a token in the query, refused
      { method: 'PUT', url: `/v1/reconfigure?${route}&token=${QUERY_TOKEN}`, line: /^PUT \/v1\/reconfigure\?serviceName=shop&servicePath=\/shop&port=80&token=\[redacted\] 401 / },
      { method: 'GET', url: `/v1/routes?access_token=${QUERY_TOKEN}`, line: /^GET \/v1\/routes\?access_token=\[redacted\] 200 / },
      { method: 'GET', url: `/v1/nowhere?token=${QUERY_TOKEN}`, line: /^GET \/v1\/nowhere\?token=\[redacted\] 404 / },
      { method: 'GET', url: `/v1/config?since=0&token=${encodeURIComponent(QUERY_TOKEN)}`, headers: { authorization: `Bearer ${PROXY_TOKEN}` }, line: /^GET \/v1\/config\?since=0&token=\[redacted\] 400 / },
      // Authorization: a wrong bearer, a wrong Basic password, the right ones
      { method: 'PUT', url: `/v1/reconfigure?${route}`, headers: { authorization: `Bearer ${WRONG_BEARER}` }, line: /^PUT \/v1\/reconfigure\?serviceName=shop&servicePath=\/shop&port=80 401 / },
      { method: 'PUT', url: `/v1/reconfigure?${route}`, headers: { authorization: basic('ci', WRONG_BEARER) }, line: /^PUT \/v1\/reconfigure\?serviceName=shop&servicePath=\/shop&port=80 401 / },
      { method: 'PUT', url: `/v1/reconfigure?${route}&sticky=true`, headers: { authorization: basic('ci', API_TOKEN), cookie: `tether=${COOKIE}; other=${COOKIE}` }, line: /^PUT \/v1\/reconfigure\?serviceName=shop&servicePath=\/shop&port=80&sticky=true 200 / },
      { method: 'GET', url: '/v1/config', headers: { authorization: `Bearer ${PROXY_TOKEN}`, cookie: `session=${COOKIE}` }, line: /^GET \/v1\/config 200 / },
      // a password and a header value that may be a backend's key, stored (200) and refused (400, the message quoting the value)
      { method: 'PUT', url: `/v1/reconfigure?${route}&users=admin:${PASSWORD}&addReqHeader=X-Api-Key%20${HEADER_KEY}`, headers: api, line: /^PUT \/v1\/reconfigure\?serviceName=shop&servicePath=\/shop&port=80&users=\[redacted\]&addReqHeader=\[redacted\] 200 / },
      { method: 'PUT', url: `/v1/reconfigure?${route}&addReqHeader=${HEADER_KEY}`, headers: api, line: /^PUT \/v1\/reconfigure\?serviceName=shop&servicePath=\/shop&port=80&addReqHeader=\[redacted\] 400 / },
      { method: 'PUT', url: `/v1/reconfigure?${route}&users=${PASSWORD}%00`, headers: api, line: /^PUT \/v1\/reconfigure\?serviceName=shop&servicePath=\/shop&port=80&users=\[redacted\] 400 / },
    ]
    const answers: string[] = []
    for (const r of requests) {
      const res = await app.inject({ method: r.method, url: r.url, headers: r.headers ?? {} })
      answers.push(`${res.statusCode} ${res.body.slice(0, 300)}`)
    }
    const messages = lines.map((l) => l.msg)
    for (const [i, r] of requests.entries()) assert.ok(messages.some((m) => r.line.test(m)), `no line ${r.line} for ${r.method} ${r.url} (answered ${answers[i]}):\n${messages.join('\n')}`)
    // A refusal's reason is logged, with what it quoted redacted.
    const refusals = lines.filter((l) => l.msg === 'request refused') as Array<Line & { code: string; message: string }>
    assert.ok(refusals.some((l) => l.code === 'VALIDATION_FAILED' && l.message.includes('addReqHeader') && l.message.includes('[redacted]')), JSON.stringify(refusals))
    assert.ok(answers.some((a) => a.startsWith('400') && a.includes(HEADER_KEY)), 'the answer itself may quote the value to its sender')
    const text = lines.map((l) => JSON.stringify(l)).join('\n')
    for (const secret of [QUERY_TOKEN, WRONG_BEARER, COOKIE, PASSWORD, HEADER_KEY, API_TOKEN, PROXY_TOKEN, Buffer.from(`ci:${API_TOKEN}`).toString('base64')]) {
      assert.ok(!text.includes(secret), `${secret} is in the log:\n${text.split('\n').filter((l) => l.includes(secret)).join('\n')}`)
    }
  })

  it('with a logger whose request serializer writes every header (pino.stdSerializers.req), Authorization and Cookie stay out', async (t) => {
    const { lines } = capture('debug')
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const text of chunk.toString().split('\n')) if (text !== '') lines.push(JSON.parse(text) as Line)
        done()
      },
    })
    const logger = pino({ level: 'debug', serializers: { req: pino.stdSerializers.req } }, stream)
    const { app } = await startControl(t, { logger })
    const res = await app.inject({ method: 'PUT', url: `/v1/reconfigure?serviceName=shop&servicePath=/shop&port=80&token=${QUERY_TOKEN}`, headers: { ...api, cookie: `s=${COOKIE}` } })
    assert.equal(res.statusCode, 400)
    const text = lines.map((l) => JSON.stringify(l)).join('\n')
    assert.match(text, /PUT \/v1\/reconfigure\?serviceName=shop&servicePath=\/shop&port=80&token=\[redacted\] 400/)
    for (const secret of [QUERY_TOKEN, COOKIE, API_TOKEN]) assert.ok(!text.includes(secret), `${secret} is in the log:\n${text}`)
  })
})

describe('TETHER_LOG_LEVEL and TETHER_LOG_FORMAT', () => {
  it("TETHER_LOG_FORMAT (or LOG_FORMAT) is 'json' by default, 'pretty' on request, and anything else stops the control plane naming the variable", () => {
    assert.equal(loadConfig({}).logFormat, 'json')
    assert.equal(loadConfig({ TETHER_LOG_FORMAT: 'pretty' }).logFormat, 'pretty')
    assert.equal(loadConfig({ LOG_FORMAT: 'pretty' }).logFormat, 'pretty')
    assert.equal(loadConfig({ TETHER_LOG_FORMAT: 'json', LOG_FORMAT: 'pretty' }).logFormat, 'json')
    assert.throws(() => loadConfig({ TETHER_LOG_FORMAT: 'yaml' }), (e: unknown) => e instanceof EnvError && /^TETHER_LOG_FORMAT/.test(e.message))
    assert.throws(() => loadConfig({ LOG_FORMAT: 'yaml' }), (e: unknown) => e instanceof EnvError && /^LOG_FORMAT/.test(e.message))
  })

  it('the docs document TETHER_LOG_LEVEL, the spelling every role reads without a warning, and LOG_LEVEL only as deprecated', () => {
    assert.deepEqual(loadConfig({ TETHER_LOG_LEVEL: 'debug' }).deprecations, [])
    assert.equal(loadConfig({ TETHER_LOG_LEVEL: 'debug' }).logLevel, 'debug')
    assert.match(loadConfig({ LOG_LEVEL: 'debug' }).deprecations.join('\n'), /LOG_LEVEL is deprecated: use TETHER_LOG_LEVEL/)
    // The settings tables of the control plane (docs/production.md) and of the proxy (docs/proxy.md).
    const pages = ['production.md', 'proxy.md'].map((page) => readFileSync(new URL(`../../docs/${page}`, import.meta.url), 'utf8'))
    // Rows of the environment tables, by the variables their first column names.
    const rows = pages.join('\n').split('\n').filter((l) => l.startsWith('| `'))
    const naming = (name: string): string[] => rows.filter((r) => (r.split('|')[1] ?? '').includes(`\`${name}\``))
    assert.equal(naming('TETHER_LOG_LEVEL').length, 2, 'the control plane table and the proxy table')
    assert.deepEqual(naming('LOG_LEVEL'), [], 'LOG_LEVEL is not documented as a setting')
    for (const row of naming('TETHER_LOG_LEVEL')) assert.match(row, /`LOG_LEVEL` is still read, with a deprecation warning/)
  })

  it('pretty writes a human line (level, message) instead of JSON', async () => {
    const script = "import { createLogger } from './src/shared/create-logger.ts'; createLogger({ level: 'info' }, process.argv[1]).info({ version: 3 }, 'applied version 3')"
    const run = (format: string): string => execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, format], { cwd: new URL('../..', import.meta.url), encoding: 'utf8', timeout: 30_000 })
    const pretty = run('pretty')
    assert.match(pretty, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: applied version 3\n {4}version: 3\n$/)
    assert.deepEqual(Object.keys(JSON.parse(run('json')) as object).sort(), ['hostname', 'level', 'msg', 'pid', 'time', 'version'])
  })
})
