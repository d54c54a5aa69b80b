/**
 * Pure post-processing of the generated OpenAPI document, for the people who read it in the
 * Swagger UI (and any other CommonMark renderer):
 *
 * - HTML-looking text in descriptions is escaped. OpenAPI descriptions are CommonMark, where
 *   `tasks.<serviceName>` is an HTML tag that the Swagger UI's sanitiser removes ("tasks.").
 *   Code spans are left alone: CommonMark prints them literally.
 * - An optional parameter keeps its example in its description, not in `example`: the
 *   Swagger UI's "Try it out" pre-fills every parameter that has an `example`, so executing
 *   with only the required fields would send (and store) the example domains and endpoints.
 *   Required parameters keep `example`, so "Try it out" starts from a request that works.
 * - Error answers get an example of their own code (the generated sample shows a 400's body
 *   under every status): the code is the first CODE_NAME in the answer's description.
 * - Request bodies get one realistic example each (the generated sample holds every optional
 *   field at once, e.g. both `servicePath` and `destinations`, which the API refuses).
 *
 * The input is not modified.
 */

import { STATUS_CODES } from 'node:http'

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
type JsonObject = { [key: string]: Json }

/** A request body that works, per operationId (a test executes each one). */
export const requestBodyExamples: Readonly<Record<string, JsonObject>> = {
  postReconfigure: { serviceName: 'go-demo', servicePath: ['/demo'], port: 8080, sticky: true },
  putRoute: { servicePath: ['/demo'], port: 8080, sticky: true },
}

/**
 * Outside code spans: a placeholder word (`tasks.<serviceName>`, `TETHER_<serviceName>`)
 * becomes a code span, which reads well both raw and rendered; any other `<` or `>` becomes
 * `&lt;` `&gt;`. `&` is left as the author wrote it.
 */
/**
 * Optional in the schema but needed by any request that works: Docker Flow Proxy's
 * `servicePath`/`port` may instead come as the indexed `servicePath.1`/`port.1` forms. These
 * keep their pre-filled example.
 */
const prefilledOptional: Readonly<Record<string, readonly string[]>> = {
  getDockerFlowProxyReconfigure: ['servicePath', 'port'],
  putDockerFlowProxyReconfigure: ['servicePath', 'port'],
  postDockerFlowProxyReconfigure: ['servicePath', 'port'],
  // servicePath is optional only for reqMode=tcp|sni; "Try it out" starts from an HTTP route.
  getReconfigure: ['servicePath'],
  putReconfigure: ['servicePath'],
}

/** What the API says for each error code (the sample of a 401 is a 401's message). */
const errorMessages: Readonly<Record<string, string>> = {
  VALIDATION_FAILED: `servicePath: "/a b" must start with '/' and hold only RFC 3986 path characters (letters, digits, - . _ ~ ! & ( ) * + ; = : @ and %XX escapes)`,
  UNKNOWN_PARAMETER: 'unknown parameter in the query: "servicepath" (accepted: serviceName, servicePath, port, ...)',
  UNAUTHORIZED: 'Missing or invalid bearer token',
  ROUTE_NOT_FOUND: "No route for service 'go-demo'",
  VERSION_NOT_FOUND: 'to: version 40 does not exist (current version is 12)',
  BODY_TOO_LARGE: 'The request body is larger than 1 MiB',
  ROUTE_CONFLICT:
    'servicePath: "/demo" is already served by service "go-demo-blue" (for any host); nothing was stored. Give this route another path or domain, remove "go-demo-blue"\'s route first, or repeat the request with takeover=true to move the path to "go-demo" (a blue-green switch)',
  STORE_UNAVAILABLE: 'The route store is unavailable. Nothing was changed; retry later.',
  CONVERGENCE_TIMEOUT:
    '1 of 3 live proxies did not apply version 12 within 30s: edge-2 (at version 11, node worker-2). The change itself is stored (version 12); those proxies will apply it when they catch up.',
}

