/**
 * Refusals say what is refused, in the one error shape: every pattern of the API has a human
 * rule (never ajv's bare "must match pattern"), an over-long path parameter and a bad
 * percent-encoding answer with a code, and a JSON body with __proto__ is named as such.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { describeSchemaError } from '../../src/control/input/schema-errors.ts'
import { api, sharedControl } from './harness.ts'

const shape = (body: Record<string, unknown>): string[] => Object.keys(body).sort()
const SHAPE = ['code', 'error', 'message', 'statusCode']

describe('validation messages', () => {
  const control = sharedControl()

  it('every pattern in the OpenAPI document fails with a rule in words, not the regular expression', () => {
    const doc = JSON.parse(readFileSync(new URL('../../openapi/openapi.json', import.meta.url), 'utf8')) as unknown
    const found: Array<{ field: string; pattern: string }> = []
    const walk = (node: unknown, field: string): void => {
      if (node === null || typeof node !== 'object') return
      const o = node as Record<string, unknown>
      if (typeof o.pattern === 'string') found.push({ field, pattern: o.pattern })
      // A query or path parameter is {name, schema}; a property is named by its key.
      const named = typeof o.name === 'string' && o.schema !== undefined ? o.name : field
      for (const [k, v] of Object.entries(o)) walk(v, k === 'items' || k === 'schema' || /^[0-9]+$/.test(k) || k === 'properties' ? named : k)
    }
    walk(doc, '')
    assert.ok(found.length >= 20, `patterns found: ${found.length}`)
    const raw: string[] = []
    for (const { field, pattern } of found) {
      const message = describeSchemaError({ keyword: 'pattern', instancePath: `/${field}`, params: { pattern }, message: `must match pattern "${pattern}"` }, { [field]: 'x y' })
      assert.match(message, new RegExp(`^${field}: "x y" `))
      if (/must match pattern|is not in the expected form/.test(message) || message.includes(pattern)) raw.push(`${field} ${pattern}: ${message}`)
    }
    assert.deepEqual(raw, [])
  })

  it('a user name, a header name and a certificate name name their rule through the API', async () => {
    const { app } = control()
    const put = async (payload: Record<string, unknown>) => (await app.inject({ method: 'PUT', url: '/v1/routes/app', headers: api, payload })).json() as Record<string, string>
    const user = await put({ servicePath: ['/a'], port: 80, auth: { users: [{ name: 'bad name', password: 'x' }] } })
    assert.equal(user.code, 'VALIDATION_FAILED')
    assert.equal(user.message, 'auth.users[0].name: "bad name" must be a user name of letters, digits and _ . @ + -, starting with a letter or digit, at most 64 characters')
    const header = await put({ servicePath: ['/a'], port: 80, addReqHeader: [{ name: 'X Bad', value: 'v' }] })
    assert.match(String(header.message), /^addReqHeader\[0\]\.name: "X Bad" must be an HTTP header name/)
    const cert = (await app.inject({ url: '/v1/certificates/bad!name', headers: api })).json() as Record<string, string>
    assert.equal(cert.message, `params name: "bad!name" must be letters, digits, '_', '.', '-', starting with a letter or digit, at most 128 characters`)
  })

  it('a 300-character certificate name: 400 naming the rule; a path segment over 1024 characters: 414 URI_TOO_LONG; bad percent-encoding: 400; all in the error shape', async () => {
    const { app } = control()
    const long = await app.inject({ url: `/v1/certificates/${'a'.repeat(300)}`, headers: api })
    assert.equal(long.statusCode, 400)
    assert.deepEqual(shape(long.json()), SHAPE)
    assert.equal(long.json().message, 'params name: must be at most 128 characters long')
    const huge = await app.inject({ method: 'PUT', url: `/v1/certificates/${'a'.repeat(2000)}`, headers: api })
    assert.equal(huge.statusCode, 414)
    assert.deepEqual(huge.json(), { statusCode: 414, code: 'URI_TOO_LONG', error: 'URI Too Long', message: 'A path segment is longer than 1024 characters; no name or id in this API is that long' })
    const bad = await app.inject({ url: '/v1/routes/%zz', headers: api })
    assert.equal(bad.statusCode, 400)
    assert.equal(bad.json().code, 'MALFORMED_REQUEST')
    assert.deepEqual(shape(bad.json()), SHAPE)
  })

  it('a JSON body with __proto__ (or constructor.prototype) is refused naming the key; broken JSON is still "not valid JSON"; nothing stored', async () => {
    const { app, store } = control()
    const send = async (payload: string) => {
      const res = await app.inject({ method: 'PUT', url: '/v1/routes/proto', headers: { ...api, 'content-type': 'application/json' }, payload })
      return { status: res.statusCode, body: res.json() as { code: string; message: string } }
    }
    const proto = await send('{"servicePath":["/p"],"port":80,"__proto__":{"isDefaultBackend":true}}')
    assert.equal(proto.status, 400)
    assert.equal(proto.body.code, 'INVALID_BODY')
    assert.match(proto.body.message, /^body: the key __proto__ is not allowed/)
    const ctor = await send('{"servicePath":["/p"],"port":80,"constructor":{"prototype":{"x":1}}}')
    assert.match(ctor.body.message, /^body: the key constructor \(holding prototype\) is not allowed/)
    const broken = await send('{"servicePath":')
    assert.equal(broken.status, 400)
    assert.match(broken.body.message, /not valid JSON/)
    assert.equal(await store.get('proto'), null)
    const fine = await send('{"servicePath":["/p"],"port":80}')
    assert.equal(fine.status, 200, 'the same route without the key is stored')
  })
})
