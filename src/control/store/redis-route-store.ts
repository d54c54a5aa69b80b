/**
 * The production store: routes, version counter, change log, proxy heartbeats and leases in
 * Redis (ioredis), shared by every control-plane replica. Same contract as the memory store
 * (see route-store.ts); one contract test suite runs against both.
 *
 * Keys, all under `prefix` (default 'tether:'):
 *   <p>version          string   the config version (0 when absent)
 *   <p>routes           hash     serviceName → canonical route JSON (routeKey(), so equal routes
 *                                are equal strings: the idempotency check is a string compare)
 *   <p>route-meta       hash     serviceName → {version, updatedAt, actor, source}
 *   <p>changes          zset     change-log entries (JSON), scored by version, trimmed to the
 *                                newest `changeLogLimit` entries
 *   <p>proxies          hash     proxy id → ProxyStatus JSON
 *   <p>proxy-expiry     zset     proxy id, scored by expiry time (ms)
 *   <p>lease:<name>     hash     {holder, expiresAt}
 *   <p>bindings         hash     binding key → services holding it (the conflict index)
 *   <p>route-keys       hash     serviceName → its binding keys
 * and the pub/sub channel <p>version, which carries each new version.
 *
 * Every write of routes is ONE Lua script (redis-scripts.ts): the route change(s), the conflict
 * index, the version bump, the change log append and trim, and the PUBLISH. Redis runs a script
 * atomically, so no reader ever sees a route without its version, and an interrupted write
 * leaves nothing behind. Connections and their failures: redis-connection.ts.
 *
 * Time: expiry of proxies and leases uses the injected `now` of the writing replica (so tests
 * run without sleeping); replicas are assumed to have clocks synchronised well within a TTL.
 * Lease keys also get a Redis PEXPIRE of their TTL so an abandoned lease is collected.
 *
 * Unreachable Redis: commands fail fast (no offline queue, no resend of in-flight commands,
 * a per-command timeout) with StoreUnavailableError, which means "nothing was written". A
 * write whose reply is lost after it was sent is not such a failure: it may have run. Its
 * outcome is read back (see applyOnce), and when that is impossible too, the write fails with
 * WriteOutcomeUnknownError instead. The client reconnects by itself with a
 * capped backoff, and after a reconnect the subscriber re-reads the version so a publish lost
 * during the outage still wakes listeners.
 */
import type { Change, ChangeMeta } from '../../contracts/change.ts'
import type { ConfigSnapshot } from '../../contracts/config-snapshot.ts'
import type { ProxyStatus } from '../../contracts/proxy-status.ts'
import type { Route } from '../../contracts/route.ts'
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { routeConflict, StoreUnavailableError, WriteNotReplicatedError, WriteOutcomeUnknownError } from '../errors.ts'
import { checkChallenge, type CertificateChange, type CertificateFacts, type CertificateMeta, type StoredCertificate } from './certificate-store.ts'
import {
  checkRollbackTarget,
  DEFAULT_CHANGE_LOG_LIMIT,
  diffToVersion,
  routeKey,
  type PutResult,
  type RemoveResult,
  type RollbackResult,
  type RouteDiff,
  type RouteRecord,
  type RouteStore,
  type RouteWrite,
  type WriteResult,
  ExpectationFailedError,
  keysOf,
} from './route-store.ts'
import { parseBindingKey } from '../../contracts/route-planner.ts'
import type { Logger } from '../../shared/logger.ts'
import { openRedisConnection, ReplyError } from './redis-connection.ts'
import { defineScripts } from './redis-scripts.ts'


