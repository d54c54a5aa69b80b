/**
 * GET/PUT /v1/backup through the real app (buildApp, app.inject, the memory store): what the
 * document holds and hides, a restore into an empty control plane, idempotence, and refusals
 * that name the field and change nothing. The Redis-to-empty-Redis path with the CLI is
 * functional/backup-restore.test.ts.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { before, describe, it } from 'node:test'
import { normalizeRoute } from '../../src/contracts/route.ts'
import { createSecretBox } from '../../src/control/secret-box.ts'
import { createCa, issue, type Leaf } from '../helpers/pki.ts'
import { api, startControl } from './harness.ts'

const json = { ...api, 'content-type': 'application/json' }
const HASH = '$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/'

let web: Leaf
before(async () => {
  web = await issue(await createCa(), ['web.example.com'])
})

const box = () => createSecretBox(randomBytes(32))

/** A control plane with a table: two API routes (one with basic auth), a discovery route, a certificate. */
async function populated(t: Parameters<typeof startControl>[0], secretBox = box()) {
  const control = await startControl(t, { secretBox })
  const put = async (url: string, payload: unknown) => {
    const res = await control.app.inject({ method: 'PUT', url, headers: json, payload: payload as object })
    assert.equal(res.statusCode, 200, res.body)
  }
  await put('/v1/routes/shop', { servicePath: ['/shop'], port: 8080, serviceDomain: ['web.example.com'], sticky: true, auth: { users: [{ name: 'alice', passwordHash: HASH }] } })
  await put('/v1/routes/api', { servicePath: ['/api'], port: 9000 })
  await put('/v1/certificates/web', { certificate: web.chain, key: web.key })
  const dfp = await control.app.inject({ method: 'PUT', url: '/v1/docker-flow-proxy/reconfigure?serviceName=legacy&servicePath=/legacy&port=80&aclName=01-legacy', headers: api })
  assert.equal(dfp.statusCode, 200, dfp.body)
  await control.store.put(normalizeRoute({ serviceName: 'labels', destinations: [{ servicePath: ['/labels'], port: 80 }] }), { actor: 'discovery', source: 'discovery' })
  return control
}

describe('GET /v1/backup', () => {
  it('holds every route with its owner and every certificate with its key sealed, never in clear; it needs an API token', async (t) => {
    const { app } = await populated(t)
    assert.equal((await app.inject({ url: '/v1/backup' })).statusCode, 401)
    const res = await app.inject({ url: '/v1/backup', headers: api })
    assert.equal(res.statusCode, 200, res.body)
    const doc = res.json()
    assert.equal(doc.format, 'tether-backup/1')
    assert.deepEqual(
      doc.routes.map((r: { route: { serviceName: string }; source: string }) => [r.route.serviceName, r.source]),
      [
        ['api', 'api'],
        ['labels', 'discovery'],
        ['legacy', 'dfp'],
        ['shop', 'api'],
      ],
    )
    assert.equal(doc.routes[2].route.aclName, '01-legacy')
    assert.equal(doc.routes[3].route.auth.users[0].passwordHash, HASH)
    assert.equal(doc.certificates.length, 1)
    assert.equal(doc.certificates[0].fingerprint, web.fingerprint)
    assert.match(doc.certificates[0].keyBox, /^v1:[0-9a-f]{8}:/)
    const keyBody = web.key.split('\n').filter((l) => l !== '' && !l.startsWith('-----'))[0] as string
    assert.ok(!res.body.includes('PRIVATE KEY') && !res.body.includes(keyBody), 'no private key in clear')
  })
})

