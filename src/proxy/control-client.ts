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
 *
 * A replica that hangs (frozen, its event loop stuck, partitioned) refuses nothing: its
 * connections stay open and silent. The long poll asks for heartbeats (`x-tether-heartbeat: 1`,
 * see src/control/routes/v1/config.ts): a replica that can send them writes a byte every
 * 500 ms while the poll waits, and a poll that receives nothing for `livenessTimeoutMs`
 * (1.5 s) is dropped and sent to the next target at once. Whatever fails on a target also
 * cuts the other requests in flight there (a heartbeat PUT waiting on it moves on), and a
 * target that failed is tried after the others for a while (as a load balancer ejects an
 * outlier). A replica that has not yet said it sends heartbeats is asked with a conditional
 * GET first (which also answers a newer snapshot at once); one that cannot (an older control
 * plane) is long-polled the old way.
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
  /** Timeout for short requests (non-waiting config, certificates). Default 5 s. */
  requestTimeoutMs?: number
  /**
   * Longest silence accepted from a replica: a long poll that receives no byte (heartbeat) for
   * this long (and never less than two of the replica's heartbeat intervals, 500 ms today) is
   * dropped and the next replica is used; a heartbeat PUT gets twice as long. Default 1500 ms
   * (TETHER_CONTROL_LIVENESS_TIMEOUT_MS).
   */
  livenessTimeoutMs?: number
  /** A target that failed is tried after the others for this long. Default 10 s. */
  ejectMs?: number
  /**
   * Called when a request succeeded on a target after failing on others (`failures`: "label:
   * why" each), e.g. a long poll left a hung replica: for one log line an operator can act on.
   */
  onFailover?: (failures: string[], now: string) => void
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
  /** Its long polls' heartbeat interval in ms (learnt from its answers); 0: none; null: not known yet. */
  heartbeats: number | null
  /** When a request to it last failed (clock ms); cleared by an answer. */
  failedAt: number | null
}

/** The control plane's answer header that says its long polls can send heartbeats. */
const HEARTBEAT_HEADER = 'x-tether-heartbeat'

/** A target failed (5xx, timeout, connection error): try the next one. */
class TargetFailure extends Error {}

type Headers = Record<string, string | string[] | undefined>
/** What the answer handlers read: undici's body, or the same bytes already read. */
type Body = Pick<Dispatcher.ResponseData['body'], 'json' | 'text' | 'dump'>

function bufferedBody(bytes: Buffer): Body {
  const text = async (): Promise<string> => bytes.toString('utf8')
  return { text, json: async () => JSON.parse(await text()) as unknown, dump: async () => {} } as Body
}
interface Exchange {
  path: string
  method: 'GET' | 'PUT'
  body?: string
  headers?: Record<string, string>
  /** Longest wait for the status line, then longest silence while the body comes. */
  headersTimeoutMs: number
  bodyTimeoutMs: number
  /**
   * Longest silence from the target, from the request on: the status line and every chunk of
   * the body rearm it (an exact timer: undici's own timeouts above a second tick every half second).
   */
  silenceMs?: number
}

const defaultResolve = async (hostname: string): Promise<string[]> => (await dnsLookup(hostname, { all: true })).map((a) => a.address)