export interface RedisRouteStoreOptions {
  /** redis:// or rediss:// URL. Required (with sentinels, only its password and database are used). */
  url: string
  /** Redis Sentinel: the sentinels and the monitored primary's name (default 'mymaster'). */
  sentinels?: ReadonlyArray<{ host: string; port: number }> | undefined
  sentinelName?: string | undefined
  /** Prefix of every key and of the pub/sub channel. Default 'tether:'. */
  prefix?: string
  /** Change-log entries kept. Default DEFAULT_CHANGE_LOG_LIMIT. */
  changeLogLimit?: number
  /** Injected for tests. Default Date.now. */
  now?: () => number
  logger?: Logger
  /** How long one command may take before it fails with StoreUnavailableError. Default 1000 ms. */
  commandTimeoutMs?: number
  /** TCP connect timeout; also how long the first commands wait for the first connection. Default 1000 ms. */
  connectTimeoutMs?: number
  /** Upper bound of the reconnect backoff. Default 1000 ms. */
  maxReconnectDelayMs?: number
  /**
   * How long a write whose reply was lost (command timeout, connection dropped after it was
   * sent) is read back before the store gives up with WriteOutcomeUnknownError. Default 3000 ms.
   */
  outcomeTimeoutMs?: number
  /**
   * Durability across a failover (opt-in): a route write is acknowledged only once this many
   * replicas confirmed it (Redis WAIT); when fewer do within `waitTimeoutMs`, the write fails
   * with WriteNotReplicatedError (stored on the primary, not confirmed on the replicas).
   * Default 0: answered once the primary has it.
   */
  waitReplicas?: number
  /** How long WAIT waits for the replicas. Default 500 ms; must be below commandTimeoutMs. */
  waitTimeoutMs?: number
}

/** How long the outcome of an apply call can be read back (far longer than any read-back takes). */
const OUTCOME_TTL_MS = 10 * 60_000
/** How long a lost call stays cancelled: it must outlive any chance of it still reaching Redis. */
const CANCELLED_TTL_MS = 60 * 60_000

/** Attempts of an optimistic rollback before it gives up (only under heavy write contention). */
const ROLLBACK_ATTEMPTS = 5

interface StoredMeta {
  version: number
  updatedAt: string
  actor: string
  source: RouteRecord['source']
}

/** A certificate record as kept in the certificates hash. */
function stored(record: { facts: CertificateFacts; chainPem: string; keyBox: string }, version: number, updatedAt: string, meta: CertificateMeta): StoredCertificate {
  return { info: { ...record.facts, version, updatedAt, actor: meta.actor, source: meta.source }, chainPem: record.chainPem, keyBox: record.keyBox }
}

/** The record with version/updatedAt/actor/source from the meta hash (written by the script, always right). */
function withMeta(json: string, metaJson: string | null | undefined): StoredCertificate {
  const record = JSON.parse(json) as StoredCertificate
  if (metaJson) {
    const m = JSON.parse(metaJson) as { version: number; updatedAt: string; actor: string; source: CertificateMeta['source'] }
    record.info = { ...record.info, version: m.version, updatedAt: m.updatedAt, actor: m.actor, source: m.source }
  }
  return record
}

