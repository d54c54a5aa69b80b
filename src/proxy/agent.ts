/**
 * The proxy agent's loop: pull the routing table from the control plane, make the engine
 * serve it, keep it as last known good, report.
 *
 * Two loops and one applier, all in this process:
 * - the poller long-polls `GET /v1/config?since=V&wait=30` and hands every snapshot that
 *   differs from the newest one known to the applier. It polls on while an apply runs, so
 *   versions that arrive meanwhile are coalesced: the applier takes only the newest.
 *   After a failure it backs off (capped exponential, jittered) and then asks for the full
 *   current snapshot (no `since`); after a long poll that ended with no change it checks
 *   (If-None-Match) that its version is still current. So a store that was restored or
 *   flushed — its version went backwards — is applied rather than ignored. A snapshot is
 *   applied whenever it differs from the one served, whatever its version number.
 * - the applier calls `engine.apply` (one call at a time), saves the snapshot in the state
 *   directory, and sends a heartbeat. When the engine fails entirely (nothing applied: HAProxy
 *   refused to reload for lack of descriptors or memory, say) it keeps serving what it has,
 *   reports the failure with HAProxy's own message (`applyFailure`), and backs off: the next
 *   attempt — with the newest snapshot by then — waits for the backoff even when new versions
 *   arrive, so a fleet that cannot apply does not reload in a loop.
 * - the heartbeat loop reports every `heartbeatMs` (and the applier after every apply).
 *
 * At start, a last known good snapshot on disk is applied before the first poll, so a proxy
 * restarted while the control plane is down serves what it served before. `ready` turns true
 * with the first successful apply, from disk or from the control plane.
 */
import type { Logger } from 'pino'
import { stableStringify } from '../shared/stable-json.ts'
import { sameCertificateRefs } from '../contracts/certificate.ts'
import type { ConfigSnapshot } from '../contracts/config-snapshot.ts'
import type { ProxyHeartbeat, ProxyTraffic, RefusedRoute, RouteProblem } from '../contracts/proxy-status.ts'
import { backoffDelay, DEFAULT_BACKOFF, systemClock, type BackoffPolicy, type Clock } from '../shared/clock.ts'
import type { ConfigPollResult, ControlClient } from './control-client.ts'
import type { BackendHealth, Engine } from './engine.ts'
import type { StateStore } from './state-store.ts'

export interface AgentOptions {
  /** This replica's id in the fleet status. */
  id: string
  /** Node name reported in heartbeats. */
  node: string
  engine: Engine
  client: ControlClient
  /** Last known good on disk; null keeps nothing (benchmark agents). */
  state: StateStore | null
  log: Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>
  /** Heartbeat interval. Default 5000 ms. */
  heartbeatMs?: number
  /**
   * How often the engine's health is read between heartbeats; a change in the number of tasks up or
   * down of any route is reported at once (what `wait=healthy` waits for), not at the next
   * heartbeat. Default 0: only at heartbeats (`tether proxy` reads it every 1000 ms).
   */
  healthWatchMs?: number
  /** Long-poll wait asked of the control plane. Default 30 s. */
  waitSeconds?: number
  /** Backoff when the control plane is unreachable or the engine fails. Default 250 ms doubling to 30 s. */
  backoff?: BackoffPolicy
  clock?: Clock
  /** [0, 1) for jitter. Default Math.random. */
  random?: () => number
  /** The proxy's traffic counters, sent with each heartbeat for the dashboard (route-metrics.ts); null when unknown. */
  traffic?: () => Promise<ProxyTraffic | null>
  /** Called after each successful apply. */
  onApplied?: (snapshot: ConfigSnapshot, refused: RefusedRoute[]) => void
}

export interface AgentStatus {
  ready: boolean
  /** Version served, null before the first apply. */
  version: number | null
  status: ProxyHeartbeat['status']
  lastError: string | null
  refusedRoutes: RefusedRoute[]
  /** Routes served with something missing (engine's ApplyResult.problems). */
  routeProblems: RouteProblem[]
  /** Whether the last request to the control plane succeeded. */
  controlReachable: boolean
  /** Set while the newest snapshot cannot be applied (the engine failed entirely). */
  applyFailure: NonNullable<ProxyHeartbeat['applyFailure']> | null
}

