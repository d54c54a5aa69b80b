/**
 * The embedded default store: everything in this process, nothing to install. Same contract
 * as the Redis store (see route-store.ts); lost on restart, and not shared between replicas,
 * so production runs Redis.
 */
import { EventEmitter } from 'node:events'
import type { Change, ChangeMeta, ChangeSource } from '../../contracts/change.ts'
import type { ConfigSnapshot } from '../../contracts/config-snapshot.ts'
import type { ProxyStatus } from '../../contracts/proxy-status.ts'
import type { Route } from '../../contracts/route.ts'
import {
  checkRollbackTarget,
  DEFAULT_CHANGE_LOG_LIMIT,
  diffToVersion,
  type PutResult,
  type RemoveResult,
  type RollbackResult,
  type RouteDiff,
  type RouteRecord,
  type RouteStore,
  type WriteOptions,
  checkClaims,
  ExpectationFailedError,
  keysOf,
  sameRoute,
  type PendingWrite,
  type RouteWrite,
  type WriteResult,
} from './route-store.ts'
import { checkChallenge, type CertificateChange, type CertificateMeta, type StoredCertificate } from './certificate-store.ts'

export interface MemoryRouteStoreOptions {
  /** Change-log entries kept. Default DEFAULT_CHANGE_LOG_LIMIT. */
  changeLogLimit?: number
  /** Injected for tests. Default Date.now. */
  now?: () => number
}

