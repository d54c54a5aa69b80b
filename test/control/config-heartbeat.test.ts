/**
 * GET /v1/config long polls with heartbeats (`x-tether-heartbeat: 1`): what a proxy uses to
 * tell a hung control replica from one that has nothing new yet. Read over a real socket, byte
 * by byte as they arrive, since the point is *when* bytes come.
 */
import assert from 'node:assert/strict'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { describe, it } from 'node:test'
import { api, proxy, startControl, waitFor } from './harness.ts'

const put = (name: string) => ({ method: 'PUT' as const, url: `/v1/reconfigure?serviceName=${name}&servicePath=/${name}&port=80`, headers: api })

interface Streamed {
  status: number
  headers: IncomingMessage['headers']
  /** Each chunk as it came, with the time since the request (ms). */
  chunks: Array<{ at: number; text: string }>
  body: string
}

/** Sends a GET and resolves with the status and headers at once; `done` with the whole body. */
function get(base: string, path: string, headers: Record<string, string>): Promise<{ status: number; headers: IncomingMessage['headers']; chunks: Streamed['chunks']; done: Promise<Streamed> }> {
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { headers }, (res) => {
      const chunks: Streamed['chunks'] = []
      res.setEncoding('utf8')
      res.on('data', (text: string) => chunks.push({ at: performance.now() - started, text }))
      const done = new Promise<Streamed>((ok, fail) => {
        res.on('end', () => ok({ status: res.statusCode ?? 0, headers: res.headers, chunks, body: chunks.map((c) => c.text).join('') }))
        res.on('error', fail)
      })
      resolve({ status: res.statusCode ?? 0, headers: res.headers, chunks, done })
    })
    req.on('error', reject)
    req.end()
  })
}

describe('GET /v1/config long poll with heartbeats (x-tether-heartbeat: 1)', () => {
  it('answers 200 as soon as it waits, writes a space every 500 ms, then the snapshot of the next change', async (t) => {
    const { app } = await startControl(t)
    await app.inject(put('a'))
    const base = await app.listen({ port: 0, host: '127.0.0.1' })
    const poll = await get(base, '/v1/config?since=1&wait=60', { ...proxy, 'x-tether-heartbeat': '1' })
    // The status line came while the poll waits: nothing was written yet.
    assert.equal(poll.status, 200)
    assert.equal(poll.headers['x-tether-heartbeat'], '500')
    assert.equal(poll.headers.etag, undefined, 'no ETag: the version is not known yet')
    assert.equal(app.feed.waiters(), 1)
    // Three heartbeats (bounded wait), then a change.
    await waitFor(() => poll.chunks.length >= 3)
    assert.ok(poll.chunks.every((c) => c.text.trim() === ''), 'only whitespace while nothing changed')
    await app.inject(put('b'))
    const answer = await poll.done
    const at = answer.chunks.map((c) => Math.round(c.at))
    process.stdout.write(`MEASURED long-poll heartbeats: chunks at ${at.join(', ')} ms (interval 500 ms)\n`)
    const spaces = answer.body.match(/^ */)?.[0].length ?? 0
    assert.ok(spaces >= 3, `heartbeats before the answer: ${spaces} (${JSON.stringify(answer.chunks.map((c) => Math.round(c.at)))})`)
    const snapshot = JSON.parse(answer.body)
    assert.equal(snapshot.version, 2)
    assert.deepEqual(snapshot.routes.map((r: { serviceName: string }) => r.serviceName), ['a', 'b'])
    assert.equal(app.feed.waiters(), 0)
  })

  it('ends with {"changed":false,"version":V} when the wait ends without a change', async (t) => {
    const { app } = await startControl(t)
    await app.inject(put('a'))
    const base = await app.listen({ port: 0, host: '127.0.0.1' })
    const poll = await get(base, '/v1/config?since=1&wait=1', { ...proxy, 'x-tether-heartbeat': '1' })
    assert.equal(poll.status, 200)
    const answer = await poll.done
    assert.match(answer.body, /^ +\{/)
    assert.deepEqual(JSON.parse(answer.body), { changed: false, version: 1 })
  })

  it('answers at once as without heartbeats when the version already moved (200, snapshot, ETag)', async (t) => {
    const { app } = await startControl(t)
    await app.inject(put('a'))
    const res = await app.inject({ url: '/v1/config?since=0&wait=60', headers: { ...proxy, 'x-tether-heartbeat': '1' } })
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers.etag, '"1"')
    assert.equal(res.headers['x-tether-heartbeat'], '500')
    assert.equal(res.json().version, 1)
  })

  it('leaves clients that do not ask as they were: 304 with the ETag at the deadline, and says it can heartbeat', async (t) => {
    const { app } = await startControl(t)
    await app.inject(put('a'))
    const res = await app.inject({ url: '/v1/config?since=1&wait=1', headers: proxy })
    assert.equal(res.statusCode, 304)
    assert.equal(res.headers.etag, '"1"')
    assert.equal(res.body, '')
    assert.equal(res.headers['x-tether-heartbeat'], '500')
    const plain = await app.inject({ url: '/v1/config', headers: { ...proxy, 'if-none-match': '"1"' } })
    assert.equal(plain.statusCode, 304)
    assert.equal(plain.headers['x-tether-heartbeat'], '500')
  })

  it('refuses another value of x-tether-heartbeat with a 400 naming the header', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ url: '/v1/config?since=0&wait=1', headers: { ...proxy, 'x-tether-heartbeat': 'yes' } })
    assert.equal(res.statusCode, 400)
    assert.match(res.json().message, /x-tether-heartbeat/)
    assert.equal(app.feed.waiters(), 0)
  })
})
