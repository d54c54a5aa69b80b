/**
 * Compiled validators and serializers, kept for the life of the process and shared by every
 * app buildApp makes in it.
 *
 * Compiling the routes' schemas (ajv for requests, fast-json-stringify for answers) is most of
 * the time Fastify's `ready()` takes: seconds on a busy host. A server builds one app and gains
 * nothing; a test file builds dozens and gained minutes. A compiled function depends only on
 * what it was compiled from (the schema, the part of the request or the answer's status and
 * content type, the shared schemas and the compiler's options), so that text is the key: the
 * same text gets the same function, any difference compiles anew. Functions in the options
 * (ajv plugins) are not part of the text: buildApp passes none.
 *
 * fast-json-stringify checks every shared schema it is given against the JSON Schema
 * meta-schema on each answer schema it compiles (dozens of shared schemas times hundreds of
 * answers); a serializer is given only the shared schemas its answer refers to, directly or
 * through another, which is all it can use.
 */

/** What Fastify hands a compiler for one route (its validator- and serializer-compiler input). */
interface RouteSchema {
  schema: unknown
  method: string
  url: string
  httpPart?: string
  httpStatus?: string
  contentType?: string
}

type Compiler = (route: RouteSchema) => unknown
/** Fastify's `schemaController.compilersFactory.buildValidator` / `buildSerializer` shape. */
type CompilerFactory = (externalSchemas: unknown, options: unknown) => Compiler

const compiled = new Map<string, unknown>()
const contexts = new Map<string, number>()

/** The shared schemas (by $id) that `schema` refers to with `$ref: '<id>#...'`, directly or through another. */
export function referencedSchemas(schema: unknown, shared: Record<string, unknown>): Record<string, unknown> {
  const found: Record<string, unknown> = {}
  const pending: unknown[] = [schema]
  for (let node = pending.pop(); node !== undefined || pending.length > 0; node = pending.pop()) {
    if (node === null || typeof node !== 'object') continue
    for (const [key, value] of Object.entries(node)) {
      if (key !== '$ref' || typeof value !== 'string') {
        pending.push(value)
        continue
      }
      const id = value.split('#')[0] ?? ''
      if (id !== '' && Object.hasOwn(shared, id) && !Object.hasOwn(found, id)) {
        found[id] = shared[id]
        pending.push(shared[id])
      }
    }
  }
  return found
}

/** `factory`, returning for a schema compiled before (in any app of this process) the same function. */
export function sharedCompilers(kind: 'validator' | 'serializer', factory: CompilerFactory): CompilerFactory {
  return (externalSchemas, options) => {
    const contextText = JSON.stringify([kind, externalSchemas, options])
    let context = contexts.get(contextText)
    if (context === undefined) {
      context = contexts.size
      contexts.set(contextText, context)
    }
    let compile: Compiler | undefined
    return (route) => {
      const key = `${context} ${route.httpPart ?? ''} ${route.httpStatus ?? ''} ${route.contentType ?? ''} ${JSON.stringify(route.schema)}`
      let fn = compiled.get(key)
      if (fn === undefined) {
        if (kind === 'serializer') fn = factory(referencedSchemas(route.schema, (externalSchemas ?? {}) as Record<string, unknown>), options)(route)
        else {
          compile ??= factory(externalSchemas, options)
          fn = compile(route)
        }
        compiled.set(key, fn)
      }
      return fn
    }
  }
}
