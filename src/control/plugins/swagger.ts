/**
 * The OpenAPI document (built from the route schemas, served at /openapi.json and committed
 * as openapi/openapi.json) and the Swagger UI at /docs, with a bearer scheme so "Authorize"
 * works. Shared schemas (registered with `$id`) become named components.
 */
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import { openApiForPeople } from './openapi-for-people.ts'

export const API_VERSION = '0.1.0'

export const tags = [
  { name: 'routes', description: 'Register, change and remove the route of a service (Tether API and resource style).' },
  { name: 'docker-flow-proxy', description: "Docker Flow Proxy's reconfigure/remove, for existing pipelines." },
  { name: 'config', description: 'The versioned routing table the proxies pull, its change log and rollback.' },
  { name: 'fleet', description: 'Proxy heartbeats and convergence.' },
  { name: 'certificates', description: 'TLS certificates every proxy serves by SNI: upload, inspect (never the key), remove, change log.' },
  { name: 'backup', description: 'The whole table as one JSON document, and its restore (disaster recovery, moving to a new Redis).' },
  { name: 'health', description: 'Liveness, readiness, metrics.' },
]

export async function registerSwagger(app: FastifyInstance, options: { authEnabled: boolean }): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Tether control plane',
        version: API_VERSION,
        description:
          'Ingress control plane for Docker Swarm. Writes need `Authorization: Bearer <token>` (an API token; its name is the actor in the change log). ' +
          'Proxies use the proxy token for GET /v1/config and PUT /v1/proxies/{id}. ' +
          'Reading the routes, the change log and the fleet status needs no token: they hold nothing a proxy in the swarm does not already hold, and operators read them while debugging.' +
          (options.authEnabled ? '' : ' **Authentication is off on this instance.**'),
      },
      tags,
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', description: 'An API token (TETHER_API_TOKENS), or the proxy token where noted.' },
        },
      },
    },
    // Escaped descriptions, optional parameters not pre-filled by "Try it out", body examples.
    transformObject: (documents) => ('openapiObject' in documents ? openApiForPeople(documents.openapiObject) : documents.swaggerObject),
    refResolver: {
      // Components are named after the schemas' $id ('Route', 'Error', ...), not def-0, def-1.
      buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`),
    },
  })
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    uiConfig: { persistAuthorization: false, tryItOutEnabled: false, displayOperationId: true },
  })
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
}