export function createControlClient(options: ControlClientOptions): ControlClient {
  const clock = options.clock ?? systemClock
  const random = options.random ?? Math.random
  const resolve = options.resolve ?? defaultResolve
  const resolveIntervalMs = options.resolveIntervalMs ?? 10_000
  const connectTimeoutMs = options.connectTimeoutMs ?? 2000
  const requestTimeoutMs = options.requestTimeoutMs ?? 5000
  const livenessTimeoutMs = options.livenessTimeoutMs ?? 1500
  const ejectMs = options.ejectMs ?? 10_000
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
        heartbeats: null,
        failedAt: null,
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

  /**
   * Requests in flight, by target. Whatever fails on a target (a long poll gone silent, a
   * heartbeat not answered) cuts the other requests waiting there, so they fail over now
   * rather than each at its own deadline.
   */
  const inFlight = new Set<{ target: Target; controller: AbortController }>()
  function abandon(target: Target, reason: string): void {
    for (const f of inFlight) if (f.target === target) f.controller.abort(new Error(reason))
  }

  /** The order to try targets in: from the preferred one on, those that failed lately last. */
  function order(): Target[] {
    const count = targets.length
    const rotated = Array.from({ length: count }, (_, i) => targets[(preferred + i) % count]).filter((t): t is Target => t !== undefined)
    const now = clock.now()
    const ejected = (t: Target): boolean => t.failedAt !== null && now - t.failedAt < ejectMs
    return [...rotated.filter((t) => !ejected(t)), ...rotated.filter(ejected)]
  }

  /**
   * One request to one target. Answers below 400 go to `handle`; a 5xx or a timeout throws
   * TargetFailure (try the next target), a 4xx ControlRejectedError. The target becomes the
   * preferred one as soon as its status line arrives (a long poll may then wait 30 s more).
   */
  async function call<T>(target: Target, signal: AbortSignal, exchange: Exchange, handle: (statusCode: number, headers: Headers, body: Body) => Promise<T>): Promise<T> {
    const silenceMs = exchange.silenceMs
    if (silenceMs === undefined) return exchangeOnce(target, signal, exchange, handle)
    const silent = new AbortController()
    let lastHeard = performance.now()
    let done = false
    // When the timer fires, look again after the poll phase (setImmediate): if this process was
    // busy (a long render), bytes that arrived meanwhile are read first and do not count as silence.
    const check = (): void => {
      setImmediate(() => {
        if (done) return
        const quiet = performance.now() - lastHeard
        if (quiet >= silenceMs) silent.abort(new TargetFailure(`silent for ${Math.round(quiet)} ms (no heartbeat): hung?`))
        else watchdog = setTimeout(check, silenceMs - quiet)
      })
    }
    let watchdog = setTimeout(check, silenceMs)
    try {
      return await exchangeOnce(target, AbortSignal.any([signal, silent.signal]), exchange, handle, () => void (lastHeard = performance.now()))
    } catch (error) {
      if (silent.signal.aborted && !signal.aborted) throw silent.signal.reason
      throw error
    } finally {
      done = true // a check already queued does nothing
      clearTimeout(watchdog)
    }
  }

  async function exchangeOnce<T>(
    target: Target,
    signal: AbortSignal,
    exchange: Exchange,
    handle: (statusCode: number, headers: Headers, body: Body) => Promise<T>,
    alive?: () => void,
  ): Promise<T> {
    const headers: Record<string, string> = { ...exchange.headers, authorization }
    if (exchange.body !== undefined) headers['content-type'] = 'application/json'
    const res = await request(`${target.base}${exchange.path}`, {
      method: exchange.method,
      headers,
      body: exchange.body ?? null,
      dispatcher: target.dispatcher,
      headersTimeout: exchange.headersTimeoutMs,
      bodyTimeout: exchange.bodyTimeoutMs,
      signal,
    })
    alive?.()
    if (res.statusCode >= 500) {
      const text = await res.body.text().catch(() => '')
      throw new TargetFailure(`HTTP ${res.statusCode} ${summarise(text)}`)
    }
    if (res.statusCode >= 400) {
      const text = await res.body.text().catch(() => '')
      throw new ControlRejectedError(res.statusCode, `control plane ${target.label} answered ${exchange.method} ${exchange.path} with HTTP ${res.statusCode}: ${summarise(text)}`)
    }
    if (exchange.path.startsWith('/v1/config')) target.heartbeats = heartbeatInterval(res.headers[HEARTBEAT_HEADER])
    target.failedAt = null
    const index = targets.indexOf(target)
    if (index >= 0) preferred = index
    if (alive === undefined) return handle(res.statusCode, res.headers, res.body)
    // Read it here, each chunk (a heartbeat) rearming the watchdog, and hand over the bytes.
    const chunks: Buffer[] = []
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      alive()
      chunks.push(chunk)
    }
    return handle(res.statusCode, res.headers, bufferedBody(Buffer.concat(chunks)))
  }

  /**
   * Runs `attempt` on the preferred target, failing over to the others; `attempt` makes one or
   * more `call`s to the target it is given.
   */
  async function send<T>(what: string, outerSignal: AbortSignal | undefined, attempt: (target: Target, signal: AbortSignal) => Promise<T>): Promise<T> {
    if (closed) throw new ControlUnavailableError(['client closed'])
    await ensureResolved(false)
    for (let round = 0; round < 2; round += 1) {
      const failures: string[] = []
      for (const target of order()) {
        outerSignal?.throwIfAborted()
        const flight = { target, controller: new AbortController() }
        inFlight.add(flight)
        const signal = outerSignal === undefined ? flight.controller.signal : AbortSignal.any([outerSignal, flight.controller.signal])
        try {
          const result = await attempt(target, signal)
          lastTarget = target.label
          if (failures.length > 0) options.onFailover?.(failures, target.label)
          return result
        } catch (error) {
          if (error instanceof ControlRejectedError) throw error
          if (outerSignal?.aborted === true) throw outerSignal.reason ?? error
          const cut = flight.controller.signal.aborted
          const why = cut ? describe(flight.controller.signal.reason) : describe(error)
          failures.push(`${target.label}: ${why}`)
          if (!cut) {
            target.failedAt = clock.now()
            abandon(target, `${target.label} stopped answering (${what}: ${why})`)
          }
        } finally {
          inFlight.delete(flight)
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

  /** Reads a GET /v1/config answer: 304, a snapshot, or (heartbeat long poll) `{changed:false,version}`. */
  async function readConfig(statusCode: number, headers: Headers, body: Body, fallback: number | null): Promise<ConfigPollResult> {
    if (statusCode === 304) {
      await body.dump()
      return { changed: false, version: versionFromEtag(headers.etag) ?? fallback }
    }
    let value: unknown
    try {
      value = await body.json()
    } catch (error) {
      // A long poll cut by silence ends here too: undici's body timeout, or our abort.
      if ((error as { code?: string }).code === 'UND_ERR_BODY_TIMEOUT' || (error as { name?: string }).name === 'AbortError') throw error
      throw new Error(`GET /v1/config: answer is not JSON (${describe(error)})`)
    }
    if (isUnchanged(value)) return { changed: false, version: value.version }
    if (!checkSnapshot.Check(value)) {
      const first = [...checkSnapshot.Errors(value)][0]
      throw new Error(`GET /v1/config: answer is not a config snapshot (${first?.instancePath ?? ''} ${first?.message ?? ''})`)
    }
    return { changed: true, snapshot: value }
  }

  return {
    get lastTarget() {
      return lastTarget
    },
    async fetchConfig({ since, waitSeconds, ifNoneMatch, signal }) {
      if (since === null) {
        const exchange: Exchange = { path: '/v1/config', method: 'GET', headersTimeoutMs: requestTimeoutMs, bodyTimeoutMs: requestTimeoutMs }
        if (ifNoneMatch !== undefined) exchange.headers = { 'if-none-match': `"${ifNoneMatch}"` }
        return send('GET /v1/config', signal, (target, s) => call(target, s, exchange, (code, headers, body) => readConfig(code, headers, body, ifNoneMatch ?? null)))
      }
      const longPoll = `/v1/config?since=${since}&wait=${waitSeconds}`
      return send('long poll', signal, async (target, s) => {
        if (target.heartbeats === null) {
          // Not known whether this replica sends heartbeats: a conditional GET says so (and
          // answers the new snapshot, if there is one) before the long poll.
          const check: Exchange = { path: '/v1/config', method: 'GET', headers: { 'if-none-match': `"${since}"` }, headersTimeoutMs: requestTimeoutMs, bodyTimeoutMs: requestTimeoutMs }
          const answer = await call(target, s, check, (code, headers, body) => readConfig(code, headers, body, since))
          if (answer.changed || answer.version !== since) return answer
        }
        // Silence allowed: the liveness timeout, and never less than two of the replica's intervals.
        const silenceMs = Math.max(livenessTimeoutMs, 2 * (target.heartbeats ?? 0))
        const exchange: Exchange =
          (target.heartbeats ?? 0) > 0
            ? { path: longPoll, method: 'GET', headers: { [HEARTBEAT_HEADER]: '1' }, headersTimeoutMs: silenceMs + 1000, bodyTimeoutMs: silenceMs + 1000, silenceMs }
            : { path: longPoll, method: 'GET', headersTimeoutMs: waitSeconds * 1000 + requestTimeoutMs, bodyTimeoutMs: requestTimeoutMs }
        return call(target, s, exchange, (code, headers, body) => readConfig(code, headers, body, null))
      })
    },
    async fetchCertificates(signal) {
      const exchange: Exchange = { path: '/v1/proxy/certificates', method: 'GET', headersTimeoutMs: requestTimeoutMs, bodyTimeoutMs: requestTimeoutMs }
      return send('GET /v1/proxy/certificates', signal, (target, s) =>
        call(target, s, exchange, async (_statusCode, _headers, body) => {
          const value = (await body.json()) as unknown
          if (!checkBundle.Check(value)) throw new Error('GET /v1/proxy/certificates: answer is not a certificate bundle')
          return value
        }),
      )
    },
    async heartbeat(id, heartbeat, signal) {
      // A replica's PUT is one store write: one not answered within twice the liveness timeout
      // is treated as hung and the heartbeat goes to the next replica. (A long poll that went
      // silent on the same replica cuts it sooner: see abandon().)
      const exchange: Exchange = { path: `/v1/proxies/${encodeURIComponent(id)}`, method: 'PUT', body: JSON.stringify(heartbeat), headersTimeoutMs: requestTimeoutMs, bodyTimeoutMs: requestTimeoutMs, silenceMs: 2 * livenessTimeoutMs }
      await send('heartbeat', signal, (target, s) => call(target, s, exchange, async (_statusCode, _headers, body) => void (await body.dump())))
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

/** `x-tether-heartbeat: 500` → 500; absent or not a number → 0 (no heartbeats). */
function heartbeatInterval(header: string | string[] | undefined): number {
  const value = Number(Array.isArray(header) ? header[0] : header)
  return Number.isFinite(value) && value > 0 ? Math.min(value, 60_000) : 0
}

function isUnchanged(value: unknown): value is { changed: false; version: number } {
  if (typeof value !== 'object' || value === null) return false
  const v = value as { changed?: unknown; version?: unknown }
  return v.changed === false && typeof v.version === 'number' && Number.isInteger(v.version) && v.version >= 0
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
