/**
 * Swarm discovery: keeps the routes of labelled services in the route table.
 *
 * Traefik's way: list every service, build the whole route table with a pure function
 * (routesFromServices), then write the differences; on any Docker service event, re-list and
 * rebuild rather than patch. A full reconcile also runs at start, periodically, and after every
 * reconnect of the event stream (events missed while it was down).
 *
 * Ownership: discovery writes and removes only routes whose last change came from it
 * (RouteRecord.source === 'discovery'). A route written through the API is never touched; a
 * labelled service whose name already has such a route is reported as a problem.
 *
 * Leadership: every control replica may run this; only the holder of the store lease
 * 'discovery' writes. The lease is renewed every leaseTtlMs/3, so a dead leader's lease lapses
 * and another replica takes over within leaseTtlMs. Writes are idempotent anyway (an equal
 * route does not bump the version), so a brief overlap costs nothing.
 *
 * A service whose labels turned invalid keeps the route it had (its last good labels) and is
 * reported; a service removed, or whose com.df.notify label is removed, loses its route.
 */
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { ChangeMeta } from '../../contracts/change.ts'
import type { LeaseStore, RouteTable, RouteWrite } from '../store/route-store.ts'
import { backoffDelay, sleepUnlessAborted, systemClock, type Clock } from '../../shared/clock.ts'
import type { Logger } from '../../shared/logger.ts'
import type { SwarmClient } from './swarm-client.ts'
import { routesFromServices, type DiscoveryProblem } from './swarm-labels.ts'
import { createTaskInventory, type TaskInventory } from './task-inventory.ts'

export interface SwarmDiscoveryOptions {
  /** Discovery reads the table, writes it in batches, and leads through a lease. */
  store: Pick<RouteTable, 'list' | 'write'> & LeaseStore
  client: SwarmClient
  logger: Logger
  /** Default: the system clock. */
  clock?: Clock
  /** Full reconcile period. Default 30 000 ms. */
  intervalMs?: number
  /** Task inventory period (Docker sends no task events). Default 3 000 ms. */
  taskIntervalMs?: number
  /** Lease time to live; renewed every third of it. Default 6 000 ms. */
  leaseTtlMs?: number
  /** This replica's name in the lease. Default host name, pid and a random suffix. */
  holder?: string
  /** Event stream reconnect backoff: first delay, doubled on each failure up to maxMs, with equal jitter. Default 500 / 15 000 ms. */
  backoff?: { initialMs?: number; maxMs?: number }
  /** Jitter source, [0, 1). Default Math.random. */
  random?: () => number
}

export interface SwarmDiscovery {
  /** Stops every loop, waits for work in flight, releases the lease. Idempotent. */
  stop(): Promise<void>
  inventory: TaskInventory
  /** Label problems, API-owned name clashes and task inventory problems, sorted by service. */
  problems(): DiscoveryProblem[]
  isLeader(): boolean
  /** Runs a full reconcile now (coalesced with one in flight); resolves when it is done. */
  reconcileNow(): Promise<void>
  /**
   * A sentence when Docker says nobody can serve `serviceName` (no service of that name, or no
   * running task); null when it has running tasks, or when Docker did not answer within 1 s
   * (then nothing is claimed).
   */
  serviceWarning(serviceName: string): Promise<string | null>
}

export const DISCOVERY_LEASE = 'discovery'
const META: ChangeMeta = { actor: 'discovery', source: 'discovery' }

