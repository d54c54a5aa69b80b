import { Type, type Static } from 'typebox'
import { RouteSchema } from './route.ts'

/**
 * The whole routing table at one version. Routes are sorted by serviceName so that equal
 * tables serialise identically (ETags, golden files, "no change, no reply").
 */
export const ConfigSnapshotSchema = Type.Object(
  {
    version: Type.Integer({ minimum: 0, description: 'Monotonically increasing config version; 0 is the empty table.' }),
    routes: Type.Array(RouteSchema),
  },
  { $id: 'ConfigSnapshot', additionalProperties: false },
)
export type ConfigSnapshot = Static<typeof ConfigSnapshotSchema>
