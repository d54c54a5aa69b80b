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
import { bindingKeys, parseBindingKey } from '../../contracts/route-planner.ts'
import { stableStringify } from '../../shared/stable-json.ts'
import { routeConflict, VersionNotFoundError } from '../errors.ts'
import type { CertificateStore } from './certificate-store.ts'

/** A stored route with who wrote it last. */
export interface RouteRecord {
  route: Route
  /** Version at which this route was last changed. */
  version: number
  updatedAt: string
  actor: string
  source: ChangeSource
}

/**
 * How a write claims its (host, path) bindings (see contracts/route-planner.ts):
 * - 'exclusive' (Tether's own forms): refused with ROUTE_CONFLICT (409) when another service
 *   holds one of the route's binding keys; checked in the same atomic step as the write;
 * - 'shared' (Docker Flow Proxy form, com.df.* labels, rollback, and the default): stored
 *   whatever others hold; the planner's precedence decides and reports the shadowed ones.
 */
export type ClaimMode = 'exclusive' | 'shared'

/** One route of a batch write. */
export interface RouteWrite {
  serviceName: string
  /** The new route (normalised), or null to remove it. */
  after: Route | null
  /** Default 'shared'. */
  claim?: ClaimMode
  /**
   * Compare-and-set: write the batch only if this service's stored route is still `expect`
   * (null: absent); otherwise the store rejects with `ExpectationFailedError` and writes nothing.
   */
  expect?: Route | null
  /**
   * The source recorded for this route (its record and change-log entry) instead of the
   * batch's `meta.source`: a restore keeps each route's own owner (discovery's stay discovery's).
   */
  source?: ChangeSource
}

/** A batch's guard on a stored route did not hold: another write came first. Nothing was written. */
export class ExpectationFailedError extends Error {
  constructor(readonly serviceName: string) {
    super(`the route of "${serviceName}" changed while this write was prepared`)
    this.name = 'ExpectationFailedError'
  }
}

export interface WriteResult {
  /** Current version: the new one when something changed. */
  version: number
  /** The route changes written (those equal to what was stored, or not owned, are left out). */
  changes: RouteDiff[]
  /** The stored route before the batch, one per write, in order. */
  befores: Array<Route | null>
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
  /** How `put` claims its bindings (default 'shared'). */
  claim?: ClaimMode
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

/** The versioned routing table: what the API, the config feed and rollback use. */
export interface RouteTable {
  snapshot(): Promise<ConfigSnapshot>
  version(): Promise<number>
  get(serviceName: string): Promise<RouteRecord | null>
  /** All routes, sorted by serviceName. */
  list(): Promise<RouteRecord[]>
  /** Creates or replaces the route of `route.serviceName`. `route` must already be normalised. */
  put(route: Route, meta: ChangeMeta, options?: WriteOptions): Promise<PutResult>
  /** `null` when there is no route for that service (and nothing changes). */
  remove(serviceName: string, meta: ChangeMeta, options?: WriteOptions): Promise<RemoveResult | null>
  /**
   * Writes a batch of route changes as ONE new version (or none, when nothing changes),
   * atomically: all or nothing. `onlyIfSource` applies to every write of the batch (a write
   * whose stored route another source owns is skipped). Rejects with ROUTE_CONFLICT (nothing
   * written) when an 'exclusive' write would take another service's binding, and with
   * ExpectationFailedError when an `expect` guard fails.
   */
  write(writes: readonly RouteWrite[], meta: ChangeMeta, options?: Pick<WriteOptions, 'onlyIfSource'>): Promise<WriteResult>
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
}

/** The fleet's heartbeats: what the fleet service uses. */
export interface ProxyRegistry {
  /** Records a proxy heartbeat; it is forgotten `ttlMs` after it was received. */
  putProxy(status: ProxyStatus, ttlMs: number): Promise<void>
  /** Live proxies (heartbeat not expired), sorted by id. */
  listProxies(): Promise<ProxyStatus[]>
}

/** Leader leases between control replicas: what Swarm discovery and ACME ordering use. */
export interface LeaseStore {
  /**
   * Takes or renews the lease `name` for `holder` for `ttlMs`. True when `holder` holds it
   * afterwards. Used so that only one control-plane replica runs Swarm discovery at a time.
   */
  acquireLease(name: string, holder: string, ttlMs: number): Promise<boolean>
  releaseLease(name: string, holder: string): Promise<void>
}

/** One store holds them all (Redis, or memory); services depend only on the part they use. */
export interface RouteStore extends RouteTable, ProxyRegistry, LeaseStore, CertificateStore {
  close(): Promise<void>
}

/** Default number of change-log entries a store keeps (rollback reaches back this far). */
export const DEFAULT_CHANGE_LOG_LIMIT = 10_000

/** Stable serialisation, whatever the key order: two equal routes give the same string. */
export function routeKey(route: Route): string {
  return stableStringify(route)
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

/** A write of a batch that changes something, with its binding keys. */
export interface PendingWrite extends RouteDiff {
  claim: ClaimMode
  keys: string[]
  /** See RouteWrite.source. */
  source?: ChangeSource
}

/**
 * Pure, shared by both stores: throws ROUTE_CONFLICT for the first binding an 'exclusive'
 * write of the batch would take from a service outside it (per `holdersOf`, the index before
 * the batch) or from another write of the same batch. Services rewritten by the batch are
 * judged by their new keys, not their stored ones (that is how a takeover frees a path).
 */
export function checkClaims(pending: readonly PendingWrite[], holdersOf: (key: string) => Iterable<string>): void {
  const inBatch = new Set(pending.map((p) => p.serviceName))
  for (const p of pending) {
    if (p.claim !== 'exclusive') continue
    for (const key of p.keys) {
      const others = [...holdersOf(key)].filter((h) => h !== p.serviceName && !inBatch.has(h))
      others.push(...pending.filter((q) => q.serviceName !== p.serviceName && q.keys.includes(key)).map((q) => q.serviceName))
      const holder = others.sort()[0]
      if (holder !== undefined) throw routeConflict({ serviceName: p.serviceName, ...parseBindingKey(key), holder })
    }
  }
}

/** The keys a write claims (none when it removes the route). */
export const keysOf = (after: Route | null): string[] => (after === null ? [] : bindingKeys(after))

/** Two stored states of one route are equal (null: absent). */
export function sameRoute(a: Route | null, b: Route | null): boolean {
  return a === null || b === null ? a === b : routeKey(a) === routeKey(b)
}
