/**
 * Fleet status: proxy heartbeats (kept in the store with a TTL, so every control-plane
 * replica sees every proxy), the convergence summary, and waiting for convergence.
 */
import { EventEmitter } from 'node:events'
import type { ProxyHeartbeat, ProxyListener, ProxyStatus } from '../../contracts/proxy-status.ts'
import { ConvergenceTimeoutError, RouteNotServedError } from '../errors.ts'
import type { ProxyRegistry, RouteTable } from '../store/route-store.ts'

export interface Laggard {
  id: string
  version: number
  node: string
}

export interface Convergence {
  /** The version every live proxy must have applied. */
  version: number
  live: number
  converged: number
  laggards: Laggard[]
}

export interface RefusedRouteReport {
  serviceName: string
  error: string
  /** Ids of the proxies that refused it. */
  proxies: string[]
}

export interface RouteProblemReport {
  serviceName: string
  problem: string
  proxies: string[]
}

export interface RouteHealthReport {
  serviceName: string
  up: number
  down: number
  proxies: number
  servers: string[]
}

export interface FleetStatus extends Convergence {
  proxies: Array<Pick<ProxyStatus, 'id' | 'version' | 'status' | 'node' | 'receivedAt' | 'lastError' | 'applyFailure' | 'descriptors' | 'oldWorkers' | 'tls'>>
  refusedRoutes: RefusedRouteReport[]
  routeProblems: RouteProblemReport[]
  routeHealth: RouteHealthReport[]
}

export interface Fleet {
  heartbeat(id: string, heartbeat: ProxyHeartbeat): Promise<void>
  list(): Promise<ProxyStatus[]>
  status(): Promise<FleetStatus>
  /**
   * Resolves when there is at least one live proxy and every live proxy reports a version ≥
   * `version`. Rejects with ConvergenceTimeoutError after `timeoutMs`, naming the laggards, or
   * saying that no proxy is live.
   * Checks on each heartbeat this replica receives, and every `pollMs` for heartbeats that
   * land on other replicas.
   */
  waitForConvergence(version: number, timeoutMs: number, signal?: AbortSignal, serviceName?: string): Promise<Convergence>
  /**
   * wait=healthy: waitForConvergence, then until every live proxy has at least one task of
   * `serviceName` passing its health check. Rejects with ConvergenceTimeoutError after `timeoutMs`
   * (both steps together), naming the proxies without one and how many tasks they see failing.
   */
  waitForHealthy(version: number, serviceName: string, timeoutMs: number, signal?: AbortSignal): Promise<HealthyConvergence>
  /** Live proxies whose own listeners use one of `ports` (a TCP route there cannot be served). */
  listenerClashes(ports: readonly number[]): Promise<ListenerClash[]>
}

export interface HealthyConvergence extends Convergence {
  /** Per live proxy, the tasks of the route passing their health check there (each ≥ 1). */
  healthy: Array<{ id: string; up: number }>
}

/** Per live proxy: the route's tasks up and down there (summed over its backends; 0/0 when it reports none). */
export function routeTasksOf(proxies: readonly ProxyStatus[], serviceName: string): Array<{ id: string; node: string; version: number; up: number; down: number }> {
  return proxies.map((p) => {
    let up = 0
    let down = 0
    for (const b of p.backends) {
      if (b.serviceName !== serviceName) continue
      up += b.up
      down += b.down
    }
    return { id: p.id, node: p.node, version: p.version, up, down }
  })
}

export interface ListenerClash {
  port: number
  kind: ProxyListener['kind']
  /** Ids of the live proxies that listen on it. */
  proxies: string[]
}