export interface Agent {
  /**
   * Applies the last known good snapshot from disk, if any (awaited), then starts polling and
   * heartbeating in the background. Rejects only when the state directory cannot be read.
   */
  start(): Promise<void>
  /** Stops the loops, lets an apply in progress finish, stops the engine and closes the client. Idempotent. */
  stop(): Promise<void>
  /** True once a configuration is applied (from the control plane or from disk). */
  readonly ready: boolean
  status(): AgentStatus
  /**
   * Resolves once the served snapshot has `version`, or once a snapshot with a higher version
   * is applied after this call (coalescing may skip `version`). Rejects when stop() is called.
   */
  waitForVersion(version: number): Promise<void>
}

/** The first route problem, and how many more: the heartbeat's lastError. */
function problemSummary(problems: readonly RouteProblem[]): string | null {
  const first = problems[0]
  if (first === undefined) return null
  return `${first.serviceName}: ${first.problem}${problems.length > 1 ? ` (and ${problems.length - 1} more route problem${problems.length > 2 ? 's' : ''})` : ''}`
}

/** Stable serialisation of a snapshot: the same routes give the same text, whatever the key order. */
function snapshotKey(snapshot: ConfigSnapshot): string {
  return stableStringify(snapshot)
}

/** A snapshot with its serialisation computed only when needed (10,000 routes cost milliseconds). */
interface Held {
  snapshot: ConfigSnapshot
  key?: string
}

/**
 * Same snapshot? Different versions are different snapshots; the same version is compared by
 * content, because a store restored from a backup may reuse a version number for another table.
 */
