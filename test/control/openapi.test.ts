import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { describe, it } from 'node:test'
import SwaggerParser from '@apidevtools/swagger-parser'
import { openApiDocument, openApiText } from '../../scripts/write-openapi.ts'
import { startControl } from './harness.ts'

describe('GET /openapi.json', () => {
  it('serves exactly the committed openapi/openapi.json (run `npm run openapi` after changing a schema)', async () => {
    const committed = await readFile(new URL('../../openapi/openapi.json', import.meta.url), 'utf8')
    assert.equal(openApiText(await openApiDocument()), committed)
  })

  it('is a valid OpenAPI 3 document', async () => {
    const doc = await openApiDocument()
    await SwaggerParser.validate(structuredClone(doc) as never)
  })

  it('gives every operation a tag, an operationId and its error answers, and names the shared schemas', async (t) => {
    const { app } = await startControl(t)
    const doc = (await app.inject({ url: '/openapi.json' })).json() as {
      paths: Record<string, Record<string, { tags?: string[]; operationId?: string; responses: Record<string, unknown>; security?: unknown[] }>>
      components: { schemas: Record<string, unknown>; securitySchemes: Record<string, { scheme: string }> }
    }
    const ids = new Set<string>()
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        assert.ok(op.tags !== undefined && op.tags.length > 0, `${method} ${path} has no tag`)
        assert.ok(op.operationId !== undefined, `${method} ${path} has no operationId`)
        assert.ok(!ids.has(op.operationId), `operationId ${op.operationId} twice`)
        ids.add(op.operationId)
        if (op.security !== undefined) assert.ok('401' in op.responses, `${method} ${path} takes a token but documents no 401`)
      }
    }
    assert.equal(doc.components.securitySchemes.bearerAuth?.scheme, 'bearer')
    for (const name of ['Route', 'ConfigSnapshot', 'Change', 'Error', 'ProxyHeartbeat', 'ProxyStatus', 'ReconfigureAnswer']) assert.ok(name in doc.components.schemas, `no component ${name}`)
    // The paths the brief promises.
    for (const p of ['/v1/reconfigure', '/v1/remove', '/v1/docker-flow-proxy/reconfigure', '/v1/docker-flow-proxy/remove', '/v1/routes', '/v1/routes/{serviceName}', '/v1/config', '/v1/changes', '/v1/config/rollback', '/v1/proxies', '/v1/proxies/{id}', '/v1/status', '/healthz', '/readyz', '/metrics']) {
      assert.ok(p in doc.paths, `${p} missing from the document`)
    }
  })
})

describe('GET /docs', () => {
  it('serves the Swagger UI', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ url: '/docs/' })
    assert.equal(res.statusCode, 200)
    assert.match(res.body, /swagger-ui/i)
  })
})
