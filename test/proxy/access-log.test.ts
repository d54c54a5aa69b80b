/**
 * The access log and the request id through a real HAProxy: a request, a WebSocket and a TCP
 * session each give one valid JSON line with the route, the task, the timings and the affinity
 * outcome, and no secret; hostile hosts, paths and headers still give valid JSON; the request id
 * is seen by client, backend and log; a log reader that does not read never holds a request up
 * (lines are dropped and counted instead). The log is read from a FIFO given to HAProxy as its
 * standard output, as the proxy gives it the container's; `tether proxy` itself is run last, its
 * standard output read as `docker service logs` reads it.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { closeSync, constants, openSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect, createServer, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it, type TestContext } from 'node:test'
import { request } from 'undici'
import { normalizeRoute } from '../../src/contracts/route.ts'
import { statePaths } from '../../src/proxy/haproxy/render.ts'
import { sendCommand } from '../../src/proxy/haproxy/runtime.ts'
import type { AccessLogSettings } from '../../src/proxy/haproxy/access-log.ts'
import { startBackend, startWebSocketTask, type Backend, type BackendReply } from '../helpers/backends.ts'
import { createTestProxy, route, waitFor, type TestProxy } from '../helpers/haproxy.ts'
import { freePort } from '../helpers/redis-server.ts'
import { PROXY_TOKEN, reconfigureQuery, startControl } from './harness.ts'

/** A FIFO: HAProxy writes the write end; the test reads the read end when it chooses to. */
async function logFifo(t: TestContext): Promise<{ writeFd: number; read(): void; lines(): string[]; text(): string }> {
  const dir = await mkdtemp(join(tmpdir(), 'tether-access-log-'))
  const path = join(dir, 'log.fifo')
  execFileSync('mkfifo', [path])
  const readFd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK)
  const writeFd = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK)
  let text = ''
  let socket: Socket | undefined
  t.after(async () => {
    socket?.destroy()
    if (socket === undefined) closeSync(readFd)
    closeSync(writeFd)
    await rm(dir, { recursive: true, force: true })
  })
  return {
    writeFd,
    read() {
      socket ??= new Socket({ fd: readFd, readable: true, writable: false }).setEncoding('utf8').on('data', (d: string) => (text += d))
    },
    lines: () => text.split('\n').filter((l) => l !== ''),
    text: () => text,
  }
}

const SETTINGS: AccessLogSettings = { format: 'json', proxyId: 'proxy-1', node: 'node "one"' }

async function loggingProxy(t: TestContext, fd: number, accessLog: AccessLogSettings = SETTINGS): Promise<TestProxy> {
  return createTestProxy(t, { accessLog, accessLogOutput: fd })
}

/** The lines (parsed: each must be valid JSON) that `match` selects, once there are `count` of them. */
async function logLines(log: { lines(): string[] }, count: number, match: (l: Record<string, unknown>) => boolean): Promise<Array<Record<string, unknown>>> {
  return waitFor(`${count} access log line(s)`, async () => {
    const parsed = log.lines().map((l) => JSON.parse(l) as Record<string, unknown>)
    const found = parsed.filter(match)
    return found.length >= count ? found : undefined
  })
}

/** One raw HTTP/1.1 request (bytes as given), the status code of the answer. */
function raw(port: number, bytes: Buffer): Promise<{ status: number; head: string }> {
  return new Promise((resolve, reject) => {
    let data = ''
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes))
    socket.setTimeout(10_000, () => socket.destroy(new Error('timeout')))
    socket.on('data', (d) => (data += d.toString('latin1')))
    socket.on('end', () => resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(data)?.[1] ?? 0), head: data.split('\r\n\r\n')[0] ?? '' }))
    socket.on('error', reject)
  })
}

const SECRETS = ['s3cret-token-value', 'Bearer', 'basic-secret', 'sid=', 'SERVERID=']

function assertNoSecret(text: string): void {
  for (const s of SECRETS) assert.ok(!text.includes(s), `the access log holds '${s}'`)
}

