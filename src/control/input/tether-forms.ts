/**
 * Tether's own forms of a route: the query string (GET|PUT /v1/reconfigure) and the JSON body
 * (POST /v1/reconfigure, PUT /v1/routes/{serviceName}) → a normalised, validated `Route`.
 */
import { limits, normalizeRoute, rules, type Route } from '../../contracts/route.ts'
import { checkList, checkString, fail, finish, parsePort, showValue, splitList } from './fields.ts'
import { httpsFields } from './https-fields.ts'

/** Tether's query-string form of a route (GET|PUT /v1/reconfigure). Lists are comma-separated. */
export interface RouteQuery {
  serviceName: string
  servicePath?: string | undefined
  port?: string | number | undefined
  serviceDomain?: string | undefined
  sticky?: boolean | undefined
  stickyCookie?: string | undefined
  endpoints?: string | undefined
  httpsOnly?: string | boolean | undefined
  redirectWhenHttpProto?: string | boolean | undefined
  httpsRedirectCode?: string | number | undefined
  denyHttp?: string | boolean | undefined
  hstsMaxAge?: string | number | undefined
  acme?: string | boolean | undefined
}

export function routeFromQuery(query: RouteQuery): Route {
  const serviceName = checkString('serviceName', 'serviceName', query.serviceName)
  if (query.servicePath === undefined) fail('servicePath', `is required; it ${rules.servicePath.text}`)
  const paths = checkList('servicePath', 'servicePath', splitList(query.servicePath), limits.maxPaths)
  if (paths.length === 0) fail('servicePath', `is empty; it ${rules.servicePath.text}`)
  const port = parsePort('port', query.port)
  return finish(
    normalizeRoute({
      serviceName,
      destinations: [{ servicePath: paths, port }],
      serviceDomain: checkList('serviceDomain', 'serviceDomain', splitList(query.serviceDomain), limits.maxDomains),
      sticky: query.sticky,
      stickyCookie: query.stickyCookie === undefined ? undefined : checkString('stickyCookie', 'stickyCookie', query.stickyCookie),
      endpoints: checkList('endpoints', 'endpoint', splitList(query.endpoints), limits.maxEndpoints),
      ...httpsFields({ ...query }, splitList(query.serviceDomain)),
    }),
  )
}

/**
 * The JSON form (POST /v1/reconfigure, PUT /v1/routes/{serviceName}); the values were already
 * checked by the body schema. A route gives either `servicePath` + `port` (one destination)
 * or `destinations`, not both.
 */
export interface RouteBody {
  serviceName?: string | undefined
  servicePath?: string[] | undefined
  port?: number | undefined
  destinations?: Array<{ servicePath: string[]; port: number }> | undefined
  serviceDomain?: string[] | undefined
  sticky?: boolean | undefined
  stickyCookie?: string | undefined
  endpoints?: string[] | undefined
  httpsOnly?: boolean | undefined
  redirectWhenHttpProto?: boolean | undefined
  httpsRedirectCode?: number | undefined
  denyHttp?: boolean | undefined
  hstsMaxAge?: number | undefined
  acme?: boolean | undefined
}

export function routeFromBody(body: RouteBody, serviceNameFromPath?: string): Route {
  let serviceName = body.serviceName
  if (serviceNameFromPath !== undefined) {
    checkString('serviceName', 'serviceName', serviceNameFromPath)
    if (serviceName !== undefined && serviceName !== serviceNameFromPath) {
      fail('serviceName', `${showValue(serviceName)} differs from the service name in the path (${showValue(serviceNameFromPath)}); leave it out or make them equal`)
    }
    serviceName = serviceNameFromPath
  }
  if (serviceName === undefined) fail('serviceName', `is required; it ${rules.serviceName.text}`)
  checkString('serviceName', 'serviceName', serviceName)
  const short = body.servicePath !== undefined || body.port !== undefined
  if (short && body.destinations !== undefined) fail('destinations', "give either 'servicePath' and 'port', or 'destinations', not both")
  let destinations: Array<{ servicePath: string[]; port: number }>
  if (body.destinations !== undefined) {
    destinations = body.destinations
  } else {
    if (body.servicePath === undefined || body.servicePath.length === 0) fail('servicePath', `is required (or give 'destinations'); it ${rules.servicePath.text}`)
    destinations = [{ servicePath: body.servicePath, port: parsePort('port', body.port) }]
  }
  destinations.forEach((d, i) => d.servicePath.forEach((p, j) => checkString(`destinations[${i}].servicePath[${j}]`, 'servicePath', p)))
  return finish(
    normalizeRoute({
      serviceName,
      destinations,
      serviceDomain: body.serviceDomain,
      sticky: body.sticky,
      stickyCookie: body.stickyCookie,
      endpoints: body.endpoints,
      ...httpsFields({ ...body }, body.serviceDomain ?? []),
    }),
  )
}