function errorExample(status: number, description: string): JsonObject {
  const code = /\b([A-Z][A-Z0-9]*_[A-Z0-9_]+|UNAUTHORIZED)\b/.exec(description)?.[1] ?? (status === 404 ? 'NOT_FOUND' : 'ERROR')
  return { statusCode: status, code, error: STATUS_CODES[status] ?? 'Error', message: errorMessages[code] ?? description }
}

/** An example for a required parameter whose schema has none, per operationId. */
const requiredExamples: Readonly<Record<string, Readonly<Record<string, Json>>>> = {
  rollbackConfig: { to: 1 },
}

export function escapeHtmlInMarkdown(text: string): string {
  const placeholders = outsideCodeSpans(text, (part) => part.replace(/[\w.:/-]*<[A-Za-z][\w-]*>(?:[\w:/-]|\.(?=\w))*/g, (word) => `\`${word}\``))
  return outsideCodeSpans(placeholders, (part) => part.replace(/</g, '&lt;').replace(/>/g, '&gt;'))
}

/** Applies `change` to the text between code spans (backtick runs), leaving the spans as they are. */
function outsideCodeSpans(text: string, change: (part: string) => string): string {
  return text
    .split(/(`+[^`]*`+)/)
    .map((part, i) => (i % 2 === 1 ? part : change(part)))
    .join('')
}

function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function exampleText(value: Json): string {
  return typeof value === 'string' ? value : JSON.stringify(value)
}

function escapeDescriptions(node: Json): Json {
  if (Array.isArray(node)) return node.map(escapeDescriptions)
  if (!isObject(node)) return node
  const out: JsonObject = {}
  for (const [key, value] of Object.entries(node)) {
    out[key] = key === 'description' && typeof value === 'string' ? escapeHtmlInMarkdown(value) : escapeDescriptions(value)
  }
  return out
}

function unfillOptional(parameter: JsonObject): JsonObject {
  if (parameter.required === true) return parameter
  const schema = isObject(parameter.schema) ? { ...parameter.schema } : undefined
  const example = parameter.example ?? (schema?.examples as Json[] | undefined)?.[0] ?? schema?.example
  if (example === undefined || example === null) return parameter
  const { example: _dropped, ...rest } = parameter
  if (schema !== undefined) {
    delete schema.example
    delete schema.examples
    rest.schema = schema
  }
  const description = typeof rest.description === 'string' && rest.description.length > 0 ? `${rest.description} ` : ''
  rest.description = `${description}Example: \`${exampleText(example)}\``
  return rest
}

export function openApiForPeople<T extends object>(document: T): T {
  const doc = escapeDescriptions(structuredClone(document) as unknown as Json) as JsonObject
  const paths = isObject(doc.paths) ? doc.paths : {}
  for (const operations of Object.values(paths)) {
    if (!isObject(operations)) continue
    for (const operation of Object.values(operations)) {
      if (!isObject(operation)) continue
      if (Array.isArray(operation.parameters)) {
        const id = String(operation.operationId)
        const keep = prefilledOptional[id] ?? []
        const examples = requiredExamples[id] ?? {}
        operation.parameters = operation.parameters.map((p) => {
          if (!isObject(p)) return p
          const example = examples[String(p.name)]
          if (example !== undefined && p.required === true && p.example === undefined) return { ...p, example }
          return keep.includes(String(p.name)) ? p : unfillOptional(p)
        })
      }
      const example = typeof operation.operationId === 'string' ? requestBodyExamples[operation.operationId] : undefined
      const content = isObject(operation.requestBody) && isObject(operation.requestBody.content) ? operation.requestBody.content['application/json'] : undefined
      if (example !== undefined && isObject(content)) content.example = example
      for (const [status, response] of Object.entries(isObject(operation.responses) ? operation.responses : {})) {
        if (!isObject(response)) continue
        const json = isObject(response.content) ? response.content['application/json'] : undefined
        if (Number(status) < 400 || !isObject(json) || !isObject(json.schema) || json.schema.$ref !== '#/components/schemas/Error') continue
        json.example = errorExample(Number(status), typeof response.description === 'string' ? response.description : '')
      }
    }
  }
  return doc as unknown as T
}
