/**
 * The contract every route store keeps (Redis in production, memory as the embedded default).
 * One contract test suite (test/control/store/route-store.contract.ts) runs against both.
 *
 * Guarantees:
 * - a route change and its version bump are one atomic step: no reader sees one without the other;
 * - `put` is idempotent: storing a route equal to the stored one answers `changed: false` and
 *   does not bump the version;
 * - versions only grow, by one per change (a rollback is one change);
 * - `subscribe` listeners hear every new version written by any client of the same store
 *   (for Redis: any control-plane replica), possibly coalesced;
 * - when the backing store is unreachable, methods reject with `StoreUnavailableError` and
 *   nothing is half-written.
 */
import type { Change, ChangeMeta, ChangeSource } from '../../contracts/change.ts'
import type { ConfigSnapshot } from '../../contracts/config-snapshot.ts'
import type { ProxyStatus } from '../../contracts/proxy-status.ts'
import type { Route } from '../../contracts/route.ts'
import { VersionNotFoundError } from '../errors.ts'

/** A stored route with who wrote it last. */
export interface RouteRecord {
  route: Route
  /** Version at which this route was last changed. */
  version: number
  updatedAt: string
  actor: string
  source: ChangeSource
}

/** Conditions on a write. */
export interface WriteOptions {
  /**
   * Write only when the route is absent or its last change came from this source; otherwise
   * nothing is written (`put` answers `changed: false` with the stored route, `remove` null).
   * Checked in the same atomic step as the write, so Swarm discovery never overwrites a route
   * written through the API, even one written between discovery's read and its write.
   */
  onlyIfSource?: ChangeSource
}

export interface PutResult {
  route: Route
  /** Current version: the new one when `changed`, otherwise the unchanged current one. */
  version: number
  changed: boolean
}

export interface RemoveResult {
  version: number
  removed: Route
}

export interface RollbackResult {
  version: number
  /** Number of routes the rollback changed; 0 means the table already equalled version `to`. */
  changed: number
}

export interface RouteStore {
  snapshot(): Promise<ConfigSnapshot>
  version(): Promise<number>
  get(serviceName: string): Promise<RouteRecord | null>
  /** All routes, sorted by serviceName. */
  list(): Promise<RouteRecord[]>
  /** Creates or replaces the route of `route.serviceName`. `route` must already be normalised. */
  put(route: Route, meta: ChangeMeta, options?: WriteOptions): Promise<PutResult>
  /** `null` when there is no route for that service (and nothing changes). */
  remove(serviceName: string, meta: ChangeMeta, options?: WriteOptions): Promise<RemoveResult | null>
  /** Change log entries with version > since, oldest first, at most `limit`. */
  changes(since: number, limit: number): Promise<Change[]>
  /**
   * Restores the routing table of version `to` as a new version. Rejects with
   * `VersionNotFoundError` when `to` is in the future or older than the retained change log.
   */
  rollback(to: number, meta: ChangeMeta): Promise<RollbackResult>
  /** Calls `listener` with each new version; returns the unsubscribe function. */
  subscribe(listener: (version: number) => void): () => void
  /** Rejects with `StoreUnavailableError` when the store cannot be reached. */
  ping(): Promise<void>

  /** Records a proxy heartbeat; it is forgotten `ttlMs` after it was received. */
  putProxy(status: ProxyStatus, ttlMs: number): Promise<void>
  /** Live proxies (heartbeat not expired), sorted by id. */
  listProxies(): Promise<ProxyStatus[]>

  /**
   * Takes or renews the lease `name` for `holder` for `ttlMs`. True when `holder` holds it
   * afterwards. Used so that only one control-plane replica runs Swarm discovery at a time.
   */
  acquireLease(name: string, holder: string, ttlMs: number): Promise<boolean>
  releaseLease(name: string, holder: string): Promise<void>

  close(): Promise<void>
}

/** Default number of change-log entries a store keeps (rollback reaches back this far). */
export const DEFAULT_CHANGE_LOG_LIMIT = 10_000

/** Stable serialisation, whatever the key order: two equal routes give the same string. */
export function routeKey(route: Route): string {
  return JSON.stringify(route, (_key, value: unknown) =>
    value !== null && typeof value === 'object' && !Array.isArray(value)
      ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : value,
  )
}

/** One route's change in a batch: `after: null` removes it. */
export interface RouteDiff {
  serviceName: string
  before: Route | null
  after: Route | null
}

/**
 * Pure: the differences that turn the table `current` into the table it was at version `to`,
 * by undoing, newest first, every change after `to`. `log` must hold every change with a
 * version in (to, currentVersion]; the caller checks that. Sorted by serviceName.
 */
export function diffToVersion(current: ReadonlyMap<string, Route>, log: readonly Change[], to: number): RouteDiff[] {
  const target = new Map(current)
  const undo = log.filter((c) => c.version > to).sort((a, b) => b.version - a.version)
  for (const change of undo) {
    if (change.before === null) target.delete(change.serviceName)
    else target.set(change.serviceName, change.before)
  }
  const names = [...new Set([...current.keys(), ...target.keys()])].sort()
  const diffs: RouteDiff[] = []
  for (const serviceName of names) {
    const before = current.get(serviceName) ?? null
    const after = target.get(serviceName) ?? null
    const same = before !== null && after !== null ? routeKey(before) === routeKey(after) : before === after
    if (!same) diffs.push({ serviceName, before, after })
  }
  return diffs
}

/**
 * Shared by both stores: a rollback target must exist and its later changes must all still
 * be in the change log (whose oldest retained entry has version `oldestLogged`).
 */
export function checkRollbackTarget(to: number, current: number, oldestLogged: number | undefined): void {
  if (!Number.isInteger(to) || to < 0 || to > current) {
    throw new VersionNotFoundError(`to: version ${to} does not exist (current version is ${current})`)
  }
  if (to < current && (oldestLogged === undefined || oldestLogged > to + 1)) {
    throw new VersionNotFoundError(`to: version ${to} is older than the change log reaches (oldest kept change is version ${oldestLogged ?? current})`)
  }
}