export function startSwarmDiscovery(options: SwarmDiscoveryOptions): SwarmDiscovery {
  const { store, client, logger } = options
  const clock = options.clock ?? systemClock
  const random = options.random ?? Math.random
  const intervalMs = options.intervalMs ?? 30_000
  const taskIntervalMs = options.taskIntervalMs ?? 3_000
  const leaseTtlMs = options.leaseTtlMs ?? 6_000
  const holder = options.holder ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`
  const initialBackoff = options.backoff?.initialMs ?? 500
  const maxBackoff = options.backoff?.maxMs ?? 15_000
  const inventory = createTaskInventory({ client, now: () => clock.now() })

  const abort = new AbortController()
  const { signal } = abort
  let leader = false
  let labelProblems: DiscoveryProblem[] = []
  let ownershipProblems: DiscoveryProblem[] = []
  /** The message of the last reconcile failure (null after a pass that worked), and how many passes failed since. */
  let lastFailure: string | null = null
  let failedPasses = 0

  // --- reconcile, coalesced: at most one runs, and one more is queued behind it ---
  let running: Promise<void> | null = null
  let again = false
  function reconcileNow(): Promise<void> {
    if (signal.aborted) return Promise.resolve()
    if (running !== null) {
      again = true
      return running
    }
    running = (async () => {
      try {
        do {
          again = false
          await reconcile()
        } while (again && !signal.aborted)
      } finally {
        running = null
      }
    })()
    return running
  }

  async function reconcile(): Promise<void> {
    try {
      const services = await client.listServices()
      const { routes, problems } = routesFromServices(services)
      for (const p of problems) {
        if (!labelProblems.some((q) => q.serviceName === p.serviceName && q.message === p.message)) {
          logger.warn({ serviceName: p.serviceName, problem: p.message }, 'discovery: labels cannot become a route')
        }
      }
      labelProblems = problems
      if (!leader || signal.aborted) return

      const records = await store.list()
      const existing = new Map(records.map((r) => [r.route.serviceName, r]))
      const wanted = new Set(routes.map((r) => r.serviceName))
      const withProblems = new Set(problems.map((p) => p.serviceName))
      const clashes: DiscoveryProblem[] = []
      // The whole pass is one batch: one version (and one reload per proxy) however many
      // services changed. Each write is still conditioned on discovery owning the route.
      const writes: RouteWrite[] = []
      for (const route of routes) {
        const record = existing.get(route.serviceName)
        if (record !== undefined && record.source !== 'discovery') {
          clashes.push({
            serviceName: route.serviceName,
            message: `has com.df.* labels but its route was last written by '${record.actor}' (source ${record.source}); discovery leaves it alone until that route is removed`,
          })
          continue
        }
        writes.push({ serviceName: route.serviceName, after: route })
      }
      for (const record of records) {
        const name = record.route.serviceName
        if (record.source !== 'discovery' || wanted.has(name) || withProblems.has(name)) continue
        writes.push({ serviceName: name, after: null })
      }
      if (writes.length > 0) {
        const result = await store.write(writes, META, { onlyIfSource: 'discovery' })
        for (const change of result.changes) {
          logger.info({ serviceName: change.serviceName, version: result.version }, change.after === null ? 'discovery: route removed' : 'discovery: route stored')
        }
      }
      for (const c of clashes) {
        if (!ownershipProblems.some((q) => q.serviceName === c.serviceName && q.message === c.message)) logger.warn({ serviceName: c.serviceName, problem: c.message }, 'discovery: labels left alone')
      }
      ownershipProblems = clashes
      if (lastFailure !== null) logger.info({ failedPasses: failedPasses }, 'discovery: reconcile works again')
      lastFailure = null
      failedPasses = 0
    } catch (error) {
      // Once per distinct failure, not once per pass (every event and interval retries it).
      const message = error instanceof Error ? error.message : String(error)
      failedPasses++
      if (message !== lastFailure) logger.warn({ err: error }, 'discovery: reconcile failed; retrying at the next event or interval (logged again only when the failure changes)')
      else logger.debug({ err: error, failedPasses }, 'discovery: reconcile failed again')
      lastFailure = message
    }
  }

  // --- loops ---
  const loops: Promise<void>[] = []
  const loop = (name: string, periodMs: number, body: () => Promise<void>): void => {
    loops.push(
      (async () => {
        while (!signal.aborted) {
          try {
            await body()
          } catch (error) {
            logger.warn({ err: error, loop: name }, 'discovery: loop step failed')
          }
          await sleepUnlessAborted(clock, periodMs, signal)
        }
      })(),
    )
  }

  loop('lease', Math.max(1, Math.floor(leaseTtlMs / 3)), async () => {
    let holds = false
    try {
      holds = await store.acquireLease(DISCOVERY_LEASE, holder, leaseTtlMs)
    } catch (error) {
      logger.warn({ err: error }, 'discovery: cannot renew the lease; not leading')
    }
    if (holds !== leader) {
      leader = holds
      logger.info({ holder, leader }, leader ? 'discovery: leading' : 'discovery: another replica leads')
      if (leader) await reconcileNow()
      else ownershipProblems = []
    }
  })

  loop('reconcile', intervalMs, reconcileNow)

  loop('tasks', taskIntervalMs, async () => {
    const records = await store.list()
    await inventory.refresh(records.map((r) => r.route.serviceName))
  })

  loops.push(
    (async () => {
      const policy = { baseMs: initialBackoff, maxMs: maxBackoff }
      let attempt = 0
      while (!signal.aborted) {
        let received = 0
        const openedAt = clock.now()
        try {
          for await (const event of client.events(signal)) {
            received += 1
            attempt = 0
            logger.debug({ action: event.action, serviceId: event.serviceId, serviceName: event.serviceName }, 'discovery: service event')
            void reconcileNow()
          }
          if (!signal.aborted) logger.warn({ received }, 'discovery: event stream ended; reconnecting')
        } catch (error) {
          if (!signal.aborted) logger.warn({ err: error, received, attempt: attempt + 1 }, 'discovery: event stream failed; reconnecting')
        }
        if (signal.aborted) break
        // A stream that stayed up for a while was a working connection: start over from the first delay.
        if (clock.now() - openedAt >= maxBackoff) attempt = 0
        attempt += 1
        await sleepUnlessAborted(clock, backoffDelay(attempt, policy, random), signal)
        // Whatever happened while the stream was down is only seen by a full re-list.
        void reconcileNow()
      }
    })(),
  )

  async function serviceWarning(serviceName: string): Promise<string | null> {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), 1000)
    })
    const asked = Promise.all([client.listServices(), client.listTasks(serviceName)]).then(([services, tasks]) => {
      if (!services.some((s) => s.name === serviceName)) {
        return `no Swarm service is named "${serviceName}": the proxies find no task at tasks.${serviceName}, so its requests get 503 until such a service runs`
      }
      if (!tasks.some((t) => t.state === 'running')) return `service "${serviceName}" has no running task: its requests get 503 until one runs`
      return null
    })
    try {
      return await Promise.race([asked.catch(() => null), late])
    } finally {
      clearTimeout(timer)
    }
  }

  let stopped: Promise<void> | null = null
  return {
    inventory,
    serviceWarning,
    isLeader: () => leader,
    reconcileNow,
    problems: () =>
      [...labelProblems, ...ownershipProblems, ...inventory.problems()].sort((a, b) =>
        a.serviceName < b.serviceName ? -1 : a.serviceName > b.serviceName ? 1 : a.message < b.message ? -1 : 1,
      ),
    stop() {
      stopped ??= (async () => {
        abort.abort()
        await Promise.allSettled(loops)
        await running?.catch(() => {})
        if (leader) {
          leader = false
          await store.releaseLease(DISCOVERY_LEASE, holder).catch((error: unknown) => logger.warn({ err: error }, 'discovery: releasing the lease failed'))
        }
      })()
      return stopped
    },
  }
}
