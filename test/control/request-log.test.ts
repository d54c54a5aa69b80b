import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { Writable } from 'node:stream'
import { describe, it } from 'node:test'
import pino from 'pino'
import { EnvError, loadConfig } from '../../src/control/config.ts'
import { isRoutine } from '../../src/control/plugins/request-log.ts'
import { api, heartbeat, proxy, startControl } from './harness.ts'

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
    assert.match(completed[0]!, /^PUT \/v1\/reconfigure\?serviceName=a&servicePath=\/a&port=80&users=\(redacted\) 200 /)
    assert.match(completed[1]!, /&us%65rs=\(redacted\)&realm=Private 200 /)
    assert.match(completed[2]!, /users=\(redacted\) 409 /)
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

describe('LOG_FORMAT', () => {
  it("TETHER_LOG_FORMAT (or LOG_FORMAT) is 'json' by default, 'pretty' on request, and anything else stops the control plane naming the variable", () => {
    assert.equal(loadConfig({}).logFormat, 'json')
    assert.equal(loadConfig({ TETHER_LOG_FORMAT: 'pretty' }).logFormat, 'pretty')
    assert.equal(loadConfig({ LOG_FORMAT: 'pretty' }).logFormat, 'pretty')
    assert.equal(loadConfig({ TETHER_LOG_FORMAT: 'json', LOG_FORMAT: 'pretty' }).logFormat, 'json')
    assert.throws(() => loadConfig({ TETHER_LOG_FORMAT: 'yaml' }), (e: unknown) => e instanceof EnvError && /^TETHER_LOG_FORMAT/.test(e.message))
    assert.throws(() => loadConfig({ LOG_FORMAT: 'yaml' }), (e: unknown) => e instanceof EnvError && /^LOG_FORMAT/.test(e.message))
  })

  it('pretty writes a human line (level, message) instead of JSON', async () => {
    const script = "import { createLogger } from './src/shared/create-logger.ts'; createLogger({ level: 'info' }, process.argv[1]).info({ version: 3 }, 'applied version 3')"
    const run = (format: string): string => execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, format], { cwd: new URL('../..', import.meta.url), encoding: 'utf8', timeout: 30_000 })
    const pretty = run('pretty')
    assert.match(pretty, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: applied version 3\n {4}version: 3\n$/)
    assert.deepEqual(Object.keys(JSON.parse(run('json')) as object).sort(), ['hostname', 'level', 'msg', 'pid', 'time', 'version'])
  })
})
