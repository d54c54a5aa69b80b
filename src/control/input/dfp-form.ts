/**
 * Docker Flow Proxy's form of a route (/v1/docker-flow-proxy/reconfigure and com.df.* labels,
 * which Docker Flow Swarm Listener sends as the same parameters): DFP's parameter names, the
 * tables of what Tether implements, ignores with a warning or refuses, and the parser.
 */
import { limits, normalizeRoute, rules, type Route } from '../../contracts/route.ts'
import { checkList, checkString, fail, finish, parsePort, showValue, splitList } from './fields.ts'
import { HTTPS_FIELDS, httpsFields } from './https-fields.ts'

/**
 * Docker Flow Proxy parameters Tether understands; every other parameter is reported in
 * `warnings`. `distribute` and `replicas` are accepted without a warning: every Tether proxy
 * replica always receives every change, which is what they asked DFP for.
 */
const dfpHandled = new Set(['serviceName', 'servicePath', 'port', 'serviceDomain', 'sessionType', 'distribute', 'replicas', 'sticky', 'stickyCookie', 'endpoints', 'aclName', 'wait', 'timeout', ...HTTPS_FIELDS])

/** DFP parameters we know of but do not implement, with why (shown in the warning). */
const dfpKnownUnimplemented: Record<string, string> = {
  reqMode: 'Tether routes HTTP only',
  srcPort: 'Tether proxies listen on one port',
  httpsPort: 'every Tether proxy listens for HTTPS on TETHER_PROXY_LISTEN_TLS; the backend port is the route port',
  redirectFromDomain: 'redirects are not implemented',
  reqPathSearch: 'path rewriting is not implemented',
  reqPathReplace: 'path rewriting is not implemented',
  reqPathSearchReplace: 'path rewriting is not implemented',
  users: 'basic authentication is not implemented',
  usersSecret: 'basic authentication is not implemented',
  usersPassEncrypted: 'basic authentication is not implemented',
  pathType: 'Tether matches path prefixes on whole segments',
  timeoutServer: 'per-route timeouts are not implemented',
  timeoutTunnel: 'per-route timeouts are not implemented',
  serviceDomainAlgo: 'host matching is exact or *.wildcard',
  addReqHeader: 'header rewriting is not implemented',
  addResHeader: 'header rewriting is not implemented',
  setReqHeader: 'header rewriting is not implemented',
  setResHeader: 'header rewriting is not implemented',
  delReqHeader: 'header rewriting is not implemented',
  delResHeader: 'header rewriting is not implemented',
  templateFePath: 'custom HAProxy templates are not supported',
  templateBePath: 'custom HAProxy templates are not supported',
  backendExtra: 'custom HAProxy configuration is not supported',
  checkResolvers: 'Tether proxies always resolve tasks.<service> through Docker DNS',
  balanceGroup: 'Tether balances round-robin, or by cookie when sticky',
  outboundHostname: 'not implemented',
  isDefaultBackend: 'requests with no route get a 404',
  ignoreAuthorization: 'basic authentication is not implemented',
  compressionAlgo: 'compression is not implemented',
  compressionType: 'compression is not implemented',
  connectionMode: 'not implemented',
  xForwardedProto: 'Tether always sets X-Forwarded-Proto',
}

export interface DfpResult {
  route: Route
  warnings: string[]
}

type DfpQuery = Record<string, string | undefined>

/** Warnings for the parameters of a DFP request that Tether ignores, in a stable order. */
export function dfpWarnings(query: DfpQuery, handled: (name: string) => boolean): string[] {
  const warnings: string[] = []
  for (const name of Object.keys(query).sort()) {
    if (handled(name)) continue
    const base = name.replace(/\.[0-9]+$/, '')
    const why = dfpKnownUnimplemented[base]
    warnings.push(
      why !== undefined
        ? `${name}: Docker Flow Proxy parameter not implemented by Tether (${why}); ignored`
        : `${name}: not a parameter Tether knows; ignored`,
    )
  }
  return warnings
}

/**
 * `/v1/docker-flow-proxy/reconfigure`: DFP's names. `servicePath`/`port` are the first
 * destination; the indexed forms `servicePath.N`/`port.N` (N ≥ 1) add one destination each,
 * in index order. `sessionType=sticky-server` means sticky.
 */
export function routeFromDfpQuery(query: DfpQuery): DfpResult {
  if (query.serviceName === undefined) fail('serviceName', `is required; it ${rules.serviceName.text}`)
  const serviceName = checkString('serviceName', 'serviceName', query.serviceName)
  const indexed = new Set<number>()
  for (const key of Object.keys(query)) {
    const m = /^(?:servicePath|port)\.([0-9]{1,3})$/.exec(key)
    if (m !== null) indexed.add(Number(m[1]))
  }
  const destinations: Array<{ servicePath: string[]; port: number }> = []
  const destination = (pathKey: string, portKey: string): void => {
    const paths = checkList(pathKey, 'servicePath', splitList(query[pathKey]), limits.maxPaths)
    if (paths.length === 0) fail(pathKey, `is required; it ${rules.servicePath.text}`)
    destinations.push({ servicePath: paths, port: parsePort(portKey, query[portKey]) })
  }
  if (query.servicePath !== undefined || query.port !== undefined || indexed.size === 0) destination('servicePath', 'port')
  for (const i of [...indexed].sort((a, b) => a - b)) destination(`servicePath.${i}`, `port.${i}`)
  if (destinations.length > limits.maxDestinations) fail('servicePath', `gives ${destinations.length} destinations; at most ${limits.maxDestinations} are allowed`)

  let sticky: boolean | undefined
  if (query.sessionType !== undefined) {
    if (query.sessionType !== 'sticky-server') fail('sessionType', `${showValue(query.sessionType)} must be 'sticky-server' (the only session type Docker Flow Proxy defines)`)
    sticky = true
  }
  if (query.sticky !== undefined) {
    if (query.sticky !== 'true' && query.sticky !== 'false') fail('sticky', `${showValue(query.sticky)} must be true or false`)
    sticky = sticky === true || query.sticky === 'true'
  }
  const route = finish(
    normalizeRoute({
      serviceName,
      destinations,
      serviceDomain: checkList('serviceDomain', 'serviceDomain', splitList(query.serviceDomain), limits.maxDomains),
      sticky,
      stickyCookie: query.stickyCookie === undefined ? undefined : checkString('stickyCookie', 'stickyCookie', query.stickyCookie),
      endpoints: checkList('endpoints', 'endpoint', splitList(query.endpoints), limits.maxEndpoints),
      aclName: query.aclName === undefined ? undefined : checkString('aclName', 'aclName', query.aclName),
      ...httpsFields(query),
    }),
  )
  const warnings = dfpWarnings(query, (name) => dfpHandled.has(name) || /^(?:servicePath|port)\.[0-9]{1,3}$/.test(name))
  return { route, warnings }
}

/** `/v1/docker-flow-proxy/remove`: the service name, and warnings for everything else. */
export function serviceNameFromDfpRemove(query: DfpQuery): { serviceName: string; warnings: string[] } {
  if (query.serviceName === undefined) fail('serviceName', `is required; it ${rules.serviceName.text}`)
  const serviceName = checkString('serviceName', 'serviceName', query.serviceName)
  return { serviceName, warnings: dfpWarnings(query, (name) => name === 'serviceName' || name === 'distribute' || name === 'wait' || name === 'timeout') }
}
