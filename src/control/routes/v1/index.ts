/** Everything under /v1. */
import type { FastifyPluginAsync } from 'fastify'
import backupRoutes from './backup.ts'
import certificateRoutes from './certificates.ts'
import configRoutes from './config.ts'
import dfpRoutes from './docker-flow-proxy.ts'
import fleetRoutes from './fleet.ts'
import reconfigureRoutes from './reconfigure.ts'
import resourceRoutes from './routes.ts'
import versionRoutes from './version.ts'

const v1: FastifyPluginAsync = async (app) => {
  await app.register(reconfigureRoutes)
  await app.register(dfpRoutes)
  await app.register(resourceRoutes)
  await app.register(configRoutes)
  await app.register(fleetRoutes)
  await app.register(versionRoutes)
  await app.register(certificateRoutes)
  await app.register(backupRoutes)
}

export default v1
