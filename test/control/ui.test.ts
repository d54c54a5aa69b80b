import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { EnvError, loadConfig } from '../../src/control/config.ts'
import { api, startControl, waitFor } from './harness.ts'

describe('GET /ui (the dashboard) and /', () => {
  it('redirects / and /ui to /ui/, and serves the page and its files with a same-origin-only CSP, without a token', async (t) => {
    const { app } = await startControl(t)
    for (const url of ['/', '/ui']) {
      const res = await app.inject({ url })
      assert.equal(res.statusCode, 302, url)
      assert.equal(res.headers.location, '/ui/')
    }
    const page = await app.inject({ url: '/ui/' })
    assert.equal(page.statusCode, 200)
    assert.match(String(page.headers['content-type']), /^text\/html/)
    assert.match(String(page.headers['content-security-policy']), /default-src 'none'; script-src 'self'/)
    assert.match(page.body, /<script type="module" src="dashboard.js">/)
    for (const [file, type] of [['dashboard.js', /^text\/javascript/], ['dashboard.css', /^text\/css/]] as const) {
      const res = await app.inject({ url: `/ui/${file}` })
      assert.equal(res.statusCode, 200, file)
      assert.match(String(res.headers['content-type']), type)
    }
    const missing = await app.inject({ url: '/ui/../package.json' })
    assert.equal(missing.statusCode, 404)
    assert.equal((await app.inject({ url: '/ui/nothing.js' })).json().code, 'NOT_FOUND')
  })

  it('tells the page the stats link template, the proxy TTL and whether actions need a token', async (t) => {
    const { app } = await startControl(t, { statsUrl: 'http://{node}:8404/stats', proxyTtlMs: 4000 })
    assert.deepEqual((await app.inject({ url: '/ui/settings.json' })).json(), { statsUrl: 'http://{node}:8404/stats', proxyTtlSeconds: 4, authEnabled: true })
    const { app: plain } = await startControl(t)
    assert.equal((await plain.inject({ url: '/ui/settings.json' })).json().statsUrl, null)
  })

  it('TETHER_STATS_URL must be an http(s) URL', () => {
    assert.equal(loadConfig({ TETHER_STATS_URL: 'http://{node}:8404/stats' }).statsUrl, 'http://{node}:8404/stats')
    assert.equal(loadConfig({}).statsUrl, undefined)
    assert.throws(() => loadConfig({ TETHER_STATS_URL: 'javascript:alert(1)' }), (e: unknown) => e instanceof EnvError && /^TETHER_STATS_URL/.test(e.message))
  })
})

describe('GET /v1/version', () => {
  it('answers the current version without a token', async (t) => {
    const { app } = await startControl(t)
    assert.deepEqual((await app.inject({ url: '/v1/version' })).json(), { version: 0, changed: true })
    await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=shop&servicePath=/shop&port=80', headers: api })
    assert.deepEqual((await app.inject({ url: '/v1/version?since=1' })).json(), { version: 1, changed: false })
    assert.deepEqual((await app.inject({ url: '/v1/version?since=0' })).json(), { version: 1, changed: true })
  })

  it('as a long poll, answers at the next change, or with changed: false when the wait ends', async (t) => {
    const { app } = await startControl(t)
    const waiting = app.inject({ url: '/v1/version?since=0&wait=30' })
    await waitFor(() => app.feed.waiters() === 1, 'the long poll to wait')
    const put = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=shop&servicePath=/shop&port=80', headers: api })
    assert.equal(put.statusCode, 200)
    assert.deepEqual((await waiting).json(), { version: 1, changed: true })
    assert.deepEqual((await app.inject({ url: '/v1/version?since=1&wait=0' })).json(), { version: 1, changed: false })
  })

  it("refuses wait without since, and a wait over the limit, naming the parameter", async (t) => {
    const { app } = await startControl(t, { longPollMaxSeconds: 10 })
    const noSince = await app.inject({ url: '/v1/version?wait=5' })
    assert.equal(noSince.statusCode, 400)
    assert.match(noSince.json().message, /^wait: needs 'since'/)
    const tooLong = await app.inject({ url: '/v1/version?since=0&wait=20' })
    assert.equal(tooLong.statusCode, 400)
    assert.match(tooLong.json().message, /^wait: "20" must be at most 10 seconds/)
  })
})
