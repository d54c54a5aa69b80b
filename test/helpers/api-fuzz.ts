/**
 * The hostile-input property, shared by the bounded test (test/proxy/haproxy/fuzz-oracle.test.ts)
 * and the 10^4-case benchmark (bench/fuzz.ts): each generated input goes through the real
 * control plane (buildApp, app.inject; labels through the same parser and store write discovery
 * uses), and
 *   - refused: a 4xx in the one error shape with a code, and the store's version unchanged;
 *   - accepted: the stored route, rendered with a known good route beside it, holds no line
 *     outside Tether's template, passes `haproxy -c`, and every access restriction it asks for
 *     (basic auth, method rules, deny/redirect of plain HTTP) is in its backend.
 * Never a 5xx. Accepted routes stay in the store, so later inputs also meet conflicts.
 */
import assert from 'node:assert/strict'
import fc from 'fast-check'
import type { Route } from '../../src/contracts/route.ts'
import { buildApp } from '../../src/control/app.ts'
import { routeFromLabels } from '../../src/control/discovery/swarm-labels.ts'
import { createMemoryRouteStore } from '../../src/control/store/memory-route-store.ts'
import type { RouteStore } from '../../src/control/store/route-store.ts'
import { userlistName } from '../../src/proxy/haproxy/render.ts'
import { createOracle, type Oracle } from './haproxy-oracle.ts'
import { fuzzInput, type FuzzInput } from './hostile-input.ts'

const TOKEN = 'fuzz-api-token-0123456789'
export const KNOWN_GOOD = 'known-good'

export interface FuzzStats {
  cases: number
  accepted: Record<FuzzInput['form'], number>
  refused: Record<FuzzInput['form'], number>
  /** Accepted routes with a TCP destination (reqMode=tcp), and with an SNI passthrough one (reqMode=sni), by form. */
  acceptedTcp: Record<FuzzInput['form'], number>
  acceptedSni: Record<FuzzInput['form'], number>
  /** Refusals by code (VALIDATION_FAILED, ROUTE_CONFLICT, ...). */
  codes: Record<string, number>
  /** `haproxy -c` runs. */
  checks: number
  /** Accepted routes haproxy -c refused only because a host-name endpoint does not resolve on this machine. */
  unresolvable: number
}

/** True when every HAProxy error is "could not resolve address" of one of the route's host-name endpoints. */
export function unresolvableOnly(route: Route, messages: readonly string[]): boolean {
  const hosts = new Set(route.endpoints.map((e) => e.slice(0, e.lastIndexOf(':'))).filter((h) => !/^[0-9.]+$/.test(h) && !h.startsWith('[')))
  return messages.length > 0 && messages.every((m) => {
    const host = /could not resolve address '([^']+)'/.exec(m)?.[1]
    return host !== undefined && hosts.has(host)
  })
}

export interface ApiFuzz {
  store: RouteStore
  stats: FuzzStats
  /** Runs `numRuns` cases from `seed`; throws (with fast-check's counterexample and seed) when the property fails. */
  run(numRuns: number, seed: number): Promise<void>
  close(): Promise<void>
}