export function createMemoryRouteStore(options: MemoryRouteStoreOptions = {}): RouteStore {
  const changeLogLimit = options.changeLogLimit ?? DEFAULT_CHANGE_LOG_LIMIT
  const now = options.now ?? Date.now
  const records = new Map<string, RouteRecord>()
  const log: Change[] = []
  const proxies = new Map<string, { status: ProxyStatus; expiresAt: number }>()
  const leases = new Map<string, { holder: string; expiresAt: number }>()
  const events = new EventEmitter()
  events.setMaxListeners(0)
  /** Binding key → services holding it (the conflict index; see route-planner.ts). */
  const holders = new Map<string, Set<string>>()
  let version = 0
  const certificates = new Map<string, StoredCertificate>()
  const certificateLog: CertificateChange[] = []
  const challenges = new Map<string, string>()
  const acme = new Map<string, string>()

  /** A new version for a certificate or challenge change. Synchronous, hence atomic with the change. */
  function bump(): number {
    version += 1
    const published = version
    queueMicrotask(() => events.emit('version', published))
    return version
  }

  function logCertificate(operation: 'put' | 'remove', name: string, fingerprint: string | null, previousFingerprint: string | null, meta: CertificateMeta): void {
    certificateLog.push({ version, time: new Date(now()).toISOString(), operation, name, fingerprint, previousFingerprint, actor: meta.actor, source: meta.source })
    if (certificateLog.length > changeLogLimit) certificateLog.splice(0, certificateLog.length - changeLogLimit)
  }

  const byKey = <T>(entries: Iterable<[string, T]>): Array<[string, T]> => [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))

  function index(serviceName: string, before: Route | null, after: Route | null): void {
    for (const key of keysOf(before)) {
      const set = holders.get(key)
      set?.delete(serviceName)
      if (set?.size === 0) holders.delete(key)
    }
    for (const key of keysOf(after)) {
      const set = holders.get(key) ?? new Set<string>()
      set.add(serviceName)
      holders.set(key, set)
    }
  }

  /** Applies a batch of diffs as one new version. Synchronous, hence atomic. */
  function commit(diffs: Array<RouteDiff & { source?: ChangeSource }>, meta: ChangeMeta, rollbackTo?: number): number {
    version += 1
    const time = new Date(now()).toISOString()
    // Entries of one version in serviceName order, as Redis' sorted set keeps them.
    for (const { serviceName, before, after, source = meta.source } of [...diffs].sort((a, b) => (a.serviceName < b.serviceName ? -1 : 1))) {
      if (after === null) records.delete(serviceName)
      else records.set(serviceName, { route: after, version, updatedAt: time, actor: meta.actor, source })
      index(serviceName, before, after)
      const change: Change = { version, time, operation: after === null ? 'remove' : 'put', serviceName, before, after, actor: meta.actor, source }
      if (rollbackTo !== undefined) change.rollbackTo = rollbackTo
      if (meta.note !== undefined) change.note = meta.note
      log.push(change)
    }
    if (log.length > changeLogLimit) {
      // Trim by whole versions: half of a rollback's entries would make a later rollback wrong.
      const cutVersion = log[log.length - changeLogLimit - 1]!.version
      const keep = log.findIndex((c) => c.version > cutVersion)
      log.splice(0, keep === -1 ? log.length : keep)
    }
    const published = version
    queueMicrotask(() => events.emit('version', published))
    return version
  }

  const ownedBy = (record: RouteRecord | undefined, options: WriteOptions): boolean =>
    options.onlyIfSource === undefined || record === undefined || record.source === options.onlyIfSource

  const sortedRecords = (): RouteRecord[] => [...records.values()].sort((a, b) => (a.route.serviceName < b.route.serviceName ? -1 : 1))

  async function write(writes: readonly RouteWrite[], meta: ChangeMeta, options: Pick<WriteOptions, 'onlyIfSource'> = {}): Promise<WriteResult> {
    // Synchronous from here to commit(): nothing interleaves, so the batch is atomic.
    const befores: Array<Route | null> = []
    const pending: PendingWrite[] = []
    for (const w of writes) {
      const record = records.get(w.serviceName)
      const before = record?.route ?? null
      befores.push(before)
      if (w.expect !== undefined && !sameRoute(before, w.expect)) throw new ExpectationFailedError(w.serviceName)
      if (!ownedBy(record, options) || sameRoute(before, w.after)) continue
      pending.push({ serviceName: w.serviceName, before, after: w.after, claim: w.claim ?? 'shared', keys: keysOf(w.after), ...(w.source === undefined ? {} : { source: w.source }) })
    }
    if (pending.length === 0) return { version, changes: [], befores }
    checkClaims(pending, (key) => holders.get(key) ?? [])
    const changes = pending.map(({ serviceName, before, after }) => ({ serviceName, before, after }))
    return { version: commit(pending, meta), changes, befores }
  }

  return {
    async snapshot(): Promise<ConfigSnapshot> {
      const snap: ConfigSnapshot = { version, routes: sortedRecords().map((r) => r.route) }
      if (certificates.size > 0) snap.certificates = byKey(certificates).map(([name, c]) => ({ name, fingerprint: c.info.fingerprint }))
      if (challenges.size > 0) snap.challenges = byKey(challenges).map(([token, keyAuthorization]) => ({ token, keyAuthorization }))
      return snap
    },
    async version() {
      return version
    },
    async get(serviceName) {
      return records.get(serviceName) ?? null
    },
    async list() {
      return sortedRecords()
    },
    async put(route: Route, meta, options = {}): Promise<PutResult> {
      const result = await write([{ serviceName: route.serviceName, after: route, claim: options.claim ?? 'shared' }], meta, options)
      const changed = result.changes.length > 0
      return { route: changed ? route : (result.befores[0] ?? route), version: result.version, changed }
    },
    async remove(serviceName, meta, options = {}): Promise<RemoveResult | null> {
      const result = await write([{ serviceName, after: null }], meta, options)
      const removed = result.befores[0] ?? null
      return result.changes.length === 0 || removed === null ? null : { version: result.version, removed }
    },
    write,
    async changes(since, limit) {
      return log.filter((c) => c.version > since).slice(0, limit)
    },
    async rollback(to, meta): Promise<RollbackResult> {
      checkRollbackTarget(to, version, log[0]?.version)
      const current = new Map([...records].map(([name, r]) => [name, r.route]))
      const diffs = diffToVersion(current, log, to)
      if (diffs.length === 0) return { version, changed: 0 }
      return { version: commit(diffs, meta, to), changed: diffs.length }
    },
    subscribe(listener) {
      events.on('version', listener)
      return () => events.off('version', listener)
    },
    async ping() {},
    async putProxy(status, ttlMs) {
      proxies.set(status.id, { status, expiresAt: now() + ttlMs })
    },
    async listProxies() {
      const t = now()
      for (const [id, p] of proxies) if (p.expiresAt <= t) proxies.delete(id)
      return [...proxies.values()].map((p) => p.status).sort((a, b) => (a.id < b.id ? -1 : 1))
    },
    async acquireLease(name, holder, ttlMs) {
      const t = now()
      const lease = leases.get(name)
      if (lease !== undefined && lease.expiresAt > t && lease.holder !== holder) return false
      leases.set(name, { holder, expiresAt: t + ttlMs })
      return true
    },
    async releaseLease(name, holder) {
      if (leases.get(name)?.holder === holder) leases.delete(name)
    },
    async putCertificate(cert, meta) {
      const before = certificates.get(cert.facts.name)
      if (before !== undefined && before.chainPem === cert.chainPem) return { info: before.info, version, changed: false }
      bump()
      const info = { ...cert.facts, version, updatedAt: new Date(now()).toISOString(), actor: meta.actor, source: meta.source }
      certificates.set(info.name, { info, chainPem: cert.chainPem, keyBox: cert.keyBox })
      logCertificate('put', info.name, info.fingerprint, before?.info.fingerprint ?? null, meta)
      return { info, version, changed: true }
    },
    async getCertificate(name) {
      return certificates.get(name) ?? null
    },
    async listCertificates() {
      return byKey(certificates).map(([, c]) => c)
    },
    async removeCertificate(name, meta) {
      const before = certificates.get(name)
      if (before === undefined) return null
      certificates.delete(name)
      bump()
      logCertificate('remove', name, null, before.info.fingerprint, meta)
      return { version, removed: before.info }
    },
    async certificateChanges(since, limit) {
      return certificateLog.filter((c) => c.version > since).slice(0, limit)
    },
    async putChallenge(token, keyAuthorization) {
      checkChallenge(token, keyAuthorization)
      if (challenges.get(token) === keyAuthorization) return version
      challenges.set(token, keyAuthorization)
      return bump()
    },
    async removeChallenge(token) {
      checkChallenge(token)
      if (!challenges.delete(token)) return version
      return bump()
    },
    async getAcmeValue(field) {
      return acme.get(field) ?? null
    },
    async setAcmeValue(field, value) {
      if (value === null) acme.delete(field)
      else acme.set(field, value)
    },
    async acmeValues() {
      return Object.fromEntries(acme)
    },
    async close() {
      events.removeAllListeners()
    },
  }
}