/** What each proxy that applied the version reports it cannot serve of `serviceName` (route problems, refused routes). */
export function serviceProblemsOf(proxies: readonly ProxyStatus[], serviceName: string): Array<{ proxy: string; problem: string }> {
  const out: Array<{ proxy: string; problem: string }> = []
  for (const p of proxies) {
    for (const r of p.refusedRoutes) if (r.serviceName === serviceName) out.push({ proxy: p.id, problem: `HAProxy refused the route: ${r.error}` })
    for (const r of p.routeProblems ?? []) if (r.serviceName === serviceName) out.push({ proxy: p.id, problem: r.problem })
  }
  return out
}

/** Per port of `ports`, the live proxies that listen on it themselves. */
export function listenerClashesOf(proxies: readonly ProxyStatus[], ports: readonly number[]): ListenerClash[] {
  const byPort = new Map<string, ListenerClash>()
  for (const p of proxies) {
    for (const l of p.listeners ?? []) {
      if (!ports.includes(l.port)) continue
      const key = `${l.port}\n${l.kind}`
      const entry = byPort.get(key) ?? { port: l.port, kind: l.kind, proxies: [] }
      entry.proxies.push(p.id)
      byPort.set(key, entry)
    }
  }
  return [...byPort.values()].sort((a, b) => a.port - b.port)
}

export interface FleetOptions {
  /** How long a heartbeat keeps a proxy live. */
  ttlMs: number
  /** Re-check interval while waiting for convergence. Default 100 ms. */
  pollMs?: number
  now?: () => number
}

export function convergenceOf(proxies: readonly ProxyStatus[], version: number): Convergence {
  const laggards = proxies.filter((p) => p.version < version).map((p) => ({ id: p.id, version: p.version, node: p.node }))
  return { version, live: proxies.length, converged: proxies.length - laggards.length, laggards }
}

export function refusedRoutesOf(proxies: readonly ProxyStatus[]): RefusedRouteReport[] {
  const byRoute = new Map<string, RefusedRouteReport>()
  for (const p of proxies) {
    for (const r of p.refusedRoutes) {
      const key = `${r.serviceName}\n${r.error}`
      const entry = byRoute.get(key) ?? { serviceName: r.serviceName, error: r.error, proxies: [] }
      entry.proxies.push(p.id)
      byRoute.set(key, entry)
    }
  }
  return [...byRoute.values()].sort((a, b) => (a.serviceName < b.serviceName ? -1 : a.serviceName > b.serviceName ? 1 : 0))
}

/** Every route problem any live proxy reports (a secret it lacks, ...), with the proxies that report it. */
export function routeProblemsOf(proxies: readonly ProxyStatus[]): RouteProblemReport[] {
  const byProblem = new Map<string, RouteProblemReport>()
  for (const p of proxies) {
    for (const r of p.routeProblems ?? []) {
      const key = `${r.serviceName}\n${r.problem}`
      const entry = byProblem.get(key) ?? { serviceName: r.serviceName, problem: r.problem, proxies: [] }
      entry.proxies.push(p.id)
      byProblem.set(key, entry)
    }
  }
  return [...byProblem.values()].sort((a, b) => (a.serviceName < b.serviceName ? -1 : a.serviceName > b.serviceName ? 1 : 0))
}

/**
 * Routes that answer 503 on some live proxy because no task serves them there: none running
 * (no server), or none passing its health check. Read from the proxies' health reports, so a
 * route shows here once a proxy applied it; a route no proxy reports yet is not judged.
 */
export function taskProblemsOf(proxies: readonly ProxyStatus[]): RouteProblemReport[] {
  const byProblem = new Map<string, RouteProblemReport>()
  for (const p of proxies) {
    const perRoute = new Map<string, { up: number; down: number; maint: number }>()
    for (const b of p.backends) {
      const e = perRoute.get(b.serviceName) ?? { up: 0, down: 0, maint: 0 }
      e.up += b.up
      const maint = (b.servers ?? []).filter((s) => s.status === 'maint').length
      e.maint += maint
      e.down += b.down - maint
      perRoute.set(b.serviceName, e)
    }
    for (const [serviceName, e] of perRoute) {
      if (e.up > 0) continue
      const problem =
        e.down > 0
          ? `no healthy task: ${e.down} task${e.down === 1 ? '' : 's'} failing the health check, requests answered 503`
          : 'no task: the service has no running task (or endpoint) to send requests to, requests answered 503'
      const key = `${serviceName}\n${problem}`
      const entry = byProblem.get(key) ?? { serviceName, problem, proxies: [] }
      entry.proxies.push(p.id)
      byProblem.set(key, entry)
    }
  }
  return [...byProblem.values()]
}

