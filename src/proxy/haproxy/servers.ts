/**
 * The servers of each backend: which real endpoints HAProxy holds, under which names, and what
 * changes between two sets. Pure: the engine feeds it the routes and what DNS said, and gets
 * back server lines to render on a reload and runtime API operations to send between reloads.
 *
 * Names: a Swarm task's server is named after the task (Docker's DNS answers PTR queries for a
 * task address with `<service>.<slot>.<task id>[.<network>]`), else after its address; a fixed
 * endpoint after its `host:port`. Never `s1..sN`: the stats page and the heartbeat show tasks.
 * The affinity cookie does not depend on the name (HAProxy hashes the key, address and port),
 * so a task keeps its cookie value whatever it is called and on every replica.
 */
import type { Route } from '../../contracts/route.ts'

/** One task of a service, as discovered through DNS. */
export interface Task {
  /** IPv4 or IPv6 address (no brackets). */
  address: string
  /** The task's name from a PTR answer, when DNS gave one. */
  name?: string
}

/** One server of a backend. */
export interface Endpoint {
  /** HAProxy server name, unique in its backend. */
  name: string
  /** IP address, or a host name (fixed endpoints only: HAProxy resolves it when it loads the configuration). */
  address: string
  port: number
  /**
   * HAProxy weight (0-256), only on backends shared by a release (canary, drain: see
   * release-shares.ts); absent: HAProxy's default, 1. 0: clients pinned by their cookie only.
   */
  weight?: number
}

/** HAProxy server names: letters, digits and `. _ - :`. Anything else becomes '_'. */
export function serverName(text: string): string {
  const cleaned = text.replace(/[^A-Za-z0-9._:-]/g, '_').replace(/\.$/, '')
  return cleaned === '' ? '_' : cleaned.slice(0, 200)
}

/** `10.0.0.5:8080`, `[fd00::5]:8080`, `host.example:8080` → host and port (caller validated the form). */
export function parseEndpoint(endpoint: string): { host: string; port: number } {
  const colon = endpoint.lastIndexOf(':')
  return { host: endpoint.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), port: Number(endpoint.slice(colon + 1)) }
}

const ipv4 = /^\d{1,3}(?:\.\d{1,3}){3}$/
/** True for an IP literal (which the runtime API accepts); false for a host name. */
export function isIpAddress(address: string): boolean {
  return ipv4.test(address) || address.includes(':')
}

/** The address part of a server line or `add server` argument: IPv6 in brackets. */
export function addressText(e: Pick<Endpoint, 'address' | 'port'>): string {
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`
}

const byName = (a: Endpoint, b: Endpoint): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)

/**
 * The servers of one backend (`route` on `port`): the fixed endpoints when the route has some,
 * else one per task of the service. `tasks` undefined = not resolved yet (no server). Sorted by
 * name, names unique.
 */
export function endpointsOf(route: Pick<Route, 'endpoints'>, port: number, tasks: readonly Task[] | undefined): Endpoint[] {
  const out: Endpoint[] = []
  const taken = new Set<string>()
  const push = (wanted: string, address: string, p: number): void => {
    let name = serverName(wanted)
    // Two tasks with one PTR name (should not happen) or a name equal to another's address: keep both.
    if (taken.has(name)) name = serverName(`${wanted}-${address}`)
    if (taken.has(name)) return
    taken.add(name)
    out.push({ name, address, port: p })
  }
  if (route.endpoints.length > 0) {
    for (const endpoint of route.endpoints) {
      const { host, port: p } = parseEndpoint(endpoint)
      push(host.includes(':') ? `${host}.${p}` : `${host}:${p}`, host, p)
    }
  } else {
    const seen = new Set<string>()
    for (const task of tasks ?? []) {
      if (seen.has(task.address)) continue
      seen.add(task.address)
      push(task.name ?? task.address, task.address, port)
    }
  }
  return out.sort(byName)
}

/** Health-check options, written on every server (dynamic servers do not inherit default-server). */
export const CHECK_OPTIONS = 'check inter 2s fall 2 rise 1'

/**
 * The health-check options of a route's servers: CHECK_OPTIONS, or with the route's own interval
 * and slow start (healthCheckInterval, healthCheckSlowStart). A server is out after 2 failed
 * checks in a row and back after 1 that passes, whatever the interval.
 */
export function checkOptionsOf(route: Pick<Route, 'healthCheckInterval' | 'healthCheckSlowStart'>): string {
  if (route.healthCheckInterval === undefined && route.healthCheckSlowStart === undefined) return CHECK_OPTIONS
  return `check inter ${route.healthCheckInterval ?? 2}s fall 2 rise 1${route.healthCheckSlowStart === undefined ? '' : ` slowstart ${route.healthCheckSlowStart}s`}`
}

/** A `server` line of the configuration (without indentation). */
export function serverLine(e: Endpoint, check: boolean, options?: string, checkOptions: string = CHECK_OPTIONS): string {
  return `server ${e.name} ${addressText(e)}${e.weight === undefined ? '' : ` weight ${e.weight}`}${check ? ` ${checkOptions}` : ''}${options === undefined ? '' : ` ${options}`}`
}

export interface ServerDiff {
  /** Servers to create. */
  add: Endpoint[]
  /** Names of servers to take out (maintenance, then delete once they have no connection). */
  remove: string[]
  /** Servers being taken out that are wanted again: back to ready. */
  restore: string[]
  /** Servers kept whose weight changes (`set server <b>/<s> weight <w>`: no reload, nobody moved). */
  reweight: Endpoint[]
}

/** A server's weight as HAProxy holds it (1 when none was given). */
export const weightOf = (e: Pick<Endpoint, 'weight'>): number => e.weight ?? 1

/**
 * What turns `current` (name → endpoint, plus the names being taken out) into `desired`. A name
 * whose address changed is removed and added (a name is bound to one address).
 */
export function diffServers(current: ReadonlyMap<string, Endpoint>, removing: ReadonlySet<string>, desired: readonly Endpoint[]): ServerDiff {
  const add: Endpoint[] = []
  const remove: string[] = []
  const restore: string[] = []
  const reweight: Endpoint[] = []
  const wanted = new Map(desired.map((e) => [e.name, e]))
  for (const [name, e] of current) {
    const want = wanted.get(name)
    if (want === undefined || want.address !== e.address || want.port !== e.port) {
      if (!removing.has(name)) remove.push(name)
      continue
    }
    if (removing.has(name)) restore.push(name)
    if (weightOf(want) !== weightOf(e)) reweight.push(want)
  }
  for (const e of desired) {
    const have = current.get(e.name)
    if (have === undefined) add.push(e)
  }
  // A changed address: the old server goes first, the new one under the same name after its deletion.
  return { add, remove: remove.sort(), restore: restore.sort(), reweight }
}