function same(a: Held, b: Held): boolean {
  if (a.snapshot.version !== b.snapshot.version) return false
  a.key ??= snapshotKey(a.snapshot)
  b.key ??= snapshotKey(b.snapshot)
  return a.key === b.key
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

export function createAgent(options: AgentOptions): Agent {
  const { engine, client, state, log } = options
  const clock = options.clock ?? systemClock
  const random = options.random ?? Math.random
  const heartbeatMs = options.heartbeatMs ?? 5000
  const healthWatchMs = options.healthWatchMs ?? 0
  /** The health last reported (healthDigest), null before the first heartbeat with it. */
  let reportedHealth: string | null = null
  const waitSeconds = options.waitSeconds ?? 30
  const backoff = options.backoff ?? DEFAULT_BACKOFF
  const stopping = new AbortController()
  const startedAt = new Date(clock.now()).toISOString()

  let served: Held | null = null
  let pending: (Held & { fromDisk: boolean }) | null = null
  let refused: RefusedRoute[] = []
  let routeProblems: RouteProblem[] = []
  let applyError: string | null = null
  let applyFailure: AgentStatus['applyFailure'] = null
  let saveError: string | null = null
  let controlError: string | null = null
  let controlReachable = false
  /** When the control plane was lost (the first failed request after a success), for the "back" line. */
  let lostAt: number | null = null
  let everReached = false
  let applier: Promise<void> | null = null
  let loops: Promise<unknown>[] = []
  let heartbeatInFlight: Promise<void> | null = null
  let heartbeatAgain = false
  let started = false
  let stopped: Promise<void> | null = null
  const waiters = new Set<{ version: number; resolve: () => void; reject: (error: Error) => void }>()

  function currentStatus(): AgentStatus {
    const descriptorProblem = served === null ? null : (engine.descriptors?.()?.problem ?? null)
    const lastError = applyError ?? saveError ?? (refused.length > 0 ? refusedSummary(refused) : null) ?? problemSummary(routeProblems) ?? descriptorProblem ?? controlError
    let status: ProxyHeartbeat['status']
    if (applyError !== null) status = 'error'
    else if (served === null) status = 'starting'
    else if (refused.length > 0 || routeProblems.length > 0 || saveError !== null || descriptorProblem !== null) status = 'degraded'
    else status = 'ok'
    return { ready: served !== null, version: served?.snapshot.version ?? null, status, lastError, refusedRoutes: refused, routeProblems, controlReachable, applyFailure }
  }

  /** Hands a snapshot to the applier unless it is the one served or already queued. */
  function offer(snapshot: ConfigSnapshot, fromDisk = false): void {
    const offered: Held & { fromDisk: boolean } = { snapshot, fromDisk }
    const newest = pending ?? served
    if (newest !== null && same(newest, offered)) return
    if (pending !== null) log.debug({ skipped: pending.snapshot.version, next: snapshot.version }, 'coalescing: a newer snapshot replaces one not applied yet')
    pending = offered
    applier ??= drain().finally(() => {
      applier = null
    })
  }

  async function drain(): Promise<void> {
    let failures = 0
    while (pending !== null && !stopping.signal.aborted) {
      const job = pending
      pending = null
      const from = job.fromDisk ? 'disk' : 'control plane'
      try {
        await syncCertificates(job)
        const result = await engine.apply(job.snapshot)
        served = job
        refused = result.refused
        const problems = result.problems ?? []
        // Logged when they change, not on every apply.
        if (JSON.stringify(problems) !== JSON.stringify(routeProblems)) for (const p of problems) log.warn({ serviceName: p.serviceName }, p.problem)
        routeProblems = problems
        if (applyError !== null) log.info({ version: job.snapshot.version }, 'applying again: the cause of the failure is gone')
        applyError = null
        applyFailure = null
        failures = 0
        if (refused.length > 0) log.warn({ version: job.snapshot.version, refused }, `applied version ${job.snapshot.version} without ${refused.length} refused route(s)`)
        else log.info({ version: job.snapshot.version, routes: job.snapshot.routes.length, from }, `applied version ${job.snapshot.version}`)
        for (const waiter of waiters) {
          if (job.snapshot.version >= waiter.version) {
            waiters.delete(waiter)
            waiter.resolve()
          }
        }
        options.onApplied?.(job.snapshot, refused)
        if (state !== null && !job.fromDisk) {
          try {
            await state.save(job.snapshot)
            saveError = null
          } catch (error) {
            saveError = `cannot save the last known good snapshot: ${message(error)}`
            log.error({ err: error }, saveError)
          }
        }
        void heartbeat()
      } catch (error) {
        failures += 1
        const delay = backoffDelay(failures, backoff, random)
        applyError = `version ${job.snapshot.version} not applied: ${message(error)}`
        applyFailure = { version: job.snapshot.version, message: message(error).slice(0, 4096), attempts: failures, nextAttemptAt: new Date(clock.now() + delay).toISOString() }
        // One line per failure, with the backoff: not one per version that arrives meanwhile.
        log.error({ err: message(error), version: job.snapshot.version, attempts: failures, retryInMs: delay }, applyError)
        void heartbeat()
        // Back off before the next attempt, with the same snapshot or a newer one that arrives
        // meanwhile: a newer version does not cut the pause short (it would fail the same way
        // while the cause, often limits or resources, lasts). stop() does.
        try {
          await clock.sleep(delay, stopping.signal)
        } catch {
          // stop()
        }
        pending ??= job
      }
    }
  }

  /**
   * Before a snapshot is applied: when it names other certificates than the engine holds, fetch
   * their chains and keys (proxy token) and hand them over. A snapshot from disk is applied with
   * the certificates the engine kept on disk (the control plane may be down).
   */
  async function syncCertificates(job: Held & { fromDisk: boolean }): Promise<void> {
    const tls = engine.certificates
    if (tls === undefined || job.fromDisk || sameCertificateRefs(tls.refs(), job.snapshot.certificates)) return
    if (client.fetchCertificates === undefined) throw new Error('this control client cannot fetch certificates')
    const bundle = await client.fetchCertificates(stopping.signal)
    for (const p of bundle.problems) log.error({ certificate: p.name }, `certificate not served: ${p.error}`)
    await tls.set(bundle.certificates)
    log.info({ certificates: bundle.certificates.map((c) => ({ name: c.name, fingerprint: c.fingerprint })) }, 'certificates received')
  }

  async function pollLoop(): Promise<void> {
    // 'full': ask for the current snapshot at once (first request, and after any failure).
    // 'poll': long poll for a version newer than `known`.
    // 'check': after a long poll that ended with no change, ask whether `known` is still the
    //   current version (If-None-Match). A long poll only wakes for *newer* versions, so this
    //   is what notices a store that went backwards (restored, flushed) while we waited.
    let mode = 'full' as 'full' | 'poll' | 'check'
    let known = 0
    let failures = 0
    while (!stopping.signal.aborted) {
      try {
        const answer: ConfigPollResult =
          mode === 'poll'
            ? await client.fetchConfig({ since: known, waitSeconds, signal: stopping.signal })
            : await client.fetchConfig({ since: null, waitSeconds, signal: stopping.signal, ...(mode === 'check' ? { ifNoneMatch: known } : {}) })
        // One line when it is back (or first reached), one when it is lost: not one per retry.
        if (lostAt !== null) {
          const awayMs = clock.now() - lostAt
          log.info({ control: client.lastTarget, awayMs, attempts: failures }, `control plane reachable again after ${Math.round(awayMs / 1000)} s (${failures} failed attempt${failures === 1 ? '' : 's'})`)
        } else if (!everReached) log.info({ control: client.lastTarget }, 'control plane reachable')
        lostAt = null
        everReached = true
        failures = 0
        controlReachable = true
        controlError = null
        if (answer.changed) {
          if (mode !== 'full' && answer.snapshot.version < known) {
            log.warn({ was: known, now: answer.snapshot.version }, 'config version went backwards (store restored?): resyncing')
          }
          offer(answer.snapshot)
          known = answer.snapshot.version
          mode = 'poll'
        } else if (answer.version !== null && answer.version !== known) {
          // The control plane is at another version than ours and did not send it: its store
          // went backwards. Ask for the whole snapshot.
          log.warn({ ours: known, theirs: answer.version }, 'control plane reports another version: resyncing')
          mode = 'full'
        } else {
          mode = mode === 'poll' && answer.version === null ? 'check' : 'poll'
        }
      } catch (error) {
        if (stopping.signal.aborted) return
        failures += 1
        mode = 'full'
        controlReachable = false
        controlError = message(error)
        const delay = backoffDelay(failures, backoff, random)
        if (lostAt === null) {
          lostAt = clock.now()
          log.warn({ err: message(error), retryInMs: delay }, `lost the control plane (${message(error)}); serving version ${served?.snapshot.version ?? 'none'} meanwhile, retrying`)
        } else log.debug({ err: message(error), failures, retryInMs: delay }, 'control plane still unreachable')
        try {
          await clock.sleep(delay, stopping.signal)
        } catch {
          return
        }
      }
    }
  }

  /** Reports at once when a route's tasks up or down change (a check starts passing or failing). */
  async function healthWatchLoop(): Promise<void> {
    while (!stopping.signal.aborted) {
      try {
        await clock.sleep(healthWatchMs, stopping.signal)
      } catch {
        return
      }
      if (reportedHealth === null || heartbeatInFlight !== null || !currentStatus().ready) continue
      try {
        if (healthDigest(await engine.health()) !== reportedHealth) void heartbeat()
      } catch (error) {
        log.debug({ err: error }, 'engine health unavailable')
      }
    }
  }

  async function heartbeatLoop(): Promise<void> {
    while (!stopping.signal.aborted) {
      void heartbeat()
      try {
        await clock.sleep(heartbeatMs, stopping.signal)
      } catch {
        return
      }
    }
  }

  /** Sends one heartbeat; calls during one in flight are coalesced into one more after it. */
  function heartbeat(): Promise<void> {
    if (heartbeatInFlight !== null) {
      heartbeatAgain = true
      return heartbeatInFlight
    }
    heartbeatInFlight = (async () => {
      do {
        heartbeatAgain = false
        if (stopping.signal.aborted) return
        const status = currentStatus()
        let backends: BackendHealth[] = []
        if (status.ready) {
          try {
            backends = await engine.health()
            reportedHealth = healthDigest(backends)
          } catch (error) {
            log.debug({ err: error }, 'engine health unavailable')
          }
        }
        const descriptors = status.ready ? (engine.descriptors?.() ?? null) : null
        const tls = status.ready ? (engine.tlsReport?.() ?? null) : null
        const oldWorkers = status.ready ? await (engine.oldWorkers?.() ?? null)?.catch(() => null) : null
        const listeners = engine.listeners?.() ?? []
        const traffic = status.ready && options.traffic !== undefined ? await options.traffic().catch(() => null) : null
        const body: ProxyHeartbeat = {
          version: status.version ?? 0,
          status: status.status,
          lastError: status.lastError === null ? null : status.lastError.slice(0, 4096),
          refusedRoutes: status.refusedRoutes,
          node: options.node,
          haproxyVersion: engine.version.slice(0, 128),
          startedAt,
          backends: compactHealth(backends),
          ...(descriptors === null ? {} : { descriptors }),
          ...(oldWorkers == null ? {} : { oldWorkers }),
          ...(status.applyFailure === null ? {} : { applyFailure: status.applyFailure }),
          ...(tls === null ? {} : { tls }),
          ...(status.routeProblems.length === 0 ? {} : { routeProblems: status.routeProblems.map((p) => ({ serviceName: p.serviceName, problem: p.problem.slice(0, 1024) })) }),
          ...(listeners.length === 0 ? {} : { listeners }),
          ...(traffic === null ? {} : { traffic }),
        }
        try {
          await client.heartbeat(options.id, body, stopping.signal)
        } catch (error) {
          if (!stopping.signal.aborted) log.debug({ err: message(error) }, 'heartbeat not delivered')
        }
      } while (heartbeatAgain)
    })().finally(() => {
      heartbeatInFlight = null
    })
    return heartbeatInFlight
  }

  return {
    get ready() {
      return served !== null
    },
    status: currentStatus,
    async start() {
      if (started) throw new Error('agent already started')
      started = true
      if (state !== null) {
        const saved = await state.load()
        if (saved !== null) {
          log.info({ version: saved.version, routes: saved.routes.length, file: state.file }, 'applying the last known good snapshot from disk')
          offer(saved, true)
          await applier
        }
      }
      loops = [pollLoop(), heartbeatLoop(), ...(healthWatchMs > 0 ? [healthWatchLoop()] : [])]
    },
    async stop() {
      stopped ??= (async () => {
        stopping.abort()
        await Promise.allSettled(loops)
        await applier?.catch(() => {})
        await heartbeatInFlight?.catch(() => {})
        for (const waiter of waiters) waiter.reject(new Error('agent stopped'))
        waiters.clear()
        await engine.stop()
        await client.close()
      })()
      return stopped
    },
    waitForVersion(version) {
      if (served?.snapshot.version === version) return Promise.resolve()
      if (stopping.signal.aborted) return Promise.reject(new Error('agent stopped'))
      return new Promise((resolve, reject) => {
        waiters.add({ version, resolve, reject })
      })
    },
  }
}

/** The counts a change of which is reported at once: per backend, its tasks up and down. */
export function healthDigest(backends: readonly BackendHealth[]): string {
  return backends.map((b) => `${b.serviceName}:${b.port ?? ''}:${b.up}:${b.down}`).join('\n')
}

/** Above this many backends, a heartbeat lists the servers only of backends with a server not up (it must stay under 1 MiB). */
const LIST_ALL_SERVERS_UP_TO = 2000

export function compactHealth(backends: BackendHealth[]): BackendHealth[] {
  if (backends.length <= LIST_ALL_SERVERS_UP_TO) return backends
  return backends.map((b) => {
    if (b.down > 0) return b
    const { servers: _servers, ...rest } = b
    return rest
  })
}

function refusedSummary(refused: RefusedRoute[]): string {
  return `refused ${refused.length} route(s): ${refused.map((r) => `${r.serviceName}: ${r.error}`).join('; ')}`
}