describe('PUT /v1/backup', () => {
  it('restores the table into an empty control plane as one version, recorded with the actor; the same document again changes nothing', async (t) => {
    const secretBox = box()
    const source = await populated(t, secretBox)
    const doc = (await source.app.inject({ url: '/v1/backup', headers: api })).json()
    const target = await startControl(t, { secretBox })
    const first = await target.app.inject({ method: 'PUT', url: '/v1/backup', headers: json, payload: doc })
    assert.equal(first.statusCode, 200, first.body)
    const answer = first.json()
    assert.deepEqual([answer.changed, answer.routes.put, answer.routes.removed, answer.certificates.stored], [true, ['api', 'labels', 'legacy', 'shop'], [], ['web']])
    const routesOf = async (app: typeof target.app) => (await app.inject({ url: '/v1/routes', headers: api })).json().routes.map((r: { route: unknown; source: string }) => [r.route, r.source])
    assert.deepEqual(await routesOf(target.app), await routesOf(source.app))
    const log = (await target.app.inject({ url: '/v1/changes?since=0', headers: api })).json().changes
    // The certificate took version 1, the routes one version together.
    assert.deepEqual(
      log.map((c: { version: number; serviceName: string; actor: string; note?: string }) => [c.version, c.serviceName, c.actor, c.note?.startsWith('restore of a backup taken at')]),
      [
        [2, 'api', 'ci', true],
        [2, 'labels', 'ci', true],
        [2, 'legacy', 'ci', true],
        [2, 'shop', 'ci', true],
      ],
    )
    const cert = (await target.app.inject({ url: '/v1/certificates/web', headers: api })).json()
    assert.equal(cert.fingerprint, web.fingerprint)

    const again = await target.app.inject({ method: 'PUT', url: '/v1/backup', headers: json, payload: doc })
    assert.equal(again.statusCode, 200, again.body)
    assert.deepEqual([again.json().changed, again.json().version, again.json().routes.unchanged, again.json().certificates.unchanged], [false, answer.version, 4, 1])
  })

  it('removes the routes the document does not hold, and keeps those equal to it', async (t) => {
    const secretBox = box()
    const source = await populated(t, secretBox)
    const doc = (await source.app.inject({ url: '/v1/backup', headers: api })).json()
    await source.app.inject({ method: 'PUT', url: '/v1/routes/extra', headers: json, payload: { servicePath: ['/extra'], port: 80 } })
    await source.app.inject({ method: 'PUT', url: '/v1/routes/api', headers: json, payload: { servicePath: ['/api'], port: 9001 } })
    const res = await source.app.inject({ method: 'PUT', url: '/v1/backup', headers: json, payload: doc })
    assert.equal(res.statusCode, 200, res.body)
    assert.deepEqual([res.json().routes.put, res.json().routes.removed, res.json().routes.unchanged], [['api'], ['extra'], 3])
    const routes = (await source.app.inject({ url: '/v1/routes' })).json().routes
    assert.deepEqual(
      routes.map((r: { route: { serviceName: string; destinations: Array<{ port: number }> } }) => [r.route.serviceName, r.route.destinations[0]?.port]),
      [
        ['api', 9000],
        ['labels', 80],
        ['legacy', 80],
        ['shop', 8080],
      ],
    )
  })

  describe('refusals name the field and change nothing', () => {
    // biome-ignore lint/suspicious/noExplicitAny: each case edits the JSON document where it likes
    const cases: Array<{ name: string; edit: (doc: any) => void; status: number; message: RegExp }> = [
      { name: 'a route that breaks a write rule', edit: (d) => (d.routes[0].route.destinations[0].servicePath = ['no-slash']), status: 400, message: /routes\/0\/route\/destinations\/0\/servicePath\/0|routes\[0\]\.route\..*servicePath/ },
      { name: 'a route not in the stored form (it would change)', edit: (d) => (d.routes[0].route.destinations[0].servicePath = ['/api', '/api/']), status: 400, message: /routes\[0\]\.route\.destinations: is not in the form Tether stores/ },
      { name: 'a service twice', edit: (d) => d.routes.push(structuredClone(d.routes[0])), status: 400, message: /routes\[4\]\.route\.serviceName: "api" is also routes\[0\]/ },
      {
        name: "two API routes on one path (the planner's conflict)",
        edit: (d) => d.routes.push({ route: normalizeRoute({ serviceName: 'thief', destinations: [{ servicePath: ['/api'], port: 1 }] }), source: 'api' }),
        status: 409,
        message: /\/api/,
      },
      { name: 'an unknown format', edit: (d) => (d.format = 'tether-backup/9'), status: 400, message: /format/ },
      { name: 'a tampered key', edit: (d) => (d.certificates[0].keyBox = d.certificates[0].keyBox.slice(0, -4) + 'AAAA'), status: 400, message: /certificates\[0\]\.keyBox: the key of "web" cannot be opened here/ },
    ]
    for (const c of cases) {
      it(c.name, async (t) => {
        const secretBox = box()
        const source = await populated(t, secretBox)
        const doc = (await source.app.inject({ url: '/v1/backup', headers: api })).json()
        c.edit(doc)
        const target = await startControl(t, { secretBox })
        await target.app.inject({ method: 'PUT', url: '/v1/routes/keep', headers: json, payload: { servicePath: ['/keep'], port: 80 } })
        const res = await target.app.inject({ method: 'PUT', url: '/v1/backup', headers: json, payload: doc })
        assert.equal(res.statusCode, c.status, res.body)
        assert.match(res.json().message, c.message)
        const after = await target.app.inject({ url: '/v1/routes' })
        assert.deepEqual([after.json().version, after.json().routes.map((r: { route: { serviceName: string } }) => r.route.serviceName)], [1, ['keep']])
        assert.equal((await target.app.inject({ url: '/v1/certificates/web', headers: api })).statusCode, 404)
      })
    }

    it('a key sealed with another TETHER_SECRET_KEY_FILE: says so and how to restore', async (t) => {
      const source = await populated(t, box())
      const doc = (await source.app.inject({ url: '/v1/backup', headers: api })).json()
      const target = await startControl(t, { secretBox: box() })
      const res = await target.app.inject({ method: 'PUT', url: '/v1/backup', headers: json, payload: doc })
      assert.equal(res.statusCode, 400, res.body)
      assert.match(res.json().message, /certificates\[0\]\.keyBox: .*sealed with another secret key.*Restore with the backup's TETHER_SECRET_KEY_FILE/)
      assert.equal((await target.app.inject({ url: '/v1/routes' })).json().version, 0)
    })
  })
})
