import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createMemoryRouteStore } from '../../src/control/store/memory-route-store.ts'
import { api, proxy, startControl, waitFor } from './harness.ts'

const put = (name: string, path = `/${name}`) => ({ method: 'PUT' as const, url: `/v1/reconfigure?serviceName=${name}&servicePath=${path}&port=80`, headers: api })

describe('GET /v1/config', () => {
  it('answers the whole table at one version, routes sorted by service name, with the version as ETag', async (t) => {
    const { app } = await startControl(t)
    await app.inject(put('zeta'))
    await app.inject(put('alpha'))
    const res = await app.inject({ url: '/v1/config', headers: proxy })
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers.etag, '"2"')
    assert.equal(res.json().version, 2)
    assert.deepEqual(res.json().routes.map((r: { serviceName: string }) => r.serviceName), ['alpha', 'zeta'])
  })

  it('answers 304 to If-None-Match with the current ETag, and 200 once the version moved', async (t) => {
    const { app } = await startControl(t)
    await app.inject(put('a'))
    const first = await app.inject({ url: '/v1/config', headers: proxy })
    const again = await app.inject({ url: '/v1/config', headers: { ...proxy, 'if-none-match': String(first.headers.etag) } })
    assert.equal(again.statusCode, 304)
    assert.equal(again.body, '')
    await app.inject(put('b'))
    const moved = await app.inject({ url: '/v1/config', headers: { ...proxy, 'if-none-match': String(first.headers.etag) } })
    assert.equal(moved.statusCode, 200)
    assert.equal(moved.json().version, 2)
  })

  it('accepts API tokens as well as the proxy token, and nothing else', async (t) => {
    const { app } = await startControl(t)
    assert.equal((await app.inject({ url: '/v1/config', headers: api })).statusCode, 200)
    assert.equal((await app.inject({ url: '/v1/config' })).statusCode, 401)
    assert.equal((await app.inject({ url: '/v1/config', headers: { authorization: 'Bearer nope-nope-nope-nope' } })).statusCode, 401)
  })

  it('does not let the proxy token change routes', async (t) => {
    const { app, store } = await startControl(t)
    const res = await app.inject({ ...put('a'), headers: proxy })
    assert.equal(res.statusCode, 401)
    assert.equal(await store.version(), 0)
  })

  describe('long poll (?since=V&wait=S)', () => {
    it('answers at once when the version is already newer than since', async (t) => {
      const { app } = await startControl(t)
      await app.inject(put('a'))
      const res = await app.inject({ url: '/v1/config?since=0&wait=60s', headers: proxy })
      assert.equal(res.statusCode, 200)
      assert.equal(res.json().version, 1)
    })

    it('answers at the next change', async (t) => {
      const { app } = await startControl(t)
      await app.inject(put('a'))
      const waiting = app.inject({ url: '/v1/config?since=1&wait=60', headers: proxy })
      await waitFor(() => app.feed.waiters() === 1)
      await app.inject(put('b'))
      const res = await waiting
      assert.equal(res.statusCode, 200)
      assert.equal(res.json().version, 2)
      assert.equal(res.headers.etag, '"2"')
      assert.equal(app.feed.waiters(), 0)
    })

    it('answers 304 at the deadline when nothing changed', async (t) => {
      const { app } = await startControl(t)
      const res = await app.inject({ url: '/v1/config?since=0&wait=1s', headers: proxy })
      assert.equal(res.statusCode, 304)
      assert.equal(res.headers.etag, '"0"', 'the version the caller still holds')
      assert.equal(app.feed.waiters(), 0)
    })

    it('answers at once with the older table when the caller is ahead of the store (store restored), so it can resync', async (t) => {
      const { app } = await startControl(t)
      await app.inject(put('a'))
      const res = await app.inject({ url: '/v1/config?since=7&wait=60', headers: proxy })
      assert.equal(res.statusCode, 200)
      assert.equal(res.json().version, 1)
    })

    it('reads the snapshot once per version for all waiters, not once per waiter', async (t) => {
      const store = createMemoryRouteStore()
      let snapshots = 0
      const counting = { ...store, snapshot: () => (snapshots++, store.snapshot()) }
      t.after(() => store.close())
      const { app } = await startControl(t, { store: counting })
      const waiting = Array.from({ length: 50 }, () => app.inject({ url: '/v1/config?since=0&wait=60', headers: proxy }))
      await waitFor(() => app.feed.waiters() === 50)
      await app.inject(put('a'))
      const answers = await Promise.all(waiting)
      assert.deepEqual(new Set(answers.map((r) => r.statusCode)), new Set([200]))
      assert.ok(answers.every((r) => r.json().version === 1))
      assert.equal(snapshots, 1)
    })

    it('forgets a waiter whose client went away', async (t) => {
      const { app } = await startControl(t)
      const address = await app.listen({ port: 0, host: '127.0.0.1' })
      const controller = new AbortController()
      const pending = fetch(`${address}/v1/config?since=0&wait=60`, { headers: proxy, signal: controller.signal }).catch(() => 'aborted')
      await waitFor(() => app.feed.waiters() === 1)
      controller.abort()
      assert.equal(await pending, 'aborted')
      await waitFor(() => app.feed.waiters() === 0)
      assert.equal(app.feed.waiters(), 0)
    })

    it('answers every waiter 304 when the app closes, so shutdown does not wait a minute', async (t) => {
      const store = createMemoryRouteStore()
      t.after(() => store.close())
      const { app } = await startControl(t, { store })
      const waiting = app.inject({ url: '/v1/config?since=0&wait=60', headers: proxy })
      await waitFor(() => app.feed.waiters() === 1)
      await app.close()
      assert.equal((await waiting).statusCode, 304)
    })

    it('refuses wait without since, wait over 60 s, and wait over the configured maximum', async (t) => {
      const { app } = await startControl(t, { longPollMaxSeconds: 5 })
      for (const [q, text] of [
        ['wait=30', "needs 'since'"],
        ['since=0&wait=61', 'from 0 to 60'],
        ['since=0&wait=10s', 'at most 5 seconds'],
        ['since=-1&wait=1', 'since'],
      ] as const) {
        const res = await app.inject({ url: `/v1/config?${q}`, headers: proxy })
        assert.equal(res.statusCode, 400, q)
        assert.match(res.json().message, /^(wait|since):/, q)
        assert.ok(res.json().message.includes(text), `${q}: ${res.json().message}`)
      }
    })
  })
})

