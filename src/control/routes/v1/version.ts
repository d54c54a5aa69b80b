/**
 * GET /v1/version[?since=V&wait=S]: the current config version, as a long poll readable
 * without a token. It rides the same feed as GET /v1/config (woken by a write on any replica),
 * but answers only the number: the dashboard (and anyone watching) learns that something
 * changed, then reads the routes and the change log, which are public, while the snapshot
 * itself stays with the proxies (it will carry what only proxies may read).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { ValidationFailedError } from '../../errors.ts'
import { errors } from '../schemas.ts'
import { clientGone, seconds } from './helpers.ts'

const VersionQuerySchema = Type.Object(
  {
    since: Type.Optional(Type.Integer({ minimum: 0, description: 'The version the caller has seen.' })),
    wait: Type.Optional(
      Type.String({
        pattern: '^(?:[0-9]|[1-5][0-9]|60)s?$',
        description: "Long poll, with 'since': seconds (0-60) to wait for a version other than 'since'; the answer then carries 'since' and changed: false.",
      }),
    ),
  },
  { additionalProperties: false },
)

const VersionAnswerSchema = Type.Object(
  {
    version: Type.Integer({ description: 'The current config version (the version the caller holds when nothing changed).' }),
    changed: Type.Boolean({ description: "False when a long poll ended without a change; always true without 'since'." }),
  },
  { additionalProperties: false },
)

const version: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/version',
    {
      schema: {
        tags: ['config'],
        operationId: 'getVersion',
        summary: 'The current config version; with since and wait, a long poll for the next one',
        description: 'Readable without a token (the dashboard at /ui follows it). Answers at once when the version differs from `since`, else at the next change on any control-plane replica, else after `wait` seconds with changed: false.',
        querystring: VersionQuerySchema,
        response: { 200: VersionAnswerSchema, 400: errors[400], 503: errors[503] },
      },
    },
    async (request, reply) => {
      const { since, wait } = request.query
      if (wait === undefined || since === undefined) {
        if (wait !== undefined) throw new ValidationFailedError("wait: needs 'since', the version the caller has seen")
        const current = await app.store.version()
        return { version: current, changed: since === undefined || current !== since }
      }
      const waitSeconds = seconds(wait)
      if (waitSeconds > app.longPollMaxSeconds) throw new ValidationFailedError(`wait: ${JSON.stringify(wait)} must be at most ${app.longPollMaxSeconds} seconds`)
      const payload = await app.feed.wait(since, waitSeconds * 1000, clientGone(reply))
      return payload === null ? { version: since, changed: false } : { version: payload.version, changed: true }
    },
  )
}

export default version
