/**
 * The agent's side of the control-plane API (undici): the config long poll and the
 * heartbeat. Knows nothing of HAProxy.
 *
 * Fail-over: TETHER_CONTROL_URL lists one or more base URLs; each host name is resolved to
 * every address it has (on Swarm, `http://tasks.control:8080` gives one address per control
 * replica), and each address becomes a target with its own connection pool (connections are
 * pinned to the address, while the URL, Host header and TLS name stay the configured ones).
 * A request goes to the target that answered last; on a connection error, a timeout or a 5xx
 * it moves on to the next, so one dead replica costs one failed connect. Names are resolved
 * again every `resolveIntervalMs`, and at once (at most once a second) when every target
 * failed, so replicas that came and went are followed.
 */
import { lookup as dnsLookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { Agent, type Dispatcher, request } from 'undici'
import { Type, type Static } from 'typebox'
import { Compile } from 'typebox/compile'
import { CertificateMaterialSchema } from '../contracts/certificate.ts'
import { ConfigSnapshotSchema, type ConfigSnapshot } from '../contracts/config-snapshot.ts'
import type { ProxyHeartbeat } from '../contracts/proxy-status.ts'
import { systemClock, type Clock } from '../shared/clock.ts'

const checkSnapshot = Compile(ConfigSnapshotSchema)

export const CertificateBundleSchema = Type.Object({
  certificates: Type.Array(CertificateMaterialSchema),
  problems: Type.Array(Type.Object({ name: Type.String(), error: Type.String() })),
})
export type CertificateBundle = Static<typeof CertificateBundleSchema>
const checkBundle = Compile(CertificateBundleSchema)

export type ConfigPollResult =
  /** A snapshot to consider (newer, or — after a store restore — older than `since`). */
  | { changed: true; snapshot: ConfigSnapshot }
  /**
   * No change: the long poll ended, or the `ifNoneMatch` version is still current. `version`:
   * the control plane's current version when it said (ETag), else null.
   */
  | { changed: false; version: number | null }

export interface ControlClient {
  /**
   * GET /v1/config. `since: null` asks for the current snapshot at once — with `ifNoneMatch`,
   * a cheap check that answers "unchanged" while that version is current and the snapshot
   * otherwise (newer or older); a number is a long poll of at most `waitSeconds`. Rejects with `ControlUnavailableError` when no control
   * replica answered, `ControlRejectedError` on a 4xx, an AbortError when `signal` aborts.
   */
  fetchConfig(options: { since: number | null; waitSeconds: number; ifNoneMatch?: number; signal?: AbortSignal }): Promise<ConfigPollResult>
  /**
   * GET /v1/proxy/certificates: chains and keys of every certificate (proxy token only).
   * Same errors as fetchConfig.
   */
  fetchCertificates?(signal?: AbortSignal): Promise<CertificateBundle>
  /** PUT /v1/proxies/{id}. Same errors as fetchConfig. */
  heartbeat(id: string, heartbeat: ProxyHeartbeat, signal?: AbortSignal): Promise<void>
  /** Where the last successful request went, for logs and status ("http://tasks.control:8080 via 10.0.1.7"). */
  readonly lastTarget: string | null
  close(): Promise<void>
}

/** No control replica could be reached (every target failed). */
export class ControlUnavailableError extends Error {
  readonly code = 'CONTROL_UNAVAILABLE'
  constructor(readonly failures: string[]) {
    super(`control plane unreachable: ${failures.join('; ') || 'no address'}`)
    this.name = 'ControlUnavailableError'
  }
}

/** The control plane answered, and refused (4xx): wrong token, bad request. Not retried elsewhere. */
export class ControlRejectedError extends Error {
  readonly code = 'CONTROL_REJECTED'
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message)
    this.name = 'ControlRejectedError'
  }
}

export interface ControlClientOptions {
  /** Base URLs, e.g. ['http://tasks.control:8080']. */
  urls: string[]
  token: string
  /** Re-resolve host names this often. Default 10 s. */
  resolveIntervalMs?: number
  /** Connect timeout per address: a blackholed replica must not stall fail-over. Default 2 s. */
  connectTimeoutMs?: number
  /** Timeout for short requests (heartbeat, non-waiting config). Default 5 s. */
  requestTimeoutMs?: number
  /** Injected for tests. Default dns.promises.lookup with all: true. */
  resolve?: (hostname: string) => Promise<string[]>
  clock?: Clock
  /**
   * Picks the first control replica to talk to, so that a fleet of proxies spreads its long
   * polls over every replica instead of all taking the lowest address. Default Math.random.
   */
  random?: () => number
}

interface Target {
  base: string
  address: string | null
  label: string
  dispatcher: Dispatcher
}

const defaultResolve = async (hostname: string): Promise<string[]> => (await dnsLookup(hostname, { all: true })).map((a) => a.address)