describe('GET /v1/changes', () => {
  it('lists changes after since, oldest first, with before/after, actor and source, without a token', async (t) => {
    const { app } = await startControl(t)
    await app.inject(put('a'))
    await app.inject(put('a', '/b'))
    await app.inject({ method: 'DELETE', url: '/v1/remove?serviceName=a', headers: api })
    const res = await app.inject({ url: '/v1/changes?since=1' })
    assert.equal(res.statusCode, 200)
    const { version, changes } = res.json()
    assert.equal(version, 3)
    assert.deepEqual(changes.map((c: { version: number; operation: string }) => [c.version, c.operation]), [
      [2, 'put'],
      [3, 'remove'],
    ])
    assert.deepEqual(changes[0].before.destinations[0].servicePath, ['/a'])
    assert.deepEqual(changes[0].after.destinations[0].servicePath, ['/b'])
    assert.equal(changes[1].after, null)
    assert.equal(changes[0].actor, 'ci')
    assert.equal(changes[0].source, 'api')
    assert.ok(!Number.isNaN(Date.parse(changes[0].time)))
  })

  it('honours limit', async (t) => {
    const { app } = await startControl(t)
    for (const n of ['a', 'b', 'c']) await app.inject(put(n))
    const res = await app.inject({ url: '/v1/changes?since=0&limit=2' })
    assert.deepEqual(res.json().changes.map((c: { serviceName: string }) => c.serviceName), ['a', 'b'])
  })
})

describe('POST /v1/config/rollback', () => {
  it('restores the table of an earlier version as a new version, logged as a rollback', async (t) => {
    const { app } = await startControl(t)
    await app.inject(put('a'))
    await app.inject(put('b'))
    await app.inject(put('a', '/changed'))
    const res = await app.inject({ method: 'POST', url: '/v1/config/rollback?to=1', headers: api })
    assert.equal(res.statusCode, 200, res.body)
    assert.deepEqual(res.json(), { version: 4, changed: 2 })
    const config = (await app.inject({ url: '/v1/config', headers: proxy })).json()
    assert.deepEqual(config.routes.map((r: { serviceName: string; destinations: Array<{ servicePath: string[] }> }) => [r.serviceName, r.destinations[0]?.servicePath[0]]), [['a', '/a']])
    const changes = (await app.inject({ url: '/v1/changes?since=3' })).json().changes
    assert.ok(changes.every((c: { source: string; rollbackTo: number }) => c.source === 'rollback' && c.rollbackTo === 1))
  })

  it('answers 404 VERSION_NOT_FOUND for a version that does not exist', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ method: 'POST', url: '/v1/config/rollback?to=7', headers: api })
    assert.equal(res.statusCode, 404)
    assert.equal(res.json().code, 'VERSION_NOT_FOUND')
  })

  it('needs an API token', async (t) => {
    const { app } = await startControl(t)
    assert.equal((await app.inject({ method: 'POST', url: '/v1/config/rollback?to=0' })).statusCode, 401)
    assert.equal((await app.inject({ method: 'POST', url: '/v1/config/rollback?to=0', headers: proxy })).statusCode, 401)
  })
})
