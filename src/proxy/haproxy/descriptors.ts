/**
 * File descriptors: what HAProxy needs for a table, and what the proxy does when the limit it
 * runs under is lower. Pure.
 *
 * HAProxy reserves, at start and on every reload, 2 descriptors per connection it may hold
 * (`maxconn`: client side and server side), 1 per server with a health check (each check opens
 * its own socket), plus a few for listeners, sockets and threads; it refuses to start when that
 * is above the process's hard `nofile` limit ("Cannot raise FD limit to N, limit is L"). Measured
 * with HAProxy 2.6: 4096 maxconn and 12,000 checked servers ask for 20,209.
 *
 * So the need grows with real servers, and when it does not fit the proxy first lowers the
 * connection limit it chose itself (down to MIN_AUTO_MAXCONN), then leaves health checks off the
 * servers beyond what fits, and says so (needed, limit, what to do) rather than stop applying.
 * A maxconn the operator set is never lowered: then HAProxy is left to refuse, and its own
 * message is reported.
 */

/**
 * Listeners, admin and master sockets, with margin; plus per thread (poller, wake-up pipe)
 * THREAD_OVERHEAD. Measured with 2 threads: 17 beyond maxconn and checks for 12,000 checked
 * servers, 41 for 10,000 backends with 30,000 servers (18,000 checked).
 */
export const FIXED_OVERHEAD = 64
export const THREAD_OVERHEAD = 3
/** The lowest connection limit the proxy picks by itself before leaving checks off. */
export const MIN_AUTO_MAXCONN = 1024

export interface DescriptorInput {
  /** The connection limit wanted (TETHER_MAXCONN or the default). */
  maxconn: number
  /** Whether the operator set it (then it is never lowered). */
  maxconnFixed: boolean
  /** Servers in the configuration. */
  servers: number
  /** The hard nofile limit HAProxy runs under. */
  limit: number
  /** HAProxy's threads (its default: one per CPU). */
  threads: number
}

export interface DescriptorPlan {
  /** The maxconn to render. */
  maxconn: number
  /** How many servers get a health check (the first ones rendered). */
  checkBudget: number
  /** What the full table with the wanted maxconn needs. */
  needed: number
  limit: number
  /** Set when the plan had to give something up, or HAProxy will refuse: what happened and what to do. */
  problem: string | null
}

export function needFor(maxconn: number, checkedServers: number, threads: number): number {
  return 2 * maxconn + checkedServers + FIXED_OVERHEAD + THREAD_OVERHEAD * threads
}

export function planDescriptors(input: DescriptorInput): DescriptorPlan {
  const { limit, servers } = input
  const overhead = FIXED_OVERHEAD + THREAD_OVERHEAD * input.threads
  const needed = needFor(input.maxconn, servers, input.threads)
  const base = { needed, limit }
  if (needed <= limit) return { ...base, maxconn: input.maxconn, checkBudget: servers, problem: null }
  const advice = `raise the proxy's nofile limit to at least ${needed} (docker service update --ulimit nofile=${needed}:${needed}, or ulimits: nofile in the stack file)`
  if (input.maxconnFixed) {
    return {
      ...base,
      maxconn: input.maxconn,
      checkBudget: servers,
      problem: `HAProxy needs ${needed} file descriptors (maxconn ${input.maxconn} × 2 + ${servers} checked servers + ${overhead}) but the limit is ${limit}: ${advice}, or lower TETHER_MAXCONN`,
    }
  }
  const fitting = Math.floor((limit - servers - overhead) / 2)
  if (fitting >= MIN_AUTO_MAXCONN) {
    return {
      ...base,
      maxconn: Math.min(input.maxconn, fitting),
      checkBudget: servers,
      problem: `${servers} servers need ${needed} file descriptors with maxconn ${input.maxconn}, the limit is ${limit}: maxconn lowered to ${fitting}; ${advice}`,
    }
  }
  const maxconn = Math.min(input.maxconn, MIN_AUTO_MAXCONN)
  const checkBudget = Math.max(0, limit - 2 * maxconn - overhead)
  return {
    ...base,
    maxconn,
    checkBudget,
    problem: `${servers} servers need ${needed} file descriptors, the limit is ${limit}: maxconn lowered to ${maxconn} and ${servers - checkBudget} servers run without a health check; ${advice}`,
  }
}

/** The hard nofile limit of this process (HAProxy inherits it), from /proc/self/limits; undefined when unknown. */
export function parseNofileLimit(limitsText: string): number | undefined {
  const line = limitsText.split('\n').find((l) => l.startsWith('Max open files'))
  const hard = line?.trim().split(/\s+/)[4]
  if (hard === undefined) return undefined
  if (hard === 'unlimited') return Number.MAX_SAFE_INTEGER
  const n = Number(hard)
  return Number.isInteger(n) && n > 0 ? n : undefined
}
