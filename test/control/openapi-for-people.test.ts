import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { escapeHtmlInMarkdown, openApiForPeople } from '../../src/control/plugins/openapi-for-people.ts'
import { createCa, issue } from '../helpers/pki.ts'
import { api, startControl } from './harness.ts'

interface Parameter {
  name: string
  in: string
  required?: boolean
  example?: unknown
  description?: string
  schema?: { default?: unknown; example?: unknown; examples?: unknown[] }
}
interface Operation {
  operationId: string
  parameters?: Parameter[]
  requestBody?: { required?: boolean; content: Record<string, { example?: unknown }> }
}
type Doc = { paths: Record<string, Record<string, Operation>> }

describe('escapeHtmlInMarkdown', () => {
  const cases: Array<[string, string]> = [
    ['the proxy resolves tasks.<serviceName>).', 'the proxy resolves `tasks.<serviceName>`).'],
    ['default: TETHER_<serviceName>.', 'default: `TETHER_<serviceName>`.'],
    ['instead of tasks.<serviceName> DNS', 'instead of `tasks.<serviceName>` DNS'],
    ['a < b and c > d', 'a &lt; b and c &gt; d'],
    ['a < b `x` c', 'a &lt; b `x` c'],
    ['`Bearer <token>` stays as written', '`Bearer <token>` stays as written'],
    ['plain text', 'plain text'],
  ]
  for (const [input, expected] of cases) {
    it(`${JSON.stringify(input)} → ${JSON.stringify(expected)}`, () => assert.equal(escapeHtmlInMarkdown(input), expected))
  }
})

describe('openApiForPeople', () => {
  it('moves an optional parameter example into its description, keeps a required one, and leaves its input alone', () => {
    const input = {
      paths: {
        '/x': {
          put: {
            operationId: 'x',
            parameters: [
              { name: 'a', in: 'query', required: true, example: 'go-demo', schema: { type: 'string' } },
              { name: 'b', in: 'query', required: false, example: 'app.example.com', description: 'Host names.', schema: { type: 'string' } },
              { name: 'c', in: 'query', required: false, schema: { type: 'string', examples: ['30s'] } },
            ],
          },
        },
      },
    }
    const copy = structuredClone(input)
    const out = openApiForPeople(input) as unknown as Doc
    assert.deepEqual(input, copy, 'input unchanged')
    const [a, b, c] = out.paths['/x']!.put!.parameters!
    assert.equal(a!.example, 'go-demo')
    assert.equal(b!.example, undefined)
    assert.equal(b!.description, 'Host names. Example: `app.example.com`')
    assert.equal(c!.schema!.examples, undefined)
    assert.equal(c!.description, 'Example: `30s`')
  })
})

