/**
 * Numbers in query strings are read only from decimal digits. Query strings are coerced by ajv,
 * which reads a number the way JavaScript's Number() does: '0x10' would be 16, '1e3' 1000,
 * ' 5' 5 and '' 0. Before validation, every query parameter whose schema is a number (an
 * integer, or a union of number literals such as httpsRedirectCode) must be plain decimal
 * digits, else 400 VALIDATION_FAILED naming the parameter; the range is then checked by the
 * schema as before. (`port` is a string in the schema and read by the input parsers, by the same
 * rule.)
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { ValidationFailedError } from '../errors.ts'
import { showValue } from '../input/schema-errors.ts'

interface JsonSchema {
  type?: string | string[]
  anyOf?: JsonSchema[]
  properties?: Record<string, JsonSchema>
}

const numeric = (s: JsonSchema | undefined): boolean =>
  s !== undefined && (s.type === 'integer' || s.type === 'number' || (Array.isArray(s.anyOf) && s.anyOf.length > 0 && s.anyOf.every(numeric)))

const cache = new WeakMap<object, string[]>()
function numericParameters(schema: JsonSchema): string[] {
  let names = cache.get(schema)
  if (names === undefined) {
    names = Object.entries(schema.properties ?? {}).flatMap(([name, s]) => (numeric(s) ? [name] : []))
    cache.set(schema, names)
  }
  return names
}

export function decimalQuery(app: FastifyInstance): void {
  app.addHook('preValidation', async (request: FastifyRequest) => {
    const schema = request.routeOptions.schema?.querystring as JsonSchema | undefined
    if (schema === undefined || typeof schema !== 'object') return
    const query = request.query as Record<string, unknown> | undefined
    if (query === undefined || query === null) return
    for (const name of numericParameters(schema)) {
      if (!Object.prototype.hasOwnProperty.call(query, name)) continue
      const value = query[name]
      if (typeof value === 'string' && !/^[0-9]{1,15}$/.test(value)) {
        throw new ValidationFailedError(`${name}: ${showValue(value)} must be written in decimal digits (no sign, spaces, '0x', exponent or fraction)`)
      }
    }
  })
}