describe('access log through a real HAProxy', () => {
  it('a request gives one JSON line: route, task, timings, affinity, request id; no cookie, Authorization or query value; the request id reaches client, backend and log; traceparent passes untouched', async (t) => {
    const log = await logFifo(t)
    log.read()
    const [b1, b2] = [await startBackend({ name: 'task-a' }), await startBackend({ name: 'task-b' })]
    t.after(() => Promise.all([b1.close(), b2.close()]))
    const proxy = await loggingProxy(t, log.writeFd)
    const web = (endpoints: Backend[]) => normalizeRoute({ serviceName: 'web', destinations: [{ servicePath: ['/app', '/other'], port: 80 }], sticky: true, endpoints: endpoints.map((b) => b.address) })
    await proxy.engine.apply({ version: 1, routes: [web([b1])] })

    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
    const tracestate = 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7'
    const first = await request(`${proxy.url}/app/page?token=s3cret-token-value&page=2&flag`, {
      headers: { 'x-request-id': 'client-id.42', traceparent, tracestate, authorization: 'Bearer s3cret-token-value', cookie: 'sid=basic-secret' },
    })
    const seen = (await first.body.json()) as BackendReply
    assert.equal(first.statusCode, 200)
    assert.equal(first.headers['x-request-id'], 'client-id.42', 'the client gets its own request id back')
    assert.equal(seen.headers['x-request-id'], 'client-id.42', 'the backend gets the request id')
    assert.equal(seen.headers.traceparent, traceparent)
    assert.equal(seen.headers.tracestate, tracestate)
    const setCookies = ([] as string[]).concat(first.headers['set-cookie'] ?? [])
    // The proxy's affinity cookie (the backend sets its own session cookie, sid, beside it).
    const affinity = setCookies.map((c) => c.split(';')[0]!).find((c) => !c.startsWith('sid='))!
    assert.ok(affinity !== undefined, `an affinity cookie among ${setCookies.length} Set-Cookie`)
    SECRETS.push(affinity.slice(affinity.indexOf('=') + 1))

    const [line] = await logLines(log, 1, (l) => l.request_id === 'client-id.42')
    assert.ok(line !== undefined)
    console.log(`MEASURED access log line: ${JSON.stringify(line)}`)
    assert.match(String(line.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    assert.ok(Math.abs(Date.parse(String(line.time)) - Date.now()) < 60_000, 'time is now, in UTC')
    assert.deepEqual(
      { proxy: line.proxy, node: line.node, type: line.type, client_ip: line.client_ip, method: line.method, host: line.host, path: line.path, query: line.query, protocol: line.protocol, status: line.status, service: line.service, route_path: line.route_path, backend: line.backend, retries: line.retries },
      { proxy: 'proxy-1', node: 'node "one"', type: 'http', client_ip: '127.0.0.1', method: 'GET', host: `127.0.0.1:${proxy.port}`, path: '/app/page', query: 'token=[redacted]&page=[redacted]&flag', protocol: 'HTTP/1.1', status: 200, service: 'web', route_path: '/app', backend: 'svc_web_80', retries: '0' },
    )
    assert.equal(typeof line.client_port, 'number')
    for (const f of ['bytes_in', 'bytes_out', 'duration_ms', 'connect_ms', 'response_ms', 'queue_ms']) assert.equal(typeof line[f], 'number', f)
    assert.ok((line.bytes_out as number) > 0)
    assert.equal(line.tls_version, '-')
    assert.equal(line.sni, '')
    assert.match(String(line.server), /./)
    assert.notEqual(line.server, '<NOSRV>')
    assert.match(String(line.termination_state), /^--NI$/, 'a new affinity cookie')

    // Kept on its task; then its task gone: re-pinned with a new cookie.
    const again = await request(`${proxy.url}/other`, { headers: { cookie: affinity, 'x-request-id': 'second' } })
    await again.body.dump()
    const [kept] = await logLines(log, 1, (l) => l.request_id === 'second')
    assert.equal(kept?.termination_state, '--VN')
    assert.equal(kept?.route_path, '/other')
    await proxy.engine.apply({ version: 2, routes: [web([b2])] })
    const moved = await request(`${proxy.url}/app`, { headers: { cookie: affinity, 'x-request-id': 'third' } })
    await moved.body.dump()
    const [repinned] = await logLines(log, 1, (l) => l.request_id === 'third')
    assert.match(String(repinned?.termination_state), /^--[DI]I$/, 're-pinned: its task was gone, a new cookie')

    // A request id that is not a plain token of at most 128 characters is replaced.
    for (const bad of ['has space', 'x'.repeat(129), 'quote"d']) {
      const res = await request(`${proxy.url}/app`, { headers: { 'x-request-id': bad } })
      const reply = (await res.body.json()) as BackendReply
      const id = String(res.headers['x-request-id'])
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/, `a new id replaces '${bad.slice(0, 20)}'`)
      assert.equal(reply.headers['x-request-id'], id)
      await logLines(log, 1, (l) => l.request_id === id)
    }
    // HAProxy's own answers carry one too.
    const missing = await request(`${proxy.url}/nowhere`)
    await missing.body.dump()
    assert.equal(missing.statusCode, 404)
    const id = String(missing.headers['x-request-id'])
    const [notFound] = await logLines(log, 1, (l) => l.request_id === id)
    assert.equal(notFound?.status, 404)
    assert.equal(notFound?.service, '')
    assertNoSecret(log.text())
  })

  it('hostile hosts, paths and headers (quotes, backslashes, control characters, invalid UTF-8) still give one valid JSON line each', async (t) => {
    const log = await logFifo(t)
    log.read()
    const b = await startBackend({ name: 'task' })
    t.after(() => b.close())
    const proxy = await loggingProxy(t, log.writeFd)
    await proxy.engine.apply({ version: 1, routes: [route({ serviceName: 'web', paths: ['/'], endpoints: [b.address] })] })
    const requests = [
      Buffer.from('GET /a"b\\c/%22%5C?q="\\&x=1 HTTP/1.1\r\nHost: ev"il\\host\r\nX-Request-ID: h1\r\nConnection: close\r\n\r\n', 'latin1'),
      Buffer.from('GET /caf%C3%A9 HTTP/1.1\r\nHost: h\tx\x01\xff\xfe\xc3\xa9\xc3\r\nX-Request-ID: h2\r\nConnection: close\r\n\r\n', 'latin1'),
      Buffer.from(`GET /${'"'.repeat(3000)}?${'\\'.repeat(3000)} HTTP/1.1\r\nHost: ${'\\'.repeat(2000)}\r\nX-Request-ID: h3\r\nConnection: close\r\n\r\n`, 'latin1'),
      Buffer.from('GET /x HTTP/1.1\r\nHost: a\r\nX-Request-ID: h4\r\nX-Request-ID: h4b\r\nConnection: close\r\n\r\n', 'latin1'),
      Buffer.from('BREW /\x7f HTTP/1.1\r\n\r\n', 'latin1'),
    ]
    const statuses: number[] = []
    for (const r of requests) statuses.push((await raw(proxy.port, r)).status)
    console.log(`MEASURED hostile request statuses: ${statuses.join(' ')}`)
    // The second reaches the backend, whose own HTTP parser refuses a control character (400).
    assert.deepEqual([statuses[0], statuses[2]], [200, 200])
    const lines = await waitFor('a line per request', async () => (log.lines().length >= requests.length ? log.lines() : undefined))
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
    const byId = new Map(parsed.map((l) => [l.request_id, l]))
    assert.equal(byId.get('h1')?.host, 'ev"il\\host')
    assert.equal(byId.get('h1')?.path, '/a"b\\c/%22%5C')
    assert.equal(byId.get('h1')?.query, 'q=[redacted]&x=[redacted]')
    assert.equal(byId.get('h2')?.host, 'h\tx\u0001é', 'control characters escaped, invalid UTF-8 left out')
    assert.equal(byId.get('h2')?.path, '/caf%C3%A9')
    const long = byId.get('h3')
    assert.ok(long !== undefined && String(long.path).length === 2048 && String(long.host).length === 256, 'long values are cut, the line is whole')
    assert.ok(!byId.has('h4') && !byId.has('h4b'), 'two X-Request-ID headers: neither kept')
    assert.equal(parsed.filter((l) => l.type === 'http').length, parsed.length)
  })

  it('a WebSocket (HTTP Upgrade) and a TCP session each give one line; the TCP line has no HTTP fields', async (t) => {
    const log = await logFifo(t)
    log.read()
    // HAProxy writes the line when the session ends: the task closes its side when the client does.
    const wsAddress = await startWebSocketTask(t)
    const echo = createServer((s) => s.on('data', (d) => s.end(d)).on('error', () => undefined))
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve))
    t.after(() => new Promise<void>((resolve) => echo.close(() => resolve())))
    const echoPort = (echo.address() as { port: number }).port
    const srcPort = await freePort()
    const proxy = await loggingProxy(t, log.writeFd)
    await proxy.engine.apply({
      version: 1,
      routes: [
        route({ serviceName: 'chat', paths: ['/ws'], endpoints: [wsAddress] }),
        normalizeRoute({ serviceName: 'cache', destinations: [], tcp: [{ srcPort, port: echoPort }], endpoints: [`127.0.0.1:${echoPort}`] }),
      ],
    })
    // WebSocket: upgrade, one message each way, close.
    const upgraded = await new Promise<string>((resolve, reject) => {
      let data = ''
      const s = connect(proxy.port, '127.0.0.1', () =>
        s.write('GET /ws/room?key=s3cret-token-value HTTP/1.1\r\nHost: chat.local\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Request-ID: ws-1\r\n\r\n'),
      )
      s.setTimeout(10_000, () => s.destroy(new Error('timeout')))
      s.on('data', (d) => {
        data += d.toString('latin1')
        if (data.includes('\r\n\r\n') && !data.includes('ping')) s.write('ping')
        if (data.endsWith('ping')) s.destroy()
      })
      s.on('close', () => resolve(data))
      s.on('error', reject)
    })
    assert.match(upgraded, /^HTTP\/1\.1 101/)
    const [ws] = await logLines(log, 1, (l) => l.request_id === 'ws-1')
    assert.equal(ws?.status, 101)
    assert.equal(ws?.service, 'chat')
    assert.equal(ws?.route_path, '/ws')
    assert.equal(ws?.query, 'key=[redacted]')
    assert.ok((ws?.bytes_out as number) > 0)

    const answer = await new Promise<string>((resolve, reject) => {
      let data = ''
      const s = connect(srcPort, '127.0.0.1', () => s.write('hello tcp'))
      s.setTimeout(10_000, () => s.destroy(new Error('timeout')))
      s.on('data', (d) => (data += d.toString()))
      s.on('close', () => resolve(data))
      s.on('error', reject)
    })
    assert.equal(answer, 'hello tcp')
    const [tcp] = await logLines(log, 1, (l) => l.type === 'tcp')
    assert.ok(tcp !== undefined)
    assert.deepEqual(
      { proxy: tcp.proxy, service: tcp.service, backend: tcp.backend, frontend: tcp.frontend, bytes_in: tcp.bytes_in, bytes_out: tcp.bytes_out, sni: tcp.sni },
      { proxy: 'proxy-1', service: 'cache', backend: `tcp_cache_${srcPort}`, frontend: `tcp_${srcPort}`, bytes_in: 9, bytes_out: 9, sni: '' },
    )
    assert.match(String(tcp.termination_state), /^[-A-Za-z]{2}$/)
    for (const f of ['method', 'path', 'host', 'status', 'request_id', 'query']) assert.ok(!(f in tcp), `no ${f} in a TCP line`)
    assert.equal(log.lines().filter((l) => (JSON.parse(l) as { type: string }).type === 'tcp').length, 1, 'one line for the TCP session')
    assertNoSecret(log.text())
  })

  it('a log reader that does not read holds no request up: lines are dropped and counted, and logging resumes when it reads', async (t) => {
    const log = await logFifo(t) // not read yet: the pipe fills after a few dozen lines
    const b = await startBackend({ name: 'task' })
    t.after(() => b.close())
    const proxy = await loggingProxy(t, log.writeFd)
    await proxy.engine.apply({ version: 1, routes: [route({ serviceName: 'web', paths: ['/'], endpoints: [b.address] })] })
    const long = 'x'.repeat(1500)
    const started = Date.now()
    let ok = 0
    for (let i = 0; i < 400; i++) {
      const res = await request(`${proxy.url}/${long}/${i}`)
      await res.body.dump()
      if (res.statusCode === 200) ok++
    }
    console.log(`MEASURED 400 requests with a stalled log reader: ${Date.now() - started} ms`)
    assert.equal(ok, 400, 'every request answered while nobody read the log')
    const info = await sendCommand(statePaths(proxy.stateDir).adminSocket, 'show info')
    const dropped = Number(/^DroppedLogs: (\d+)$/m.exec(info)?.[1])
    console.log(`MEASURED dropped log lines: ${dropped}`)
    assert.ok(dropped > 0, 'dropped lines are counted')
    assert.ok(dropped < 400, 'the lines that fit the pipe were kept')
    log.read()
    const after = await request(`${proxy.url}/after`, { headers: { 'x-request-id': 'after-stall' } })
    await after.body.dump()
    await logLines(log, 1, (l) => l.request_id === 'after-stall')
    assert.equal(log.lines().length, 400 - dropped + 1, 'every line written is whole')
    const metrics = await request(`${proxy.adminUrl}/metrics`)
    assert.match(await metrics.body.text(), new RegExp(`^haproxy_process_dropped_logs_total ${dropped}$`, 'm'))
  })

  it('TETHER_ACCESS_LOG_QUERY=on writes query values as sent', async (t) => {
    const log = await logFifo(t)
    log.read()
    const b = await startBackend({ name: 'task' })
    t.after(() => b.close())
    const proxy = await loggingProxy(t, log.writeFd, { ...SETTINGS, query: true })
    await proxy.engine.apply({ version: 1, routes: [route({ serviceName: 'web', paths: ['/'], endpoints: [b.address] })] })
    await (await request(`${proxy.url}/q?page=2&sort=name`, { headers: { 'x-request-id': 'q' } })).body.dump()
    const [line] = await logLines(log, 1, (l) => l.request_id === 'q')
    assert.equal(line?.query, 'page=2&sort=name')
  })
})