export function createRedisRouteStore(options: RedisRouteStoreOptions): RouteStore {
  const prefix = options.prefix ?? 'tether:'
  const changeLogLimit = options.changeLogLimit ?? DEFAULT_CHANGE_LOG_LIMIT
  if (!Number.isInteger(changeLogLimit) || changeLogLimit < 1) throw new TypeError(`changeLogLimit must be a positive integer, got ${changeLogLimit}`)
  const now = options.now ?? Date.now
  const logger = options.logger
  const commandTimeout = options.commandTimeoutMs ?? 1000
  const connectTimeout = options.connectTimeoutMs ?? 1000
  const maxReconnectDelay = options.maxReconnectDelayMs ?? 1000
  const outcomeTimeout = options.outcomeTimeoutMs ?? 3000
  const waitReplicas = options.waitReplicas ?? 0
  const waitTimeout = options.waitTimeoutMs ?? 500
  if (!Number.isInteger(waitReplicas) || waitReplicas < 0) throw new TypeError(`waitReplicas must be a non-negative integer, got ${waitReplicas}`)
  if (waitReplicas > 0 && !(Number.isInteger(waitTimeout) && waitTimeout >= 1 && waitTimeout < commandTimeout)) {
    throw new TypeError(`waitTimeoutMs must be an integer from 1 to below the command timeout (${commandTimeout} ms), got ${waitTimeout}`)
  }

  const keys = {
    version: `${prefix}version`,
    routes: `${prefix}routes`,
    meta: `${prefix}route-meta`,
    changes: `${prefix}changes`,
    bindings: `${prefix}bindings`,
    routeKeys: `${prefix}route-keys`,
    // '-v2': the index holds redirect and default-backend keys too; a store written by an older
    // Tether has only the first flag, so its index is rebuilt on the first write.
    bindingsReady: `${prefix}bindings-ready-v2`,
    proxies: `${prefix}proxies`,
    proxyExpiry: `${prefix}proxy-expiry`,
    lease: (name: string) => `${prefix}lease:${name}`,
    certificates: `${prefix}certificates`,
    certificateMeta: `${prefix}certificate-meta`,
    certificateChanges: `${prefix}certificate-changes`,
    challenges: `${prefix}acme-challenges`,
    acme: `${prefix}acme`,
    outcome: (id: string) => `${prefix}write:${id}`,
  }
  const channel = `${prefix}version`

  const connection = openRedisConnection({ url: options.url, sentinels: options.sentinels, sentinelName: options.sentinelName, connectTimeoutMs: connectTimeout, commandTimeoutMs: commandTimeout, maxReconnectDelayMs: maxReconnectDelay, logger })
  const { client, subscriber, where, ensureReady, run, atomically } = connection
  const scripts = defineScripts(client)

  const parseRoute = (json: string): Route => JSON.parse(json) as Route
  const toRecord = (routeJson: string, metaJson: string | null | undefined): RouteRecord => {
    // Written together by the apply script, so meta is always there; be lenient anyway.
    const meta: Partial<StoredMeta> = metaJson ? (JSON.parse(metaJson) as StoredMeta) : {}
    return { route: parseRoute(routeJson), version: meta.version ?? 0, updatedAt: meta.updatedAt ?? '', actor: meta.actor ?? '', source: meta.source ?? 'api' }
  }
  const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0)

  interface Applied {
    version: number
    changed: number
    /** One per write: true when it was written, false when it was skipped. */
    applied: boolean[]
    befores: Array<Route | null>
  }

  /** One apply-script call; null when expectedVersion did not match. */
  async function apply(writes: readonly RouteWrite[], meta: ChangeMeta, extra: { expectedVersion?: number; rollbackTo?: number; onlyIfSource?: string } = {}): Promise<Applied | null> {
    const args: Array<string | number> = [
      keys.version,
      keys.routes,
      keys.meta,
      keys.changes,
      keys.bindings,
      keys.routeKeys,
      keys.bindingsReady,
      extra.expectedVersion === undefined ? '' : extra.expectedVersion,
      new Date(now()).toISOString(),
      meta.actor,
      meta.source,
      extra.rollbackTo === undefined ? '' : extra.rollbackTo,
      changeLogLimit,
      channel,
      extra.onlyIfSource ?? '',
      meta.note ?? '',
    ]
    for (const w of writes) {
      const expect = w.expect === undefined ? '*' : w.expect === null ? '' : routeKey(w.expect)
      args.push(w.serviceName, w.after === null ? '' : routeKey(w.after), (w.claim === 'exclusive' ? 'x' : 's') + (w.source === undefined ? '' : `:${w.source}`), keysOf(w.after).join(' '), expect)
    }
    for (let attempt = 0; ; attempt++) {
      const reply = await applyOnce(args)
      const [code, ...rest] = reply
      if (code === -1) return null
      if (code === -2) throw routeConflict({ serviceName: String(rest[0]), ...parseBindingKey(String(rest[1])), holder: String(rest[2]) })
      if (code === -3) throw new ExpectationFailedError(String(rest[0]))
      if (code === -4 && attempt < 3) {
        await buildIndex()
        continue
      }
      if (code === -4) throw new StoreUnavailableError('the route index could not be built (the table kept changing)')
      if (code === -5) throw new StoreUnavailableError('the write was cancelled before it ran')
      const [changed, flags, ...befores] = rest
      const result = {
        version: seen(Number(code)),
        changed: Number(changed),
        applied: [...String(flags)].map((f) => f === '1'),
        befores: befores.map((b) => (b === '' ? null : parseRoute(String(b)))),
      }
      await replicated(result.version)
      return result
    }
  }

  /**
   * With waitReplicas: WAIT until that many replicas have every write this connection made (the
   * write just applied, or, for a write that changed nothing, the last one this replica made),
   * or fail with WriteNotReplicatedError saying how many did.
   */
  async function replicated(version: number): Promise<void> {
    if (waitReplicas === 0) return
    let acknowledged: number
    const epoch = connection.fenceEpoch()
    try {
      acknowledged = await run(() => client.wait(waitReplicas, waitTimeout))
      await unfenced([version], epoch)
    } catch (err) {
      if (err instanceof WriteNotReplicatedError) throw err
      throw new WriteNotReplicatedError(`whether its replicas have it is unknown (WAIT failed: ${err instanceof Error ? err.message : String(err)}) (version ${version})`)
    }
    if (acknowledged < waitReplicas) {
      throw new WriteNotReplicatedError(`${acknowledged} of the ${waitReplicas} replica(s) asked for (REDIS_WAIT_REPLICAS) confirmed it within ${waitTimeout} ms (version ${version})`)
    }
  }

  /**
   * One call of the apply script, with a definite outcome. A call refused before it was sent
   * (not connected) or refused by Redis (a reply error) changed nothing: StoreUnavailableError.
   * A call whose reply was lost after it was sent (command timeout, connection dropped) may
   * have run or may still run: its outcome key is read back, for at most outcomeTimeoutMs,
   * and that read-back either returns the call's reply or cancels the call for good. Only
   * when Redis cannot be reached for that long does the write end in WriteOutcomeUnknownError.
   */
  async function applyOnce(baseArgs: ReadonlyArray<string | number>): Promise<Array<number | string>> {
    return settled((outcomeKey) => scripts.tetherApply(...baseArgs.slice(0, 7), outcomeKey, ...baseArgs.slice(7, 16), OUTCOME_TTL_MS, ...baseArgs.slice(16)))
  }

  /**
   * Runs one write script that records its reply under a fresh outcome key (`call` passes the
   * key to the script), with the same guarantee for every write (routes, certificates, ACME
   * challenges): refused before it was sent or by Redis → StoreUnavailableError (nothing ran);
   * reply lost → the outcome is read back (the reply, or the call cancelled for good →
   * StoreUnavailableError); Redis unreachable for outcomeTimeoutMs → WriteOutcomeUnknownError.
   */
  async function settled<T>(call: (outcomeKey: string) => Promise<T>): Promise<T> {
    const outcomeKey = keys.outcome(randomUUID())
    await ensureReady()
    connection.assertWritable()
    const epoch = connection.fenceEpoch()
    let lost: unknown
    try {
      return await unfenced(await call(outcomeKey), epoch)
    } catch (err) {
      if (err instanceof WriteNotReplicatedError) throw err
      if (err instanceof ReplyError || (err instanceof Error && /enableOfflineQueue/.test(err.message))) {
        // Redis refused the script (or it was never sent): nothing ran. run() words it.
        return run(() => Promise.reject(err))
      }
      lost = err
    }
    const reason = lost instanceof Error ? lost.message : String(lost)
    logger?.warn({ redis: where, err: reason }, 'route store: the reply to a write was lost; reading its outcome back')
    const deadline = Date.now() + outcomeTimeout
    for (let attempt = 0; attempt < 1000 && Date.now() < deadline; attempt++) {
      let outcome: string | undefined
      try {
        outcome = await run(() => scripts.tetherResolve(outcomeKey, CANCELLED_TTL_MS))
      } catch (err) {
        if (!(err instanceof StoreUnavailableError)) throw err
      }
      if (outcome === 'cancelled') throw new StoreUnavailableError(`Redis at ${where} did not answer in time (${reason}); the write did not run, and never will`)
      if (outcome !== undefined) return unfenced(JSON.parse(outcome) as T, epoch)
      await sleep(Math.max(0, Math.min(100, deadline - Date.now())))
    }
    throw new WriteOutcomeUnknownError(`Redis at ${where} did not answer (${reason}), and the write's outcome could not be read back within ${outcomeTimeout} ms`)
  }

  /**
   * A write that ran, checked against Sentinel failovers: when one began while it was in flight,
   * the old primary may have run it after the replica it promotes stopped copying, so whether it
   * survives is unknown: WriteNotReplicatedError (stored on the primary, not confirmed).
   */
  async function unfenced<T>(result: T, epoch: number): Promise<T> {
    // A sentinel's announcement that arrived with this reply is read in the same event-loop
    // turn; let it be read before deciding (the reply may have been handled first).
    await new Promise((resolve) => setImmediate(resolve))
    // Every write script answers [version, ...]; 0 or less: it wrote nothing (a conflict, a
    // failed expectation, a cancelled call), which stays true.
    const version = Array.isArray(result) ? Number(result[0]) : 0
    if (connection.fenceEpoch() === epoch || !(version > 0)) return result
    throw new WriteNotReplicatedError(`a Sentinel failover began before it was confirmed (version ${version})`)
  }

  function challengeVersion([v]: [number]): number {
    if (Number(v) === -5) throw new StoreUnavailableError('the write was cancelled before it ran')
    return seen(Number(v))
  }

  /** Indexes the binding keys of routes stored before the index existed (upgrade from an older Tether). */
  async function buildIndex(): Promise<void> {
    const [v, routes] = (await atomically((m) => m.get(keys.version).hgetall(keys.routes))) as [string | null, Record<string, string>]
    const args: Array<string | number> = [keys.version, keys.bindings, keys.routeKeys, keys.bindingsReady, Number(v ?? 0)]
    for (const [name, json] of Object.entries(routes)) args.push(name, keysOf(parseRoute(json)).join(' '))
    const done = await run(() => scripts.tetherIndex(...args))
    logger?.info({ routes: Object.keys(routes).length, built: done === 1 }, 'route store: conflict index built for the stored routes')
  }

  // ---- subscriptions --------------------------------------------------------------------
  const listeners = new Set<(version: number) => void>()
  let subscribedOnce = false
  /** The last version handed to listeners. */
  let lastHeard = -1
  let reReadTimer: NodeJS.Timeout | undefined
  /** Highest version any method of this store has returned (baseline for the first subscription). */
  let observed = -1
  const seen = (version: number): number => {
    if (version > observed) observed = version
    return version
  }

  /**
   * Versions arrive in order on one connection; the only way down is a Redis that lost its
   * data (restarted without persistence), and listeners hear that too, so they can resync.
   */
  function notify(version: number): void {
    // No de-duplication: a version equal to the last one heard can be news (Redis restarted
    // empty and reached it again with another table), and listeners take repeats in stride.
    lastHeard = version
    for (const listener of [...listeners]) {
      try {
        listener(version)
      } catch (err) {
        logger?.warn({ err }, 'route store subscriber threw')
      }
    }
  }

  subscriber.on('error', () => {
    // Reported through the command connection; the subscriber reconnects by itself.
  })
  subscriber.on('message', (ch: string, message: string) => {
    if (ch === channel) notify(Number(message))
  })
  subscriber.on('ready', () => {
    // (Re)connected. Subscribe (again: SUBSCRIBE is idempotent, and its reply tells us the
    // subscription is live), then re-read the version: a publish may have been missed while
    // disconnected. On the first connection, a version newer than any this store has handed
    // out or heard is news too (a write that landed before the subscription existed).
    const first = !subscribedOnce
    subscribedOnce = true
    subscriber.subscribe(channel).then(
      () => reRead(first, 0),
      (err: unknown) => {
        if (!connection.isClosed()) logger?.warn({ err }, 'route store could not subscribe to version changes')
      },
    )
  })

  /**
   * Reads the version after a (re)subscription. The command connection may come back later
   * than the subscriber: retried every 200 ms for up to 10 s, so a publish lost in between is
   * still made up for.
   */
  function reRead(first: boolean, attempt: number): void {
    run(() => client.get(keys.version)).then(
      (v) => {
        const version = Number(v ?? 0)
        if (!first || (observed >= 0 && version > observed && version > lastHeard)) notify(version)
      },
      (err: unknown) => {
        if (connection.isClosed()) return
        if (attempt < 50) {
          reReadTimer = setTimeout(() => reRead(first, attempt + 1), 200)
          reReadTimer.unref()
        } else logger?.warn({ err }, 'route store could not read the version after reconnecting')
      },
    )
  }


  return {
    async snapshot(): Promise<ConfigSnapshot> {
      const [version, routes, certMeta, challenges] = (await atomically((m) => m.get(keys.version).hgetall(keys.routes).hgetall(keys.certificateMeta).hgetall(keys.challenges))) as [
        string | null,
        Record<string, string>,
        Record<string, string>,
        Record<string, string>,
      ]
      const names = Object.keys(routes).sort(byName)
      const snap: ConfigSnapshot = { version: seen(Number(version ?? 0)), routes: names.map((n) => parseRoute(routes[n] as string)) }
      const certNames = Object.keys(certMeta).sort(byName)
      if (certNames.length > 0) snap.certificates = certNames.map((name) => ({ name, fingerprint: (JSON.parse(certMeta[name] as string) as { fingerprint: string }).fingerprint }))
      const tokens = Object.keys(challenges).sort(byName)
      if (tokens.length > 0) snap.challenges = tokens.map((token) => ({ token, keyAuthorization: challenges[token] as string }))
      return snap
    },

    async version() {
      return seen(Number((await run(() => client.get(keys.version))) ?? 0))
    },

    async get(serviceName) {
      const [routeJson, metaJson] = (await atomically((m) => m.hget(keys.routes, serviceName).hget(keys.meta, serviceName))) as [string | null, string | null]
      return routeJson === null ? null : toRecord(routeJson, metaJson)
    },

    async list() {
      const [routes, metas] = (await atomically((m) => m.hgetall(keys.routes).hgetall(keys.meta))) as [Record<string, string>, Record<string, string>]
      return Object.keys(routes)
        .sort(byName)
        .map((n) => toRecord(routes[n] as string, metas[n]))
    },

    async put(route, meta, options = {}): Promise<PutResult> {
      const applied = (await apply([{ serviceName: route.serviceName, after: route, claim: options.claim ?? 'shared' }], meta, options)) as Applied
      const changed = applied.changed > 0
      return { route: changed ? route : (applied.befores[0] ?? route), version: applied.version, changed }
    },

    async remove(serviceName, meta, options = {}): Promise<RemoveResult | null> {
      const applied = (await apply([{ serviceName, after: null }], meta, options)) as Applied
      const removed = applied.befores[0] ?? null
      if (applied.changed === 0 || removed === null) return null
      return { version: applied.version, removed }
    },

    async write(writes, meta, options = {}): Promise<WriteResult> {
      const applied = (await apply(writes, meta, options)) as Applied
      const changes: RouteDiff[] = writes.flatMap((w, i) => (applied.applied[i] === true ? [{ serviceName: w.serviceName, before: applied.befores[i] ?? null, after: w.after }] : []))
      return { version: applied.version, changes, befores: applied.befores }
    },

    async changes(since, limit) {
      const count = Math.max(0, Math.min(Math.floor(limit), changeLogLimit))
      if (count === 0) return []
      const entries = await run(() => client.zrangebyscore(keys.changes, `(${since}`, '+inf', 'LIMIT', 0, count))
      return entries.map((e) => JSON.parse(e) as Change)
    },

    async rollback(to, meta): Promise<RollbackResult> {
      for (let attempt = 1; attempt <= ROLLBACK_ATTEMPTS; attempt++) {
        // Read the table, the version and the log since `to` at one instant; compute the diff
        // here; write it only if no other write happened in between (expectedVersion).
        const [v, routes, oldest, log] = (await atomically((m) =>
          m
            .get(keys.version)
            .hgetall(keys.routes)
            .zrange(keys.changes, 0, 0, 'WITHSCORES')
            .zrangebyscore(keys.changes, `(${Number.isFinite(to) ? to : 0}`, '+inf'),
        )) as [string | null, Record<string, string>, string[], string[]]
        const current = seen(Number(v ?? 0))
        checkRollbackTarget(to, current, oldest[1] === undefined ? undefined : Number(oldest[1]))
        const table = new Map(Object.entries(routes).map(([name, json]) => [name, parseRoute(json)]))
        const diffs: RouteDiff[] = diffToVersion(table, log.map((e) => JSON.parse(e) as Change), to)
        if (diffs.length === 0) return { version: current, changed: 0 }
        const applied = await apply(
          diffs.map((d) => ({ serviceName: d.serviceName, after: d.after })),
          meta,
          { expectedVersion: current, rollbackTo: to },
        )
        if (applied !== null) return { version: applied.version, changed: applied.changed }
      }
      throw new StoreUnavailableError(`rollback to version ${to} kept racing with other writes (${ROLLBACK_ATTEMPTS} attempts)`)
    },

    subscribe(listener) {
      listeners.add(listener)
      return () => {
        listeners.delete(listener)
      }
    },

    async ping() {
      await run(() => client.ping())
    },

    async putProxy(status: ProxyStatus, ttlMs: number) {
      await atomically((m) => m.hset(keys.proxies, status.id, JSON.stringify(status)).zadd(keys.proxyExpiry, now() + ttlMs, status.id))
    },

    async listProxies() {
      const replies = await run(() => scripts.tetherListProxies(keys.proxies, keys.proxyExpiry, now()))
      return replies
        .filter((r): r is string => typeof r === 'string')
        .map((r) => JSON.parse(r) as ProxyStatus)
        .sort((a, b) => byName(a.id, b.id))
    },

    async acquireLease(name, holder, ttlMs) {
      const t = now()
      const ttl = Math.max(1, Math.ceil(ttlMs))
      // A lease granted by a primary being failed over could be lost with it: two holders.
      connection.assertWritable()
      return (await run(() => scripts.tetherAcquireLease(keys.lease(name), holder, t, t + ttl, ttl))) === 1
    },

    async releaseLease(name, holder) {
      await run(() => scripts.tetherReleaseLease(keys.lease(name), holder))
    },

    async putCertificate(cert, meta) {
      const time = new Date(now()).toISOString()
      const record = { facts: cert.facts, chainPem: cert.chainPem, keyBox: cert.keyBox }
      const [v, changed, before] = await settled((outcomeKey) =>
        scripts.tetherCertificate(
          keys.version, keys.certificates, keys.certificateMeta, keys.certificateChanges, outcomeKey,
          'put', cert.facts.name, JSON.stringify(stored(record, 0, time, meta)), cert.chainPem, time, meta.actor, meta.source, channel, changeLogLimit, cert.facts.fingerprint, OUTCOME_TTL_MS,
        ),
      )
      if (Number(v) === -5) throw new StoreUnavailableError('the write was cancelled before it ran')
      const version = seen(Number(v))
      if (Number(changed) === 0) return { info: (JSON.parse(before) as StoredCertificate).info, version, changed: false }
      // The record is stored with version 0: the script picks the version and keeps it in the
      // meta hash, which every read applies (withMeta).
      return { info: stored(record, version, time, meta).info, version, changed: true }
    },

    async getCertificate(name) {
      const [json, metaJson] = (await atomically((m) => m.hget(keys.certificates, name).hget(keys.certificateMeta, name))) as [string | null, string | null]
      return json === null ? null : withMeta(json, metaJson)
    },

    async listCertificates() {
      const [all, metas] = (await atomically((m) => m.hgetall(keys.certificates).hgetall(keys.certificateMeta))) as [Record<string, string>, Record<string, string>]
      return Object.keys(all)
        .sort(byName)
        .map((name) => withMeta(all[name] as string, metas[name]))
    },

    async removeCertificate(name, meta) {
      const time = new Date(now()).toISOString()
      const [v, changed, before] = await settled((outcomeKey) =>
        scripts.tetherCertificate(keys.version, keys.certificates, keys.certificateMeta, keys.certificateChanges, outcomeKey, 'remove', name, '', '', time, meta.actor, meta.source, channel, changeLogLimit, '', OUTCOME_TTL_MS),
      )
      if (Number(v) === -5) throw new StoreUnavailableError('the write was cancelled before it ran')
      if (Number(changed) === 0) return null
      return { version: seen(Number(v)), removed: (JSON.parse(before) as StoredCertificate).info }
    },

    async certificateChanges(since, limit) {
      const count = Math.max(0, Math.min(Math.floor(limit), changeLogLimit))
      if (count === 0) return []
      const entries = await run(() => client.zrangebyscore(keys.certificateChanges, `(${since}`, '+inf', 'LIMIT', 0, count))
      return entries.map((e) => JSON.parse(e) as CertificateChange)
    },

    async putChallenge(token, keyAuthorization) {
      checkChallenge(token, keyAuthorization)
      return challengeVersion(await settled((outcomeKey) => scripts.tetherChallenge(keys.version, keys.challenges, outcomeKey, token, keyAuthorization, channel, OUTCOME_TTL_MS)))
    },

    async removeChallenge(token) {
      checkChallenge(token)
      return challengeVersion(await settled((outcomeKey) => scripts.tetherChallenge(keys.version, keys.challenges, outcomeKey, token, '', channel, OUTCOME_TTL_MS)))
    },

    async getAcmeValue(field) {
      return run(() => client.hget(keys.acme, field))
    },

    async setAcmeValue(field, value) {
      await run(() => (value === null ? client.hdel(keys.acme, field) : client.hset(keys.acme, field, value)))
    },

    async acmeValues() {
      return run(() => client.hgetall(keys.acme))
    },

    async close() {
      if (connection.isClosed()) return
      clearTimeout(reReadTimer)
      listeners.clear()
      await connection.close()
    },
  }
}
