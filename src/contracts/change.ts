import { Type, type Static } from 'typebox'
import { RouteSchema } from './route.ts'

export const ChangeSourceSchema = Type.Union([Type.Literal('api'), Type.Literal('dfp'), Type.Literal('discovery'), Type.Literal('rollback')], {
  description: 'Where the change came from: Tether API, Docker Flow Proxy compatible API, Swarm label discovery, or a rollback.',
})
export type ChangeSource = Static<typeof ChangeSourceSchema>

/**
 * One entry of the change log. A version changes one route, except a rollback, which writes
 * one entry per route it changed, all with the same version.
 */
export const ChangeSchema = Type.Object(
  {
    version: Type.Integer({ minimum: 1 }),
    time: Type.String({ format: 'date-time' }),
    operation: Type.Union([Type.Literal('put'), Type.Literal('remove')]),
    serviceName: Type.String(),
    before: Type.Union([RouteSchema, Type.Null()]),
    after: Type.Union([RouteSchema, Type.Null()]),
    actor: Type.String({ description: 'Name of the API token, or "discovery".' }),
    source: ChangeSourceSchema,
    rollbackTo: Type.Optional(Type.Integer({ minimum: 0, description: 'Set on entries written by a rollback: the version restored.' })),
    note: Type.Optional(Type.String({ description: 'Why this entry was written, when it is not the plain request: e.g. a takeover that moved paths from this service.' })),
  },
  { $id: 'Change', additionalProperties: false },
)
export type Change = Static<typeof ChangeSchema>

/** Who makes a change: stored in the change log. */
export interface ChangeMeta {
  actor: string
  source: ChangeSource
  /** Recorded on every entry of the change (see Change.note). */
  note?: string
}
