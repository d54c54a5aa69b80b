import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ErrorCode } from '../../src/contracts/errors.ts'
import * as errors from '../../src/control/errors.ts'
import { api, startControl } from './harness.ts'

describe('error codes: one shared set of constants', () => {
  it('every coded error the control plane throws carries a code from ErrorCode, and each constant is its own name', () => {
    const values = new Set<string>(Object.values(ErrorCode))
    for (const [name, value] of Object.entries(ErrorCode)) assert.equal(value, name)
    const thrown: string[] = []
    for (const [name, ErrorClass] of Object.entries(errors)) {
      if (typeof ErrorClass !== 'function' || !name.endsWith('Error')) continue
      const code = (new (ErrorClass as new (...args: string[]) => Error & { code: string })('x')).code
      assert.ok(values.has(code), `${name} answers ${code}, which is not in ErrorCode`)
      thrown.push(code)
    }
    assert.ok(thrown.includes(ErrorCode.STORE_UNAVAILABLE) && thrown.includes(ErrorCode.VALIDATION_FAILED) && thrown.length >= 15, thrown.join(' '))
  })

  it('an answer carries the constant a client compares with', async (t) => {
    const { app } = await startControl(t)
    const missing = await app.inject({ method: 'GET', url: '/v1/routes/no-such-service', headers: api })
    assert.equal(missing.statusCode, 404)
    assert.equal(missing.json().code, ErrorCode.ROUTE_NOT_FOUND)
    const bad = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=web&servicePath=no-slash&port=8080', headers: api })
    assert.equal(bad.statusCode, 400)
    assert.equal(bad.json().code, ErrorCode.VALIDATION_FAILED)
    assert.match(bad.json().message, /servicePath/)
  })
})
