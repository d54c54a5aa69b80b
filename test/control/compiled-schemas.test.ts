/**
 * Compiled validators and serializers are shared by every app of a process (compiled-schemas.ts):
 * the same schema compiles once, anything that could change the compiled function compiles anew.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { referencedSchemas, sharedCompilers } from '../../src/control/compiled-schemas.ts'
import { api, startControl } from './harness.ts'

/** A compiler factory that counts what it compiles; its functions name their schema and context. */
function countingFactory() {
  const compiled: string[] = []
  const factory = (external: unknown, options: unknown) => (route: { schema: unknown; httpPart?: string; httpStatus?: string }) => {
    const name = `${JSON.stringify(route.schema)} ${route.httpPart ?? route.httpStatus} ${JSON.stringify([external, options])}`
    compiled.push(name)
    return () => name
  }
  return { compiled, factory }
}

const route = (schema: unknown, extra: { httpPart?: string; httpStatus?: string } = {}) => ({ schema, method: 'GET', url: '/x', ...extra })

describe('compiled schemas shared across apps', () => {
  it('compiles a schema once for every app with the same shared schemas and options', () => {
    const { compiled, factory } = countingFactory()
    const shared = sharedCompilers('validator', factory)
    const first = shared({ a: { $id: 'a' } }, { coerce: true })(route({ type: 'string' }, { httpPart: 'body' }))
    const second = shared({ a: { $id: 'a' } }, { coerce: true })(route({ type: 'string' }, { httpPart: 'body' }))
    assert.equal(second, first, 'the second app got the first function')
    assert.equal(compiled.length, 1)
  })

  it('compiles anew for another schema, part, status, shared schema set or option', () => {
    const { compiled, factory } = countingFactory()
    const shared = sharedCompilers('serializer', factory)
    const base = shared({}, {})
    const fns = [
      base(route({ type: 'string' }, { httpStatus: '200' })),
      base(route({ type: 'number' }, { httpStatus: '200' })),
      base(route({ type: 'string' }, { httpStatus: '400' })),
      shared({ a: { $id: 'a' } }, {})(route({ type: 'string' }, { httpStatus: '200' })),
      shared({}, { rounding: 'floor' })(route({ type: 'string' }, { httpStatus: '200' })),
    ]
    assert.equal(new Set(fns).size, 5)
    assert.equal(compiled.length, 5)
    assert.deepEqual(
      fns.map((f) => (f as () => string)()),
      compiled,
      'each function is the one compiled for its own schema',
    )
  })

  it('hands a serializer the shared schemas its answer refers to, directly or through another, and no other', () => {
    const shared = {
      Route: { $id: 'Route', type: 'object', properties: { tls: { $ref: 'Tls#' } } },
      Tls: { $id: 'Tls', type: 'object', properties: { cert: { $ref: 'Cert#/properties/name' } } },
      Cert: { $id: 'Cert', type: 'object', properties: { name: { type: 'string' } } },
      Unused: { $id: 'Unused', type: 'string' },
    }
    const answer = { type: 'object', properties: { routes: { type: 'array', items: { $ref: 'Route#' } }, local: { $ref: '#/definitions/x' } } }
    assert.deepEqual(Object.keys(referencedSchemas(answer, shared)).sort(), ['Cert', 'Route', 'Tls'])
    assert.deepEqual(referencedSchemas({ type: 'string' }, shared), {})
    const given: unknown[] = []
    const serializer = sharedCompilers('serializer', (external) => {
      given.push(external)
      return () => () => ''
    })
    serializer(shared, {})(route({ ...answer, title: 'unique to this test' }, { httpStatus: '200' }))
    assert.deepEqual(given, [{ Route: shared.Route, Tls: shared.Tls, Cert: shared.Cert }])
  })

  it('gives a second control plane the same validation and answers as the first', async (t) => {
    const answers = []
    for (let i = 0; i < 2; i++) {
      const { app } = await startControl(t)
      const bad = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=go-demo&servicePath=/demo&port=70000', headers: api })
      const good = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=go-demo&servicePath=/demo&port=8080', headers: api })
      const listed = await app.inject({ method: 'GET', url: '/v1/routes', headers: api })
      answers.push({ bad: [bad.statusCode, bad.json().message], good: good.statusCode, listed: listed.json().routes.map((r: { route: unknown }) => r.route) })
    }
    assert.equal(answers[0]?.bad[0], 400)
    assert.match(String(answers[0]?.bad[1]), /port/)
    assert.equal(answers[0]?.good, 200)
    assert.deepEqual(answers[0]?.listed, [{ serviceName: 'go-demo', destinations: [{ servicePath: ['/demo'], port: 8080 }], serviceDomain: [], sticky: false, endpoints: [] }])
    assert.deepEqual(answers[1], answers[0])
  })
})