/** Per route: the fewest servers up and the most down on any live proxy, and the servers' names. */
export function routeHealthOf(proxies: readonly ProxyStatus[]): RouteHealthReport[] {
  const byRoute = new Map<string, RouteHealthReport & { names: Set<string> }>()
  for (const p of proxies) {
    const perRoute = new Map<string, { up: number; down: number; names: string[] }>()
    for (const b of p.backends) {
      const entry = perRoute.get(b.serviceName) ?? { up: 0, down: 0, names: [] }
      entry.up += b.up
      entry.down += b.down
      for (const server of b.servers ?? []) entry.names.push(server.name)
      perRoute.set(b.serviceName, entry)
    }
    for (const [serviceName, h] of perRoute) {
      const report = byRoute.get(serviceName)
      if (report === undefined) byRoute.set(serviceName, { serviceName, up: h.up, down: h.down, proxies: 1, servers: [], names: new Set(h.names) })
      else {
        report.up = Math.min(report.up, h.up)
        report.down = Math.max(report.down, h.down)
        report.proxies++
        for (const n of h.names) report.names.add(n)
      }
    }
  }
  return [...byRoute.values()]
    .map(({ names, ...r }) => ({ ...r, servers: [...names].sort().slice(0, 64) }))
    .sort((a, b) => (a.serviceName < b.serviceName ? -1 : a.serviceName > b.serviceName ? 1 : 0))
}

