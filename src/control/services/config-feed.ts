/**
 * The versioned snapshot as proxies read it: GET /v1/config and its long poll.
 *
 * - The snapshot is fetched from the store at most once per version, serialised once, and the
 *   same bytes are sent to every waiter (1,000 proxies waiting cost one store read and one
 *   JSON.stringify per change).
 * - Waiters are woken by `store.subscribe`, so a write on any control-plane replica wakes the
 *   waiters of every replica (Redis pub/sub).
 * - A waiter is registered before the store's version is checked, so a change landing
 *   between the check and the registration cannot be missed.
 */
import type { FastifyBaseLogger } from 'fastify'
import type { RouteTable } from '../store/route-store.ts'
import type { Route } from '../../contracts/route.ts'
import { planRoutes, type RoutePlan } from '../../contracts/route-planner.ts'

/** A snapshot ready to send: `body` is its JSON text, encoded once. */
export interface SnapshotPayload {
  version: number
  routes: number
  body: Buffer
  /** The table itself (caller must not mutate). */
  table: readonly Route[]
}

interface Waiter {
  since: number
  resolve: (payload: SnapshotPayload | null) => void
  timer: NodeJS.Timeout
}

export interface ConfigFeed {
  /** The current snapshot: one store read of the version, plus one of the table when it changed. */
  current(): Promise<SnapshotPayload>
  /**
   * Resolves with a snapshot whose version differs from `since` as soon as there is one —
   * newer, or older when the store went backwards (restored or flushed) so the caller can
   * resync instead of waiting for the store to catch up with it — or with null after
   * `timeoutMs` or when `signal` aborts (client gone). Rejects only when the store is down at
   * the first check. `onWaiting` is called once the first check found nothing newer, i.e. when
   * the call is really going to wait (the long poll's heartbeats start there).
   */
  wait(since: number, timeoutMs: number, signal: AbortSignal, onWaiting?: () => void): Promise<SnapshotPayload | null>
  /** The planner's view of the current table (contracts/route-planner.ts), computed once per version. */
  plan(): Promise<RoutePlan>
  /** The last snapshot fetched, without asking the store (null before the first one). */
  cached(): SnapshotPayload | null
  waiters(): number
  /** Answers every waiter with null (304) and stops listening: for graceful shutdown. */
  close(): void
}

export function createConfigFeed(store: Pick<RouteTable, 'snapshot' | 'version' | 'subscribe'>, log: FastifyBaseLogger): ConfigFeed {
  const waiters = new Set<Waiter>()
  let cache: SnapshotPayload | null = null
  let inflight: Promise<SnapshotPayload> | null = null
  let closed = false
  const plans = new WeakMap<SnapshotPayload, RoutePlan>()

  /** Fetches the table once for everyone asking at the same time. */
  function fetchSnapshot(): Promise<SnapshotPayload> {
    if (inflight !== null) return inflight
    const p = store
      .snapshot()
      .then((snap) => {
        // Fetches never overlap (inflight), so the last one read is the newest; it may be older
        // than the cache when the store went backwards (restored, flushed): it replaces it anyway.
        cache = { version: snap.version, routes: snap.routes.length, body: Buffer.from(JSON.stringify(snap)), table: snap.routes }
        return cache
      })
      .finally(() => {
        inflight = null
      })
    inflight = p
    return p
  }

  function release(waiter: Waiter, payload: SnapshotPayload | null): void {
    if (!waiters.delete(waiter)) return
    clearTimeout(waiter.timer)
    waiter.resolve(payload)
  }

  /** Answers the waiters whose version differs from the payload's (newer, or ahead of a store that went backwards). */
  function wakeNewer(payload: SnapshotPayload): void {
    for (const w of waiters) if (payload.version !== w.since) release(w, payload)
  }

  /** Called for each version the store announces (possibly coalesced, possibly out of order). */
  function onVersion(version: number): void {
    if (waiters.size === 0) return
    if (cache !== null && cache.version === version) {
      wakeNewer(cache)
      return
    }
    void refresh(version)
  }

  async function refresh(announced: number): Promise<void> {
    try {
      let payload = await fetchSnapshot()
      // A fetch already in flight may have started before that write: read once more after it.
      if (payload.version < announced) payload = await fetchSnapshot()
      wakeNewer(payload)
    } catch (err) {
      // Waiters keep waiting; they get 304 at their deadline and poll again.
      log.warn({ err }, 'config feed: cannot read the snapshot after a change')
    }
  }

  const unsubscribe = store.subscribe(onVersion)

  async function current(): Promise<SnapshotPayload> {
    const version = await store.version()
    if (cache !== null && cache.version === version) return cache
    return fetchSnapshot()
  }

  return {
    current,
    async wait(since, timeoutMs, signal, onWaiting) {
      if (closed || signal.aborted) return null
      let resolve!: (payload: SnapshotPayload | null) => void
      const answered = new Promise<SnapshotPayload | null>((r) => (resolve = r))
      const waiter: Waiter = { since, resolve, timer: setTimeout(() => release(waiter, null), timeoutMs) }
      waiters.add(waiter)
      const onAbort = (): void => release(waiter, null)
      signal.addEventListener('abort', onAbort, { once: true })
      try {
        const version = await store.version()
        if (version !== since) release(waiter, cache !== null && cache.version === version ? cache : await fetchSnapshot())
        else if (waiters.has(waiter)) onWaiting?.()
      } catch (err) {
        release(waiter, null)
        throw err
      }
      try {
        return await answered
      } finally {
        signal.removeEventListener('abort', onAbort)
      }
    },
    async plan() {
      // While the store is down, the last table seen (like a stale GET /v1/config).
      const payload = await current().catch((err: unknown) => {
        if (cache === null) throw err
        return cache
      })
      let plan = plans.get(payload)
      if (plan === undefined) {
        plan = planRoutes(payload.table)
        plans.set(payload, plan)
      }
      return plan
    },
    cached: () => cache,
    waiters: () => waiters.size,
    close() {
      closed = true
      unsubscribe()
      for (const w of [...waiters]) release(w, null)
    },
  }
}