describe('tether proxy writes the access log on its standard output', () => {
  it('by default, one JSON line a request, with its proxy id, beside the agent\'s own log', async (t) => {
    const control = await startControl(t)
    const b = await startBackend({ name: 'web-1' })
    t.after(() => b.close())
    const dir = await mkdtemp(join(tmpdir(), 'tether-main-log-'))
    const [port, admin] = [await freePort(), await freePort()]
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'proxy'], {
      env: {
        PATH: process.env.PATH ?? '',
        TETHER_CONTROL_URL: control.url,
        TETHER_PROXY_TOKEN: PROXY_TOKEN,
        TETHER_COOKIE_KEY: 'cookie-key-for-access-log-test',
        TETHER_PROXY_ID: 'log-test',
        TETHER_NODE: 'node-7',
        TETHER_PROXY_LISTEN: `127.0.0.1:${port}`,
        TETHER_ADMIN_LISTEN: `127.0.0.1:${admin}`,
        TETHER_PROXY_LISTEN_TLS: 'off',
        TETHER_STATE_DIR: dir,
        TETHER_DNS: '127.0.0.1:1',
        TETHER_LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.resume()
    t.after(async () => {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve))
        child.kill('SIGTERM')
        await exited
      }
      await rm(dir, { recursive: true, force: true })
    })
    const put = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'web', path: '/web', endpoints: [b.address] })}`)
    assert.equal(put.status, 200)
    await waitFor(
      'the route served',
      async () => {
        const res = await request(`http://127.0.0.1:${port}/web/x`, { headers: { 'x-request-id': 'from-main' } }).catch(() => undefined)
        await res?.body.dump()
        return res?.statusCode === 200 ? true : undefined
      },
      30_000,
      100,
    )
    const line = await waitFor('the access log line on stdout', async () => {
      const found = stdout
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.request_id === 'from-main')
      return found
    })
    assert.deepEqual({ proxy: line.proxy, node: line.node, service: line.service, route_path: line.route_path, status: line.status }, { proxy: 'log-test', node: 'node-7', service: 'web', route_path: '/web', status: 200 })
    assert.ok(stdout.split('\n').some((l) => l.includes('"msg":"tether proxy starting"')), "the agent's own log is there too")
  })
})