/** `goodEndpoint`: host:port of a backend the known good route sends to. */
export async function createApiFuzz(goodEndpoint: string): Promise<ApiFuzz> {
  const store = createMemoryRouteStore()
  const app = await buildApp({ store, auth: { apiTokens: new Map([[TOKEN, 'fuzz']]), proxyToken: 'fuzz-proxy-token-0123456789' }, logger: false })
  const oracle: Oracle = await createOracle()
  const headers = { authorization: `Bearer ${TOKEN}` }
  const good = await app.inject({ method: 'PUT', url: `/v1/reconfigure?serviceName=${KNOWN_GOOD}&servicePath=/${KNOWN_GOOD}&port=80&endpoints=${goodEndpoint}`, headers })
  assert.equal(good.statusCode, 200, good.body)
  const goodRoute = (await store.get(KNOWN_GOOD))!.route
  const forms = (): Record<FuzzInput['form'], number> => ({ query: 0, 'json-post': 0, 'json-put': 0, dfp: 0, labels: 0 })
  const stats: FuzzStats = { cases: 0, accepted: forms(), refused: forms(), acceptedTcp: forms(), acceptedSni: forms(), codes: {}, checks: 0, unresolvable: 0 }

  /** Sends one input; the stored route when accepted, else the refusal's code. */
  async function send(input: FuzzInput): Promise<{ route: Route } | { code: string }> {
    if (input.form === 'labels') {
      const result = routeFromLabels(input.serviceName, input.labels)
      if ('problems' in result) {
        // No problem only when there is nothing to route (no path, no domain): what DFP answers 409 NOTHING_TO_ROUTE for.
        if (result.problems.length === 0) {
          const dfp = await app.inject({ method: 'PUT', url: `/v1/docker-flow-proxy/reconfigure?${new URLSearchParams([...Object.entries(input.labels).flatMap(([k, v]): Array<[string, string]> => (k.startsWith('com.df.') ? [[k.slice(7), v]] : [])), ['serviceName', input.serviceName]]).toString()}`, headers })
          assert.equal(dfp.json().code, 'NOTHING_TO_ROUTE', `labels gave neither a route nor a problem, and the DFP form answers ${dfp.body}`)
          return { code: 'NOTHING_TO_ROUTE' }
        }
        assert.ok(result.problems.every((p) => typeof p === 'string' && p.length > 0))
        return { code: 'LABEL_PROBLEM' }
      }
      try {
        await store.write([{ serviceName: result.route.serviceName, after: result.route }], { actor: 'discovery', source: 'discovery' }, { onlyIfSource: 'discovery' })
      } catch (err) {
        const code = (err as { code?: string }).code
        assert.ok(code === 'ROUTE_CONFLICT', `labels: the store refused with ${String(err)}`)
        return { code }
      }
      const record = await store.get(result.route.serviceName)
      // Another source owns the name: discovery left it alone.
      if (record === null || record.source !== 'discovery') return { code: 'OWNED_BY_ANOTHER_SOURCE' }
      return { route: record.route }
    }
    let res
    if (input.form === 'query' || input.form === 'dfp') {
      const path = input.form === 'query' ? '/v1/reconfigure' : '/v1/docker-flow-proxy/reconfigure'
      res = await app.inject({ method: 'PUT', url: `${path}?${new URLSearchParams(Object.entries(input.params)).toString()}`, headers })
    } else if (input.form === 'json-post') {
      res = await app.inject({ method: 'POST', url: '/v1/reconfigure', headers, payload: input.body as object })
    } else {
      res = await app.inject({ method: 'PUT', url: `/v1/routes/${encodeURIComponent(input.serviceName)}`, headers, payload: input.body as object })
    }
    assert.ok(res.statusCode < 500, `answered ${res.statusCode}: ${res.body}`)
    const body = res.json() as { route?: Route; statusCode?: number; code?: string; error?: string; message?: string }
    if (res.statusCode >= 200 && res.statusCode < 300) {
      assert.ok(body.route !== undefined, `a 2xx without the route: ${res.body}`)
      const record = await store.get(body.route.serviceName)
      assert.ok(record !== null, `answered ${res.statusCode} but nothing is stored for ${body.route.serviceName}`)
      assert.deepEqual(record.route, body.route, 'the answer shows the stored route')
      return { route: record.route }
    }
    assert.ok(res.statusCode >= 400, `answered ${res.statusCode}`)
    assert.deepEqual(Object.keys(body).sort(), ['code', 'error', 'message', 'statusCode'], `not the error shape: ${res.body}`)
    assert.equal(body.statusCode, res.statusCode)
    assert.match(body.code ?? '', /^[A-Z][A-Z_]+$/)
    assert.ok((body.message ?? '').length > 0)
    return { code: body.code! }
  }

  async function property(input: FuzzInput): Promise<void> {
    const before = await store.version()
    const outcome = await send(input)
    stats.cases++
    if ('code' in outcome) {
      stats.refused[input.form]++
      stats.codes[outcome.code] = (stats.codes[outcome.code] ?? 0) + 1
      assert.equal(await store.version(), before, `refused (${outcome.code}) but the store changed`)
      return
    }
    stats.accepted[input.form]++
    const route = outcome.route
    if (route.tcp !== undefined) stats.acceptedTcp[input.form]++
    if (route.sni !== undefined) stats.acceptedSni[input.form]++
    const routes = route.serviceName === KNOWN_GOOD ? [route] : [goodRoute, route]
    const { rendered, findings, check } = await oracle.judge({ version: await store.version(), routes })
    stats.checks++
    assert.deepEqual(findings, [], `lines outside the template for ${JSON.stringify(route)}`)
    if (!check.ok) {
      // A host-name endpoint (a valid form) that does not resolve here is HAProxy's only allowed objection: the proxy isolates that route.
      assert.ok(unresolvableOnly(route, check.errors.map((e) => e.message)), `haproxy -c refused the configuration of an accepted route ${JSON.stringify(route)}:\n${check.output}`)
      stats.unresolvable++
    }
    // What restricts access is rendered, never dropped.
    const config = rendered.config
    if (route.auth !== undefined && route.destinations.some((d) => d.ignoreAuthorization !== true)) assert.ok(config.includes(`http_auth(${userlistName(route.serviceName)})`), 'basic auth rendered')
    for (const d of route.destinations) {
      if (d.allowedMethods !== undefined) assert.ok(config.includes(`http-request deny unless { method ${d.allowedMethods.join(' ')} }`), 'allowedMethods rendered')
      if (d.deniedMethods !== undefined) assert.ok(config.includes(`http-request deny if { method ${d.deniedMethods.join(' ')} }`), 'deniedMethods rendered')
    }
    if (route.denyHttp === true) assert.ok(config.includes('http-request deny deny_status 403 if !{ ssl_fc }'), 'denyHttp rendered')
    // Towards backends: the servers' options are the backend's default-server line.
    if (route.backendScheme === 'h2c' && route.destinations.length > 0) assert.ok(config.includes('    default-server proto h2\n'), 'backendScheme h2c rendered')
    if (route.sslVerifyNone === true && route.destinations.length > 0) assert.match(config, /\n {4}default-server ssl verify none alpn (?:h2|http\/1\.1)\n/, 'sslVerifyNone rendered')
    if (route.ipAllow !== undefined) assert.ok(config.includes(`    http-request deny deny_status 403 if !{ src ${route.ipAllow.join(' ')} }\n`), 'ipAllow rendered')
    if (route.ipDeny !== undefined) assert.ok(config.includes(`    http-request deny deny_status 403 if { src ${route.ipDeny.join(' ')} }\n`), 'ipDeny rendered')
    // A health check asked for is rendered (a silently dropped one would send users to tasks that fail it).
    if (route.healthCheckPath !== undefined && route.destinations.length > 0) {
      assert.ok(config.includes(`    http-check send meth GET uri ${route.healthCheckPath}`), 'healthCheckPath rendered')
      assert.ok(config.includes(`    http-check expect status ${route.healthCheckStatus ?? '200-399'}\n`), 'healthCheckStatus rendered')
    }
    if (route.httpsOnly === true) assert.match(config, /http-request redirect scheme https code 30[1278] if !\{ ssl_fc \}/, 'httpsOnly rendered')
    // Compression asked for is rendered too (a silently dropped policy is a lie in GET /v1/routes).
    if (route.compressionAlgo !== undefined && route.destinations.length > 0) assert.ok(config.includes(`    compression algo ${route.compressionAlgo.join(' ')}\n`), 'compressionAlgo rendered')
    if (route.compressionType !== undefined && route.destinations.length > 0) assert.ok(config.includes(`    compression type ${route.compressionType.join(' ')}\n`), 'compressionType rendered')
    // An accepted TCP or SNI destination is served (or, on a port that is this proxy's own, reported), never dropped.
    // Every problem of the route: one per own port it names (a route may name several).
    const problem = rendered.problems.filter((p) => p.serviceName === route.serviceName).map((p) => p.problem).join('\n')
    for (const d of route.tcp ?? []) {
      const own = [oracle.settings.listen, oracle.settings.adminListen, oracle.settings.tlsListen].some((l) => l?.endsWith(`:${d.srcPort}`))
      if (own) assert.match(problem, new RegExp(`TCP port ${d.srcPort} is not served by this proxy`), 'a TCP port the proxy holds itself is reported')
      else assert.ok(config.includes(`\nfrontend tcp_${d.srcPort}\n    bind 127.0.0.1:${d.srcPort}\n`), `TCP srcPort ${d.srcPort} rendered`)
      if (!own && route.sticky) assert.ok(config.includes(`backend tcp_${route.serviceName}_${d.srcPort}\n    balance roundrobin\n    stick-table type ip size 1m expire 30m\n    stick on src\n`), 'TCP affinity rendered')
    }
    if (route.sni !== undefined) assert.ok(config.includes(`    use_backend sni_${route.serviceName}_`) && config.includes('\nfrontend tls_passthrough\n'), 'SNI passthrough rendered')
  }

  return {
    store,
    stats,
    async run(numRuns, seed) {
      await fc.assert(
        fc.asyncProperty(fuzzInput, (input) => property(input)),
        { numRuns, seed, endOnFailure: true, includeErrorInReport: true },
      )
    },
    async close() {
      await app.close()
      await store.close()
      await oracle.close()
    },
  }
}