export function createFleet(store: ProxyRegistry & Pick<RouteTable, 'version'>, options: FleetOptions): Fleet {
  const pollMs = options.pollMs ?? 100
  const now = options.now ?? Date.now
  const heartbeats = new EventEmitter()
  heartbeats.setMaxListeners(0)

  /** Resolves at the next heartbeat of any proxy, after `ms` at the latest, or when `signal` aborts. */
  const nextHeartbeat = (ms: number, signal: AbortSignal | undefined): Promise<void> =>
    new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        heartbeats.off('heartbeat', done)
        signal?.removeEventListener('abort', done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      heartbeats.on('heartbeat', done)
      signal?.addEventListener('abort', done, { once: true })
    })

  const fleet: Fleet = {
    async heartbeat(id, heartbeat) {
      await store.putProxy({ id, ...heartbeat, receivedAt: new Date(now()).toISOString() }, options.ttlMs)
      heartbeats.emit('heartbeat')
    },
    list: () => store.listProxies(),
    async status() {
      const [version, proxies] = await Promise.all([store.version(), store.listProxies()])
      return {
        ...convergenceOf(proxies, version),
        proxies: proxies.map((p) => ({
          id: p.id,
          version: p.version,
          status: p.status,
          node: p.node,
          receivedAt: p.receivedAt,
          lastError: p.lastError,
          ...(p.applyFailure === undefined ? {} : { applyFailure: p.applyFailure }),
          ...(p.descriptors === undefined ? {} : { descriptors: p.descriptors }),
          ...(p.oldWorkers === undefined ? {} : { oldWorkers: p.oldWorkers }),
          ...(p.tls === undefined ? {} : { tls: p.tls }),
        })),
        refusedRoutes: refusedRoutesOf(proxies),
        routeProblems: [...taskProblemsOf(proxies), ...routeProblemsOf(proxies)].sort((a, b) => (a.serviceName < b.serviceName ? -1 : a.serviceName > b.serviceName ? 1 : 0)),
        routeHealth: routeHealthOf(proxies),
      }
    },
    async listenerClashes(ports) {
      if (ports.length === 0) return []
      return listenerClashesOf(await store.listProxies(), ports)
    },
    async waitForConvergence(version, timeoutMs, signal, serviceName) {
      const deadline = now() + timeoutMs
      let proxies = await store.listProxies()
      let last = convergenceOf(proxies, version)
      // No live proxy serves anything: that is not convergence. Wait for one (a proxy may be
      // starting) like for a laggard, and say so if none comes.
      while (last.laggards.length > 0 || last.live === 0) {
        const left = deadline - now()
        if ((left <= 0 || signal?.aborted === true) && last.live === 0) {
          throw new ConvergenceTimeoutError(
            `no live proxy applied version ${version} within ${Math.round(timeoutMs / 1000)}s: no proxy has sent a heartbeat within its TTL (${Math.round(options.ttlMs / 1000)}s), so nothing serves this change yet. ` +
              `The change itself is stored (version ${version}); proxies apply it when they start.`,
          )
        }
        if (left <= 0 || signal?.aborted === true) {
          const names = last.laggards.map((l) => `${l.id} (at version ${l.version}${l.node === '' ? '' : `, node ${l.node}`})`).join(', ')
          throw new ConvergenceTimeoutError(
            `${last.laggards.length} of ${last.live} live proxies did not apply version ${version} within ${Math.round(timeoutMs / 1000)}s: ${names}. ` +
              `The change itself is stored (version ${version}); those proxies will apply it when they catch up.`,
          )
        }
        await nextHeartbeat(Math.min(pollMs, left), signal)
        proxies = await store.listProxies()
        last = convergenceOf(proxies, version)
      }
      // Applied is not served: a proxy at the version may still leave the route out (a port it
      // cannot bind, a route HAProxy refused). Its heartbeat carries both, from the same apply.
      const problems = serviceName === undefined ? [] : serviceProblemsOf(proxies, serviceName)
      if (problems.length > 0) {
        const count = new Set(problems.map((p) => p.proxy)).size
        throw new RouteNotServedError(
          `${count} of ${last.live} live proxies applied version ${version} but do not serve route "${serviceName}" as asked: ` +
            `${problems.map((p) => `proxy ${p.proxy}: ${p.problem}`).join('; ')}. ` +
            `The change itself is stored (version ${version}); GET /v1/status shows the problem until a version fixes it.`,
        )
      }
      return last
    },
    async waitForHealthy(version, serviceName, timeoutMs, signal) {
      const deadline = now() + timeoutMs
      const converged = await fleet.waitForConvergence(version, timeoutMs, signal, serviceName)
      for (;;) {
        const proxies = (await store.listProxies()).filter((p) => p.version >= version)
        const tasks = routeTasksOf(proxies, serviceName)
        const waiting = tasks.filter((t) => t.up === 0)
        if (proxies.length > 0 && waiting.length === 0) {
          return { ...convergenceOf(proxies, version), converged: proxies.length, healthy: tasks.map((t) => ({ id: t.id, up: t.up })) }
        }
        const left = deadline - now()
        if (left <= 0 || signal?.aborted === true) {
          const names = waiting
            .map((t) => `${t.id}${t.node === '' ? '' : ` (node ${t.node})`}: ${t.down === 0 ? 'no task of the service' : `0 of ${t.down} tasks pass the health check`}`)
            .join('; ')
          throw new ConvergenceTimeoutError(
            `${waiting.length} of ${proxies.length === 0 ? converged.live : proxies.length} live proxies have no task of "${serviceName}" passing its health check after ${Math.round(timeoutMs / 1000)}s: ${names}. ` +
              `The change itself is stored (version ${version}) and applied; those proxies answer the route's requests with 503 until a task passes.`,
          )
        }
        await nextHeartbeat(Math.min(pollMs, left), signal)
      }
    },
  }
  return fleet
}
