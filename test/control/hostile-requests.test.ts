/**
 * Requests built to hurt the control plane: deeply nested JSON, bodies and headers trickled in
 * byte by byte, bytes Node's HTTP parser refuses. Each gets a 4xx in the one error shape, with a
 * code, and changes nothing; a long poll still waits as long as it asked.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it, type TestContext } from 'node:test'
import { buildApp } from '../../src/control/app.ts'
import { createMemoryRouteStore } from '../../src/control/store/memory-route-store.ts'
import { jsonDeeperThan, MAX_JSON_DEPTH } from '../../src/control/plugins/json-body.ts'
import { API_TOKEN, api, PROXY_TOKEN, startControl, type TestControl } from './harness.ts'

describe('jsonDeeperThan', () => {
  const cases: Array<[string, number, boolean]> = [
    ['{}', 1, false],
    ['{}', 0, true],
    ['[[1]]', 2, false],
    ['[[1]]', 1, true],
    ['{"a":[{"b":[]}]}', 4, false],
    ['{"a":[{"b":[]}]}', 3, true],
    ['["[[[[[[", "{{{{"]', 1, false], // brackets inside strings do not count
    ['["\\"[[[["]', 1, false], // nor after an escaped quote
    ['[1],[2],[3]', 1, false], // depth, not count
    ['"just a string"', 0, false],
  ]
  for (const [text, max, deeper] of cases) {
    it(`${JSON.stringify(text)} with max ${max}: ${deeper ? 'too deep' : 'fine'}`, () => {
      assert.equal(jsonDeeperThan(text, max), deeper)
    })
  }
})

describe('a JSON body nested deeper than the bound', () => {
  let shared: TestControl
  before(async () => {
    const store = createMemoryRouteStore()
    shared = { store, app: await buildApp({ store, auth: { apiTokens: new Map([[API_TOKEN, 'ci']]), proxyToken: PROXY_TOKEN } }) }
  })
  after(async () => {
    await shared.app.close()
    await shared.store.close()
  })
  for (const [name, body] of [
    ['5,000 nested arrays', `${'['.repeat(5000)}${']'.repeat(5000)}`],
    ['100,000 nested arrays', `${'['.repeat(100_000)}${']'.repeat(100_000)}`],
    ['5,000 nested objects', `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`],
    [`${MAX_JSON_DEPTH + 1} levels in a route's destinations`, JSON.stringify({ destinations: [{ servicePath: [`${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}`] }] }).replace(/"(\[+\]+)"/, '$1')],
  ] as const) {
    it(`answers 400 INVALID_BODY for ${name}, and stores nothing`, async () => {
      const { app, store } = shared
      const res = await app.inject({ method: 'PUT', url: '/v1/routes/go-demo', headers: { ...api, 'content-type': 'application/json' }, payload: body })
      assert.equal(res.statusCode, 400, res.body)
      assert.deepEqual(res.json(), { statusCode: 400, code: 'INVALID_BODY', error: 'Bad Request', message: `The JSON body is nested deeper than ${MAX_JSON_DEPTH} levels (objects and arrays)` })
      assert.equal(await store.version(), 0)
    })
  }

  it('still parses an ordinary route body (and still refuses __proto__)', async (t) => {
    const { app, store } = await startControl(t)
    const ok = await app.inject({ method: 'PUT', url: '/v1/routes/go-demo', headers: api, payload: { destinations: [{ servicePath: ['/demo'], port: 8080 }] } })
    assert.equal(ok.statusCode, 200, ok.body)
    const poisoned = await app.inject({
      method: 'PUT',
      url: '/v1/routes/other',
      headers: { ...api, 'content-type': 'application/json' },
      payload: '{"__proto__":{"x":1},"destinations":[{"servicePath":["/x"],"port":80}]}',
    })
    assert.equal(poisoned.statusCode, 400, poisoned.body)
    assert.equal(poisoned.json().code, 'INVALID_BODY')
    assert.equal(await store.version(), 1)
  })
})

/** A control plane listening on loopback; returns its port. */
async function listening(t: TestContext, requestTimeoutMs: number) {
  const control = await startControl(t, { requestTimeoutMs, longPollMaxSeconds: 5 })
  await control.app.listen({ port: 0, host: '127.0.0.1' })
  const address = control.app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return { ...control, port: address.port }
}

/** Reads everything the server sends until it closes the connection (bounded: 10 s). */
async function readUntilClosed(socket: Socket): Promise<string> {
  let text = ''
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')))
  socket.on('error', () => {})
  const closed = once(socket, 'close')
  const bound = sleep(10_000).then(() => {
    throw new Error(`connection still open after 10 s; got ${JSON.stringify(text)}`)
  })
  await Promise.race([closed, bound])
  return text
}