describe('the served OpenAPI document, as the Swagger UI uses it', () => {
  it('pre-fills no optional parameter, and every description is free of raw HTML', async (t) => {
    const { app } = await startControl(t)
    const doc = (await app.inject({ url: '/openapi.json' })).json() as Doc
    let optional = 0
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        for (const p of op.parameters ?? []) {
          // Docker Flow Proxy's servicePath/port: optional only because of the indexed forms; Tether's servicePath only for reqMode=tcp|sni.
          if (p.required === true || (op.operationId.includes('DockerFlowProxyReconfigure') && ['servicePath', 'port'].includes(p.name))) continue
          if (/^(?:get|put)Reconfigure$/.test(op.operationId) && p.name === 'servicePath') continue
          optional++
          assert.equal(p.example, undefined, `${method} ${path} ${p.name}: optional, but "Try it out" would pre-fill it`)
          assert.equal(p.schema?.examples, undefined, `${method} ${path} ${p.name}`)
        }
      }
    }
    assert.ok(optional > 10, `optional parameters were checked (${optional})`)
    const text = JSON.stringify(doc)
    const descriptions = [...text.matchAll(/"description":"((?:[^"\\]|\\.)*)"/g)].map((m) => JSON.parse(`"${m[1]}"`) as string)
    assert.ok(descriptions.some((d) => d.includes('`tasks.<serviceName>`')), 'the placeholder is a code span')
    for (const d of descriptions) {
      const outside = d.split(/`+[^`]*`+/).join(' ')
      assert.doesNotMatch(outside, /[<>]/, `raw HTML in: ${d}`)
    }
  })

  it('gives each error answer an example of its own status and code, not a 400 under every status', async (t) => {
    const { app } = await startControl(t)
    const doc = (await app.inject({ url: '/openapi.json' })).json() as { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { example?: { statusCode: number; code: string; error: string } }> }> }>> }
    const seen = new Set<string>()
    for (const ops of Object.values(doc.paths)) {
      for (const op of Object.values(ops)) {
        for (const [status, response] of Object.entries(op.responses)) {
          const example = response.content?.['application/json']?.example
          if (Number(status) < 400 || example === undefined) continue
          assert.equal(example.statusCode, Number(status))
          seen.add(`${status} ${example.code} ${example.error}`)
        }
      }
    }
    for (const expected of ['400 VALIDATION_FAILED Bad Request', '401 UNAUTHORIZED Unauthorized', '404 ROUTE_NOT_FOUND Not Found', '503 STORE_UNAVAILABLE Service Unavailable', '504 CONVERGENCE_TIMEOUT Gateway Timeout']) {
      assert.ok(seen.has(expected), `${expected} among ${[...seen].join('; ')}`)
    }
  })

  it('"Try it out" with the pre-filled values (examples of required parameters, and of the few that keep one, and body examples) succeeds for every operation that has them', async (t) => {
    const { app } = await startControl(t)
    const doc = (await app.inject({ url: '/openapi.json' })).json() as Doc
    const executed: string[] = []
    const skipped: string[] = []
    // A certificate body needs a real key, which the document does not carry: one is seeded instead.
    const exampleCert = await issue(await createCa(), ['example.com'])
    const notTriedByHand = new Set(['getProxyCertificates', 'putCertificate', 'putDockerFlowProxyCert'])
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        if (notTriedByHand.has(op.operationId)) {
          skipped.push(op.operationId)
          continue
        }
        const query = new URLSearchParams()
        let url = path
        let complete = true
        for (const p of op.parameters ?? []) {
          if (p.in === 'header') continue
          const value = p.example ?? p.schema?.default
          if (p.required !== true && value === undefined) continue
          if (value === undefined) complete = false
          else if (p.in === 'path') url = url.replace(`{${p.name}}`, String(value))
          else query.set(p.name, String(value))
        }
        const body = op.requestBody?.content['application/json']?.example
        if (op.requestBody?.required === true && body === undefined) complete = false
        if (!complete) {
          skipped.push(op.operationId)
          continue
        }
        // Every operation starts from a table where the example service is routed (removes need it).
        const seed = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=go-demo&servicePath=/demo&port=8080', headers: api })
        assert.equal(seed.statusCode, 200)
        const seedCert = await app.inject({ method: 'PUT', url: '/v1/certificates/example.com', headers: { ...api, 'content-type': 'application/x-pem-file' }, payload: exampleCert.combined })
        assert.equal(seedCert.statusCode, 200)
        const res = await app.inject({
          method: method.toUpperCase() as 'GET',
          url: query.size > 0 ? `${url}?${query}` : url,
          headers: api,
          ...(body === undefined ? {} : { payload: body as object }),
        })
        assert.ok(res.statusCode < 300, `${op.operationId} with its examples: ${res.statusCode} ${res.body.slice(0, 300)}`)
        executed.push(op.operationId)
      }
    }
    // The heartbeat and the certificate bundle are the proxies' own calls; certificate uploads need a key the document does not hold;
    // a restore needs a document from GET /v1/backup (an example would empty the table).
    assert.deepEqual(skipped.sort(), ['getProxyCertificates', 'putCertificate', 'putDockerFlowProxyCert', 'putProxyHeartbeat', 'restoreBackup'])
    for (const id of ['putReconfigure', 'postReconfigure', 'putRoute', 'deleteRemove', 'rollbackConfig', 'putDockerFlowProxyReconfigure']) assert.ok(executed.includes(id), `${id} executed`)
  })
})