export function createControlClient(options: ControlClientOptions): ControlClient {
  const clock = options.clock ?? systemClock
  const random = options.random ?? Math.random
  const resolve = options.resolve ?? defaultResolve
  const resolveIntervalMs = options.resolveIntervalMs ?? 10_000
  const connectTimeoutMs = options.connectTimeoutMs ?? 2000
  const requestTimeoutMs = options.requestTimeoutMs ?? 5000
  const bases = options.urls.map((u) => u.replace(/\/+$/, ''))
  const authorization = `Bearer ${options.token}`

  /** Pools by "base|address", kept across re-resolutions so live connections are reused. */
  const pools = new Map<string, Target>()
  let targets: Target[] = []
  let preferred = 0
  let resolvedAt = Number.NEGATIVE_INFINITY
  let resolving: Promise<void> | null = null
  let lastTarget: string | null = null
  let closed = false

  function targetFor(base: string, address: string | null): Target {
    const key = `${base}|${address ?? ''}`
    let target = pools.get(key)
    if (target === undefined) {
      const connect: Record<string, unknown> = { timeout: connectTimeoutMs }
      if (address !== null) {
        // Pin the connection to this address; the URL's host name still goes in Host and SNI.
        const family = isIP(address)
        connect.lookup = (_host: string, opts: { all?: boolean }, cb: (...args: unknown[]) => void) =>
          opts?.all === true ? cb(null, [{ address, family }]) : cb(null, address, family)
      }
      target = {
        base,
        address,
        label: address === null ? base : `${base} via ${address}`,
        dispatcher: new Agent({ connect, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 120_000 }),
      }
      pools.set(key, target)
    }
    return target
  }

  async function resolveTargets(): Promise<void> {
    const next: Target[] = []
    for (const base of bases) {
      const hostname = new URL(base).hostname.replace(/^\[(.*)\]$/, '$1')
      if (isIP(hostname) !== 0) {
        next.push(targetFor(base, null))
        continue
      }
      try {
        const addresses = [...new Set(await resolve(hostname))].sort()
        if (addresses.length === 0) throw new Error('no address')
        for (const address of addresses) next.push(targetFor(base, address))
      } catch {
        // DNS is down or the name has no address right now: keep what we had for this URL,
        // or let the connection attempt report the error.
        const previous = targets.filter((t) => t.base === base)
        next.push(...(previous.length > 0 ? previous : [targetFor(base, null)]))
      }
    }
    const current = targets[preferred]
    targets = next
    const kept = current === undefined ? -1 : targets.indexOf(current)
    preferred = kept >= 0 ? kept : Math.floor(random() * targets.length) % Math.max(1, targets.length)
    resolvedAt = clock.now()
    const live = new Set(targets)
    for (const [key, target] of pools) {
      if (!live.has(target)) {
        pools.delete(key)
        target.dispatcher.close().catch(() => {})
      }
    }
  }

  async function ensureResolved(force: boolean): Promise<void> {
    const age = clock.now() - resolvedAt
    if (!(age >= resolveIntervalMs || (force && age >= 1000) || targets.length === 0)) return
    resolving ??= resolveTargets().finally(() => {
      resolving = null
    })
    await resolving
  }

  /** Sends to the preferred target, failing over to the others. `handle` reads the answer; returning undefined means "try the next target". */
  /**
   * Requests in flight, by target. A replica that stops answering without closing its
   * connections (frozen, paused, partitioned) is noticed by the next short request to it (a
   * heartbeat times out); the long polls waiting on it are then cut at once, so they fail over
   * now rather than when their own (wait + timeout) deadline passes.
   */
  const inFlight = new Set<{ target: Target; controller: AbortController }>()
  function abandon(target: Target, reason: string): void {
    for (const f of inFlight) if (f.target === target) f.controller.abort(new Error(reason))
  }

  async function send<T>(
    path: string,
    init: { method: 'GET' | 'PUT'; body?: string; timeoutMs: number; signal?: AbortSignal; headers?: Record<string, string> },
    handle: (statusCode: number, headers: Record<string, string | string[] | undefined>, body: Dispatcher.ResponseData['body']) => Promise<T>,
  ): Promise<T> {
    if (closed) throw new ControlUnavailableError(['client closed'])
    await ensureResolved(false)
    for (let round = 0; round < 2; round += 1) {
      const failures: string[] = []
      const count = targets.length
      for (let i = 0; i < count; i += 1) {
        init.signal?.throwIfAborted()
        const index = (preferred + i) % count
        const target = targets[index]
        if (target === undefined) continue
        const attempt = { target, controller: new AbortController() }
        inFlight.add(attempt)
        const signal = init.signal === undefined ? attempt.controller.signal : AbortSignal.any([init.signal, attempt.controller.signal])
        try {
          const headers: Record<string, string> = { ...init.headers, authorization }
          if (init.body !== undefined) headers['content-type'] = 'application/json'
          const res = await request(`${target.base}${path}`, {
            method: init.method,
            headers,
            body: init.body ?? null,
            dispatcher: target.dispatcher,
            headersTimeout: init.timeoutMs,
            bodyTimeout: init.timeoutMs,
            signal,
          })
          if (res.statusCode >= 500) {
            const text = await res.body.text().catch(() => '')
            failures.push(`${target.label}: HTTP ${res.statusCode} ${summarise(text)}`)
            continue
          }
          if (res.statusCode >= 400) {
            const text = await res.body.text().catch(() => '')
            throw new ControlRejectedError(res.statusCode, `control plane ${target.label} answered ${init.method} ${path} with HTTP ${res.statusCode}: ${summarise(text)}`)
          }
          const result = await handle(res.statusCode, res.headers, res.body)
          preferred = index
          lastTarget = target.label
          return result
        } catch (error) {
          if (error instanceof ControlRejectedError) throw error
          if (init.signal?.aborted === true) throw init.signal.reason ?? error
          const why = attempt.controller.signal.aborted ? describe(attempt.controller.signal.reason) : describe(error)
          failures.push(`${target.label}: ${why}`)
          if (!attempt.controller.signal.aborted) abandon(target, `${target.label} stopped answering (${why})`)
        } finally {
          inFlight.delete(attempt)
        }
      }
      // Every target failed: the replicas may have moved (Swarm rescheduled them), so look
      // the names up again and give the new addresses one more round.
      const before = targets
      await ensureResolved(true)
      if (round === 0 && targets.length > 0 && !sameTargets(before, targets)) continue
      throw new ControlUnavailableError(failures)
    }
    throw new ControlUnavailableError([])
  }

  return {
    get lastTarget() {
      return lastTarget
    },
    async fetchConfig({ since, waitSeconds, ifNoneMatch, signal }) {
      const query = since === null ? '' : `?since=${since}&wait=${waitSeconds}`
      const timeoutMs = since === null ? requestTimeoutMs : waitSeconds * 1000 + requestTimeoutMs
      const init: Parameters<typeof send>[1] = { method: 'GET', timeoutMs }
      if (signal !== undefined) init.signal = signal
      if (since === null && ifNoneMatch !== undefined) init.headers = { 'if-none-match': `"${ifNoneMatch}"` }
      return send('/v1/config' + query, init, async (statusCode, headers, body) => {
        if (statusCode === 304) {
          await body.dump()
          return { changed: false, version: versionFromEtag(headers.etag) ?? (since === null ? (ifNoneMatch ?? null) : null) }
        }
        let value: unknown
        try {
          value = await body.json()
        } catch (error) {
          throw new Error(`GET /v1/config: answer is not JSON (${describe(error)})`)
        }
        if (!checkSnapshot.Check(value)) {
          const first = [...checkSnapshot.Errors(value)][0]
          throw new Error(`GET /v1/config: answer is not a config snapshot (${first?.instancePath ?? ''} ${first?.message ?? ''})`)
        }
        return { changed: true, snapshot: value }
      })
    },
    async fetchCertificates(signal) {
      return send('/v1/proxy/certificates', { method: 'GET', timeoutMs: requestTimeoutMs, ...(signal === undefined ? {} : { signal }) }, async (_statusCode, _headers, body) => {
        const value = (await body.json()) as unknown
        if (!checkBundle.Check(value)) throw new Error('GET /v1/proxy/certificates: answer is not a certificate bundle')
        return value
      })
    },
    async heartbeat(id, heartbeat, signal) {
      await send(
        `/v1/proxies/${encodeURIComponent(id)}`,
        { method: 'PUT', body: JSON.stringify(heartbeat), timeoutMs: requestTimeoutMs, ...(signal === undefined ? {} : { signal }) },
        async (_statusCode, _headers, body) => {
          await body.dump()
        },
      )
    },
    async close() {
      closed = true
      const all = [...pools.values()]
      pools.clear()
      targets = []
      await Promise.all(all.map((t) => t.dispatcher.close().catch(() => {})))
    },
  }
}

/** `"17"`, `W/"17"`, `"v17"`, `"config-17"` → 17. */
export function versionFromEtag(etag: string | string[] | undefined): number | null {
  const text = Array.isArray(etag) ? etag[0] : etag
  const match = text === undefined ? null : /(\d+)"?\s*$/.exec(text)
  return match?.[1] === undefined ? null : Number(match[1])
}

function sameTargets(a: readonly Target[], b: readonly Target[]): boolean {
  return a.length === b.length && a.every((t, i) => t === b[i])
}

function summarise(text: string): string {
  try {
    const body = JSON.parse(text) as { code?: string; message?: string }
    if (typeof body.message === 'string') return `${body.code ?? ''} ${body.message}`.trim()
  } catch {
    // not JSON: show the start of it
  }
  return text.slice(0, 200)
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: string }).code
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : ''
    return `${code !== undefined ? `${code} ` : ''}${error.message}${cause}`
  }
  return String(error)
}
