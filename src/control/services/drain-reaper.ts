/**
 * Ends drains (takeover=true&drain=S, docs/releasing.md): a route marked `drain` is removed once
 * its `until` has passed, so the clients pinned to its tasks move to the service that took its
 * paths. The end time is stored with the route, in the table: a control replica restarted during
 * a drain neither shortens nor loses it.
 *
 * Every control replica runs this: at start (a drain that ended while no replica ran ends now),
 * at the end of the nearest drain, on every new version (a drain written by another replica) and
 * every `checkMs` as a safety net. The removal is a compare-and-set write (the route exactly as
 * read, drain included): when two replicas end the same drain, one writes and the other's guard
 * fails, and nothing is written twice; a route written again meanwhile (a new release) is left
 * alone.
 */
import type { Logger } from 'pino'
import type { Route } from '../../contracts/route.ts'
import { ExpectationFailedError, type RouteStore } from '../store/route-store.ts'

export interface DrainReaperOptions {
  store: RouteStore
  logger: Logger
  /** Safety-net period. Default 5 s. */
  checkMs?: number
  /** Injected for tests. Default Date.now. */
  now?: () => number
}

export interface DrainReaper {
  /** Ends the drains that are over now; resolves with the services whose route it removed. */
  sweep(): Promise<string[]>
  stop(): Promise<void>
}

/** The drains of a table that are over at `now`. */
export function endedDrains(routes: readonly Route[], now: number): Route[] {
  return routes.filter((r) => r.drain !== undefined && Date.parse(r.drain.until) <= now)
}

export function startDrainReaper(options: DrainReaperOptions): DrainReaper {
  const { store, logger } = options
  const now = options.now ?? Date.now
  let stopped = false
  let running: Promise<string[]> | undefined
  let again = false
  let nearest: NodeJS.Timeout | undefined

  async function pass(): Promise<string[]> {
    const routes = (await store.snapshot()).routes
    const removed: string[] = []
    for (const route of endedDrains(routes, now())) {
      try {
        const result = await store.write([{ serviceName: route.serviceName, after: null, expect: route }], {
          actor: 'tether',
          source: 'api',
          note: `drain of "${route.serviceName}" ended (${route.drain!.until}): its route is removed, its pinned clients move to "${route.drain!.to}"`,
        })
        if (result.changes.length > 0) {
          removed.push(route.serviceName)
          logger.info({ serviceName: route.serviceName, to: route.drain!.to, until: route.drain!.until, version: result.version }, `drain of ${route.serviceName} ended: route removed`)
        }
      } catch (err) {
        // Another replica ended it first, or the route was written again: nothing to do.
        if (!(err instanceof ExpectationFailedError)) throw err
      }
    }
    schedule(routes)
    return removed
  }

  /** A timer for the nearest drain still running (the safety net covers the rest). */
  function schedule(routes: readonly Route[]): void {
    if (nearest !== undefined) clearTimeout(nearest)
    nearest = undefined
    const ends = routes.flatMap((r) => (r.drain === undefined ? [] : [Date.parse(r.drain.until)])).filter((t) => t > now())
    if (stopped || ends.length === 0) return
    const wait = Math.min(Math.max(0, Math.min(...ends) - now()) + 50, 2 ** 31 - 1)
    nearest = setTimeout(() => void sweepLogged(), wait)
    nearest.unref()
  }

  function sweep(): Promise<string[]> {
    if (running !== undefined) {
      again = true
      return running
    }
    running = pass().finally(() => {
      running = undefined
      if (again && !stopped) {
        again = false
        void sweepLogged()
      }
    })
    return running
  }

  async function sweepLogged(): Promise<void> {
    if (stopped) return
    try {
      await sweep()
    } catch (err) {
      // The store is down: the next version, timer or check tries again; the drain is still stored.
      logger.warn({ err }, 'drains could not be checked (the route store is unavailable); trying again')
    }
  }

  const unsubscribe = store.subscribe(() => void sweepLogged())
  const check = setInterval(() => void sweepLogged(), options.checkMs ?? 5_000)
  check.unref()
  void sweepLogged()
  return {
    sweep,
    async stop() {
      stopped = true
      unsubscribe()
      clearInterval(check)
      if (nearest !== undefined) clearTimeout(nearest)
      await running?.catch(() => undefined)
    },
  }
}
