/**
 * The JSON body parser: Fastify's own (prototype-poisoning protection kept), behind a cheap
 * nesting-depth check. No Tether body is nested deeper than a few levels (a route is 4), while
 * a body of 5,000 nested arrays is 10 KB and exhausts the stack of every recursive step after
 * parsing (validation, error descriptions). The check is one pass over the text, before
 * JSON.parse, so such a body costs no more than its bytes and answers 400 INVALID_BODY.
 */
import createError from '@fastify/error'
import { ErrorCode } from '../../contracts/errors.ts'
import type { FastifyInstance } from 'fastify'

/** Deepest nesting of objects and arrays a JSON body may have. */
export const MAX_JSON_DEPTH = 32

const TooDeepError = createError<[number]>(ErrorCode.INVALID_BODY, 'The JSON body is nested deeper than %d levels (objects and arrays)', 400)

const ForbiddenKeyError = createError<[string]>(ErrorCode.INVALID_BODY, 'body: the key %s is not allowed (it could change the prototype of objects built from the body); no Tether field has that name', 400)

/**
 * Pure, called only for a body Fastify's parser refused: the key it refused (prototype
 * poisoning) when `text` is otherwise valid JSON, '__proto__' or 'constructor' holding
 * 'prototype'; null for text that is not JSON at all (then "not valid JSON" is the answer).
 */
export function forbiddenKeyOf(text: string): string | null {
  try {
    JSON.parse(text)
  } catch {
    return null
  }
  // Valid JSON that the parser refused: one of the two (possibly spelled with \u escapes).
  return /"constructor"\s*:/.test(text) && !/"__proto__"\s*:/.test(text) ? 'constructor (holding prototype)' : '__proto__'
}

/**
 * Pure: true when the JSON text nests objects/arrays deeper than `max`. Brackets inside strings
 * do not count. Malformed text is not judged here (JSON.parse refuses it afterwards).
 */
export function jsonDeeperThan(text: string, max: number): boolean {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped character
      else if (c === 0x22) inString = false
    } else if (c === 0x22) inString = true
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true
    } else if (c === 0x5d || c === 0x7d) depth--
  }
  return false
}

/** Replaces the application/json parser with the depth-checked one. */
export function installJsonBodyParser(app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string
    if (jsonDeeperThan(text, MAX_JSON_DEPTH)) {
      done(new TooDeepError(MAX_JSON_DEPTH), undefined)
      return
    }
    // biome-ignore lint/nursery/noFloatingPromises: the default parser is the callback form (done), it returns nothing
    parse(request, text, (error, value) => {
      const forbidden = error === null ? null : forbiddenKeyOf(text)
      if (forbidden !== null) done(new ForbiddenKeyError(forbidden), undefined)
      else done(error, value)
    })
  })
}