function jsonOf(response: string): Record<string, unknown> {
  return JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>
}

describe('slow and malformed requests on a listening control plane', () => {
  it('cuts a body trickled in one byte at a time with 408 REQUEST_TIMEOUT, and stores nothing', async (t) => {
    const { port, store } = await listening(t, 1000)
    const socket = connect(port, '127.0.0.1')
    await once(socket, 'connect')
    const body = JSON.stringify({ destinations: [{ servicePath: ['/demo'], port: 8080 }] })
    socket.write(`PUT /v1/routes/go-demo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${API_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`)
    const response = readUntilClosed(socket)
    let sent = 0
    // One byte every 100 ms: the whole body would take ~5 s; the bound is 1 s.
    const trickle = (async () => {
      for (; sent < body.length - 1 && !socket.destroyed; sent++) {
        socket.write(body[sent] as string)
        await sleep(100)
      }
    })()
    const text = await response
    await trickle
    assert.match(text, /^HTTP\/1\.1 408 /)
    assert.deepEqual(jsonOf(text), { statusCode: 408, code: 'REQUEST_TIMEOUT', error: 'Request Timeout', message: 'The request (headers and body) was not received in time; the connection is closed' })
    assert.ok(sent < body.length - 1, `cut before the body was complete (${sent} of ${body.length} bytes sent)`)
    assert.equal(await store.version(), 0)
  })

  it('cuts headers trickled in one line at a time', async (t) => {
    const { port } = await listening(t, 1000)
    const socket = connect(port, '127.0.0.1')
    await once(socket, 'connect')
    const response = readUntilClosed(socket)
    socket.write('GET /v1/routes HTTP/1.1\r\n')
    for (let i = 0; i < 50 && !socket.destroyed; i++) {
      socket.write(`X-Slow-${i}: 1\r\n`)
      await sleep(100)
    }
    const text = await response
    assert.match(text, /^HTTP\/1\.1 408 /)
    assert.equal(jsonOf(text).code, 'REQUEST_TIMEOUT')
  })

  it('lets a long poll wait its 3 s although requests must arrive within 1 s', async (t) => {
    const { port } = await listening(t, 1000)
    const started = Date.now()
    const res = await fetch(`http://127.0.0.1:${port}/v1/config?since=0&wait=3s`, { headers: { authorization: `Bearer ${PROXY_TOKEN}` } })
    // Cut by the 1 s request timeout, it would be a 408 REQUEST_TIMEOUT or a closed connection.
    assert.equal(res.status, 304, 'answered at the end of its wait, not cut by the request timeout')
    assert.match(res.headers.get('etag') ?? '', /^"?\d+"?$/)
    console.log(`MEASURED long poll with wait=3s and a 1 s request timeout: answered 304 after ${Date.now() - started} ms`)
  })

  it('answers a raw space, a control byte in the URL or a malformed request line with 400 MALFORMED_REQUEST in the error shape', async (t) => {
    const { port } = await listening(t, 5000)
    for (const requestLine of ['GET /v1/routes/go demo HTTP/1.1', 'GET /v1/routes/go\u0001demo HTTP/1.1', 'GET\u0000 / HTTP/1.1']) {
      const socket = connect(port, '127.0.0.1')
      await once(socket, 'connect')
      const response = readUntilClosed(socket)
      socket.write(Buffer.from(`${requestLine}\r\nHost: x\r\n\r\n`, 'latin1'))
      const text = await response
      assert.match(text, /^HTTP\/1\.1 400 /, JSON.stringify(requestLine))
      const body = jsonOf(text)
      assert.deepEqual(Object.keys(body).sort(), ['code', 'error', 'message', 'statusCode'])
      assert.equal(body.code, 'MALFORMED_REQUEST')
      assert.equal(body.statusCode, 400)
      assert.match(String(body.message), /could not be parsed/)
    }
  })

  it('answers headers over 16 KiB with 431 HEADERS_TOO_LARGE in the error shape', async (t) => {
    const { port } = await listening(t, 5000)
    const socket = connect(port, '127.0.0.1')
    await once(socket, 'connect')
    const response = readUntilClosed(socket)
    socket.write(`GET /v1/routes HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`)
    const text = await response
    assert.match(text, /^HTTP\/1\.1 431 /)
    assert.equal(jsonOf(text).code, 'HEADERS_TOO_LARGE')
  })
})
