/**
 * Automatic certificates (ACME, RFC 8555) with acme-client, for the whole fleet:
 * - what to issue: every route that asks (Tether's `acmeDomains`, DFP's com.df.letsencrypt.host),
 *   one certificate per route named `acme-<serviceName>`; with `everyDomain`
 *   (TETHER_ACME_EVERY_DOMAIN=on) also every other route's serviceDomain names, except wildcards
 *   (HTTP-01 cannot validate them), names that are not public DNS names, and names a certificate
 *   from elsewhere (API, DFP) already covers: uploading one is how a name opts out;
 * - who orders: exactly one control replica, the holder of the store lease 'acme' (renewed
 *   during an order); another replica takes over when it stops renewing (killed mid-order: the
 *   order is started again, the CA's pending authorizations are reused);
 * - deadlines: every request to the CA has one (requestTimeoutMs, default 30 s: a CA that
 *   accepts the connection and never answers), and so has the whole attempt (orderTimeoutMs,
 *   default 5 min: a CA that answers too slowly, proxies that never serve the challenge). An
 *   attempt past its deadline is abandoned (its pending requests are aborted), counted as a
 *   failure with a readable error, and the lease is released so another replica can try at its
 *   next round; the lease is renewed only while an attempt is within its deadline;
 * - HTTP-01: the key authorization is published in the store as a version of the feed, so every
 *   proxy answers /.well-known/acme-challenge/<token>; the CA is told to validate once every
 *   live proxy applied that version (whichever proxy it reaches answers). acme-client's own
 *   pre-check through the system resolver is skipped: the proxies' convergence is the check;
 * - renewal at two thirds of the lifetime; failures back off exponentially with jitter
 *   (1 min doubling to 24 h), so a failing CA or a rate limit is not hammered;
 * - the account key and the certificate keys are sealed (secret-box.ts) in the store.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import { createRequire } from 'node:module'
import { Agent as HttpsAgent } from 'node:https'
import * as acme from 'acme-client'
import { backoffDelay } from '../shared/clock.ts'
import type { Logger } from '../shared/logger.ts'
import type { CertificateService } from './certificates.ts'
import type { SecretBox } from './secret-box.ts'
import type { RouteStore } from './store/route-store.ts'

export const LETS_ENCRYPT_STAGING = 'https://acme-staging-v02.api.letsencrypt.org/directory'

export interface AcmeOptions {
  store: RouteStore
  /** TETHER_ACME_EVERY_DOMAIN: every route's serviceDomain, not only routes that ask. Default false. */
  everyDomain?: boolean
  /** Called after each order (Prometheus counter). */
  onOrder?: (result: 'issued' | 'failed') => void
  certificates: CertificateService
  box: SecretBox
  directoryUrl: string
  /** Account contact (TETHER_ACME_EMAIL); a route's own email is used for nothing else. */
  email?: string | undefined
  /** This replica's id (lease holder). */
  holder: string
  log: Logger
  /** Waits until every live proxy serves `version` (the challenge is then answerable everywhere). */
  waitForProxies: (version: number) => Promise<void>
  /** PEM of the CA that signs the ACME server's own HTTPS certificate (private CAs, pebble). */
  caPem?: string | undefined
  now?: () => number
  random?: () => number
  /** Between rounds. Default 60 s. */
  intervalMs?: number
  /** Delay of the first round after start (default: a second, or intervalMs when shorter); a test that drives rounds itself sets it long. */
  firstRoundDelayMs?: number
  /** Lease TTL; renewed every third of it during an order. Default 30 s. */
  leaseTtlMs?: number
  /** First retry delay after a failure, doubled up to maxBackoffMs. Default 60 s / 24 h. */
  backoffMs?: number
  maxBackoffMs?: number
  /** TETHER_ACME_REQUEST_TIMEOUT_SECONDS: each request to the CA, from connecting to the last byte of the answer. Default 30 s. */
  requestTimeoutMs?: number
  /** TETHER_ACME_ORDER_TIMEOUT_SECONDS: one whole attempt (every request, retries, the proxies serving the challenge). Default 5 min. */
  orderTimeoutMs?: number
}

export interface AcmeNameStatus {
  name: string
  /** The route it is for. */
  serviceName: string
  domains: string[]
  /** Why: the route asked (acme / letsencrypt.host), or TETHER_ACME_EVERY_DOMAIN. */
  reason: 'route' | 'every-domain'
  /** ordering: an attempt is under way (see `ordering`). */
  state: 'pending' | 'ordering' | 'valid' | 'failing'
  /** The attempt under way (or one that passed its deadline without ending: `overdue`, its replica stopped or stuck). */
  ordering?: { by: string; since: string; deadline: string; overdue: boolean }
  notAfter?: string
  /** When renewal starts (two thirds of the lifetime). */
  renewAt?: string
  /** Failed orders in a row (0 after a success). */
  failures: number
  lastError?: string
  lastFailureAt?: string
  /** When the next order starts: after the backoff of a failure, at the leader's next round; absent while ordering or when nothing is due. */
  nextAttemptAt?: string
}

/** The leader's last word on its rounds: when (a round's end or an attempt's start), by which replica, by when the next round starts. */
export interface AcmeRound {
  by: string
  at: string
  nextAt: string
}

export interface AcmeSkipped {
  serviceName: string
  domain: string
  reason: string
}

export interface AcmeStatus {
  directory: string
  everyDomain: boolean
  /** This replica holds the ordering lease (only meaningful on the replica that answers). */
  leader: boolean
  certificates: AcmeNameStatus[]
  /** With everyDomain: names of routes no certificate is ordered for, and why. */
  skipped: AcmeSkipped[]
  /** The last round any replica finished (absent before the first). */
  lastRound?: AcmeRound
}

export interface Acme {
  /** One round: take the lease, issue or renew what is due. Resolves when done (never rejects). */
  runOnce(): Promise<void>
  status(): Promise<AcmeStatus>
  /** Whether this replica held the ordering lease at its last round. */
  isLeader(): boolean
  /** Errors of orders since start (Prometheus counter source). */
  readonly errors: number
  stop(): Promise<void>
}

export interface Wanted {
  name: string
  serviceName: string
  domains: string[]
  reason: 'route' | 'every-domain'
}

interface Failure {
  failures: number
  lastError: string
  nextAttemptAt: number
  at?: number
}

/** An attempt under way, in the store (any replica's status shows it). */
interface AttemptRecord {
  by: string
  since: number
  deadline: number
}

interface RoundRecord {
  by: string
  at: number
  nextAt: number
}

/** The facts of a stored certificate the choice of what to order depends on. */
export interface CoveringCertificate {
  name: string
  domains: readonly string[]
  notAfter: string
  source: string
}

const LEASE = 'acme'
const ACCOUNT_KEY = 'account-key'
const ROUND = 'round'
const failureField = (name: string): string => `failure:${name}`
const attemptField = (name: string): string => `attempt:${name}`

export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000
export const DEFAULT_ORDER_TIMEOUT_MS = 300_000

/** `30 s`, `1.5 s`, `5 min`. */
export function seconds(ms: number): string {
  if (ms >= 120_000 && ms % 60_000 === 0) return `${ms / 60_000} min`
  return `${Number((ms / 1000).toFixed(3))} s`
}

/** Where a request went, for messages: origin and path (ACME URLs hold no secret; no query). */
function where(url: unknown): string {
  try {
    const u = new URL(String(url))
    return `${u.origin}${u.pathname}`
  } catch {
    return String(url)
  }
}

/**
 * What went wrong with a request that got no HTTP answer, said for an operator. Pure.
 * `timedOutMs`: the request's own deadline fired.
 */
export function requestFailure(err: { code?: string | undefined; message?: string | undefined; cause?: unknown }, url: string, timedOutMs?: number): string {
  const at = where(url)
  if (timedOutMs !== undefined) return `CA at ${at} did not answer within ${seconds(timedOutMs)}`
  const code = err.code ?? (err.cause as { code?: string } | undefined)?.code
  const message = err.message ?? ''
  if (code === 'ECONNRESET' || /socket hang up/i.test(message)) return `connection reset by ${at}`
  if (code === 'ECONNREFUSED') return `connection refused by ${at}`
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `the name of ${at} does not resolve (${code})`
  if (code === 'EPIPE') return `connection closed by ${at} while sending`
  if (typeof code === 'string' && /CERT|SSL|TLS|SELF_SIGNED/i.test(code)) return `TLS with ${at} failed: ${message} (${code})`
  return `request to ${at} failed: ${message}${code === undefined ? '' : ` (${code})`}`
}

/**
 * What every request of an attempt needs: the attempt's abort signal (the attempt deadline,
 * stop()), its request deadline, the agent that trusts a private ACME server's CA. Carried in
 * async context because acme-client's axios instance is one per process.
 */
interface AttemptContext {
  signal: AbortSignal
  requestTimeoutMs: number
  httpsAgent: HttpsAgent | undefined
}
const attemptContext = new AsyncLocalStorage<AttemptContext>()

type AxiosConfig = { url?: string; signal?: unknown; timeout?: number; httpsAgent?: unknown }
type Adapter = (config: AxiosConfig) => Promise<unknown>

/**
 * acme-client 5.x sets no timeout on its axios instance, and its retry interceptor reads
 * `error.response.config` of an error without a response ("Cannot read properties of
 * undefined (reading 'config')" for a connection reset or a timeout). This adapter wraps axios'
 * own HTTP adapter: every request gets a deadline (an abort, which also covers a CA that
 * trickles its answer, unlike a socket idle timeout) and aborts with the attempt; a request
 * without an HTTP answer fails with a readable message and no `config`, which the interceptor
 * passes through untouched (no retry of its own: the orderer's backoff retries). Requests
 * with an HTTP answer (4xx, 5xx) go through acme-client's handling as before.
 */
let adapterInstalled = false
const aborted = (context: AttemptContext | undefined): boolean => context?.signal.aborted === true
function installDeadlineAdapter(): void {
  if (adapterInstalled) return
  // The axios acme-client itself loads (a copy of our own could differ).
  const requireFromAcme = createRequire(createRequire(import.meta.url).resolve('acme-client'))
  const http = (requireFromAcme('axios') as { getAdapter(name: string): Adapter }).getAdapter('http')
  const adapter: Adapter = async (config) => {
    const context = attemptContext.getStore()
    const timeoutMs = context?.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
    const url = String(config.url ?? '')
    if (aborted(context)) throw new Error(`${String((context?.signal.reason as Error | undefined)?.message ?? 'attempt abandoned')}; request to ${where(url)} not sent`)
    const controller = new AbortController()
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      controller.abort()
    }, timeoutMs)
    const onAbort = (): void => controller.abort()
    context?.signal.addEventListener('abort', onAbort, { once: true })
    try {
      return await http({ ...config, signal: controller.signal, ...(context?.httpsAgent === undefined ? {} : { httpsAgent: context.httpsAgent }) })
    } catch (err) {
      const e = err as { response?: unknown; code?: string; message?: string; cause?: unknown }
      if (e.response !== undefined && e.response !== null) throw err
      if (aborted(context) && !timedOut) throw new Error(`${String((context?.signal.reason as Error | undefined)?.message ?? 'attempt abandoned')}; request to ${where(url)} aborted`)
      throw new Error(requestFailure(e, url, timedOut ? timeoutMs : undefined))
    } finally {
      clearTimeout(timer)
      context?.signal.removeEventListener('abort', onAbort)
    }
  }
  ;(acme.axios.defaults as { adapter?: unknown }).adapter = adapter
  adapterInstalled = true
}

/** Whether a certificate name (possibly `*.example.com`) covers `domain`. */
export function covers(certDomain: string, domain: string): boolean {
  const c = certDomain.toLowerCase()
  if (c === domain) return true
  if (!c.startsWith('*.')) return false
  const rest = domain.slice(domain.indexOf('.') + 1)
  return domain.includes('.') && rest === c.slice(2)
}

/** A name an ACME CA can validate over HTTP-01: a DNS name with a dot, not an IP address, no wildcard. */
function acmeProblem(domain: string): string | null {
  if (domain.startsWith('*')) return 'a wildcard name cannot be validated over HTTP-01; upload a certificate for it'
  if (/^[0-9.]+$/.test(domain) || domain.includes(':')) return 'an IP address, not a DNS name'
  if (!domain.includes('.')) return 'not a fully qualified DNS name'
  return null
}

type RouteLike = { serviceName: string; acmeDomains?: string[] | undefined; serviceDomain?: readonly string[] | undefined; destinations?: ReadonlyArray<{ serviceDomain?: readonly string[] | undefined }> | undefined }

/**
 * Pure: the certificates to order. Routes that ask (acmeDomains) get theirs; with
 * `everyDomain`, every other route gets one for its own names (route and per-destination
 * serviceDomain), leaving out names ACME cannot validate and names a certificate not issued
 * by ACME already covers (valid at `now`): those are listed in `skipped` with the reason.
 */
export function wantedCertificates(
  routes: ReadonlyArray<RouteLike>,
  options: { everyDomain?: boolean; certificates?: readonly CoveringCertificate[]; now?: number } = {},
): { wanted: Wanted[]; skipped: AcmeSkipped[] } {
  const wanted: Wanted[] = []
  const skipped: AcmeSkipped[] = []
  const now = options.now ?? Date.now()
  const others = (options.certificates ?? []).filter((c) => c.source !== 'acme' && Date.parse(c.notAfter) > now)
  for (const r of routes) {
    if (r.acmeDomains !== undefined && r.acmeDomains.length > 0) {
      wanted.push({ name: `acme-${r.serviceName}`, serviceName: r.serviceName, domains: [...r.acmeDomains].sort(), reason: 'route' })
      continue
    }
    if (options.everyDomain !== true) continue
    const names = new Set<string>([...(r.serviceDomain ?? []), ...(r.destinations ?? []).flatMap((d) => d.serviceDomain ?? [])].map((d) => d.toLowerCase()))
    const domains: string[] = []
    for (const domain of [...names].sort()) {
      const problem = acmeProblem(domain)
      const holder = problem === null ? others.find((c) => c.domains.some((d) => covers(d, domain))) : undefined
      if (problem !== null) skipped.push({ serviceName: r.serviceName, domain, reason: problem })
      else if (holder !== undefined) skipped.push({ serviceName: r.serviceName, domain, reason: `covered by certificate '${holder.name}' (${holder.source})` })
      else domains.push(domain)
    }
    if (domains.length > 0) wanted.push({ name: `acme-${r.serviceName}`, serviceName: r.serviceName, domains, reason: 'every-domain' })
  }
  return { wanted, skipped }
}

/** Reads what is wanted and how each order stands, from the store (any replica can answer). */
export async function readAcmeStatus(
  store: RouteStore,
  options: { directoryUrl: string; everyDomain?: boolean; leader?: boolean; now?: number },
): Promise<AcmeStatus> {
  const now = options.now ?? Date.now()
  const [records, stored, values] = await Promise.all([store.list(), store.listCertificates(), store.acmeValues()])
  const { wanted, skipped } = wantedCertificates(
    records.map((r) => r.route),
    { everyDomain: options.everyDomain ?? false, certificates: stored.map((c) => c.info), now },
  )
  const byName = new Map(stored.map((c) => [c.info.name, c]))
  const parse = <T>(field: string): T | null => {
    const text = values[field]
    if (text === undefined) return null
    try {
      return JSON.parse(text) as T
    } catch {
      return null
    }
  }
  const round = parse<RoundRecord>(ROUND)
  const certificates = wanted.map((w): AcmeNameStatus => {
    const cert = byName.get(w.name)
    const failure = parse<Failure>(failureField(w.name))
    const attempt = parse<AttemptRecord>(attemptField(w.name))
    const ordering = attempt !== null && now < attempt.deadline
    const s: AcmeNameStatus = {
      name: w.name,
      serviceName: w.serviceName,
      domains: w.domains,
      reason: w.reason,
      state: ordering ? 'ordering' : failure !== null ? 'failing' : cert === undefined ? 'pending' : 'valid',
      failures: failure?.failures ?? 0,
    }
    if (attempt !== null) s.ordering = { by: attempt.by, since: new Date(attempt.since).toISOString(), deadline: new Date(attempt.deadline).toISOString(), overdue: !ordering }
    if (cert !== undefined) {
      s.notAfter = cert.info.notAfter
      s.renewAt = new Date(renewalTime(cert.info)).toISOString()
    }
    if (failure !== null) {
      s.lastError = failure.lastError
      if (failure.at !== undefined) s.lastFailureAt = new Date(failure.at).toISOString()
    }
    // The next attempt: not before the backoff (or the renewal time), and only at a round: the
    // leader's next one when that is later. A time in the past means no replica ran that round.
    if (!ordering) {
      const due = failure !== null ? failure.nextAttemptAt : cert === undefined || !sameDomains(cert.info.domains, w.domains) ? now : renewalTime(cert.info)
      if (failure !== null || due <= now) s.nextAttemptAt = new Date(Math.max(due, round?.nextAt ?? due)).toISOString()
    }
    return s
  })
  return {
    directory: options.directoryUrl,
    everyDomain: options.everyDomain ?? false,
    leader: options.leader ?? false,
    certificates,
    skipped,
    ...(round === null ? {} : { lastRound: { by: round.by, at: new Date(round.at).toISOString(), nextAt: new Date(round.nextAt).toISOString() } }),
  }
}

function sameDomains(a: readonly string[], b: readonly string[]): boolean {
  return JSON.stringify([...a].map((d) => d.toLowerCase()).sort()) === JSON.stringify([...b].map((d) => d.toLowerCase()).sort())
}

/** Pure: renew at two thirds of the lifetime; due at once when absent or for other domains. */
export function renewalTime(cert: { notBefore: string; notAfter: string }): number {
  const from = Date.parse(cert.notBefore)
  const to = Date.parse(cert.notAfter)
  return from + ((to - from) * 2) / 3
}

/** Pure: the delay before the next order after `failures` failures in a row: the shared backoff (exponential, capped, with jitter). */
export function retryDelay(failures: number, baseMs: number, maxMs: number, random: number): number {
  return backoffDelay(failures, { baseMs, maxMs }, () => random)
}

export function startAcme(options: AcmeOptions): Acme {
  const { store, certificates, box, log } = options
  const now = options.now ?? Date.now
  const random = options.random ?? Math.random
  const intervalMs = options.intervalMs ?? 60_000
  const leaseTtlMs = options.leaseTtlMs ?? 30_000
  const backoffMs = options.backoffMs ?? 60_000
  const maxBackoffMs = options.maxBackoffMs ?? 86_400_000
  const everyDomain = options.everyDomain ?? false
  let errors = 0
  let leader = false
  let stopped = false
  let running: Promise<void> | null = null
  let keepAlive: NodeJS.Timeout | undefined
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
  const orderTimeoutMs = options.orderTimeoutMs ?? DEFAULT_ORDER_TIMEOUT_MS
  for (const [field, value] of [['requestTimeoutMs', requestTimeoutMs], ['orderTimeoutMs', orderTimeoutMs]] as const) {
    if (!Number.isFinite(value) || value <= 0) throw new RangeError(`ACME ${field} must be a positive number of milliseconds (got ${value})`)
  }
  /** Aborts the attempt under way (its deadline, stop()). */
  let current: AbortController | undefined
  installDeadlineAdapter()
  const httpsAgent = options.caPem === undefined ? undefined : new HttpsAgent({ ca: options.caPem })

  async function accountKey(): Promise<string> {
    const sealed = await store.getAcmeValue(ACCOUNT_KEY)
    if (sealed !== null) return box.open(sealed, 'acme:account-key')
    const key = (await acme.crypto.createPrivateEcdsaKey('P-256')).toString()
    await store.setAcmeValue(ACCOUNT_KEY, box.seal(key, 'acme:account-key'))
    // Another replica may have raced: use whatever is stored now.
    return box.open((await store.getAcmeValue(ACCOUNT_KEY)) as string, 'acme:account-key')
  }

  async function due(w: Wanted): Promise<boolean> {
    const failure = await readFailure(w.name)
    if (failure !== null && failure.nextAttemptAt > now()) return false
    const stored = await store.getCertificate(w.name)
    if (stored === null) return true
    if (JSON.stringify([...stored.info.domains].sort()) !== JSON.stringify(w.domains.map((d) => d.toLowerCase()))) return true
    return now() >= renewalTime(stored.info)
  }

  async function readFailure(name: string): Promise<Failure | null> {
    const text = await store.getAcmeValue(failureField(name))
    return text === null ? null : (JSON.parse(text) as Failure)
  }

  async function order(w: Wanted): Promise<void> {
    // The account URL is kept per directory: without it every order would register again, and
    // a CA may refuse that second registration's empty update (pebble does, without an email).
    const urlField = `account-url ${options.directoryUrl}`
    const accountUrl = await store.getAcmeValue(urlField)
    const client = new acme.Client({ directoryUrl: options.directoryUrl, accountKey: await accountKey(), ...(accountUrl === null ? {} : { accountUrl }) })
    const [key, csr] = await acme.crypto.createCsr({ commonName: w.domains[0] as string, altNames: w.domains }, await acme.crypto.createPrivateEcdsaKey('P-256'))
    const saveAccountUrl = async (): Promise<void> => {
      if (accountUrl !== null) return
      let url: string
      try {
        url = client.getAccountUrl()
      } catch {
        return // not registered (the CA was not reached)
      }
      await store.setAcmeValue(urlField, url).catch(() => undefined)
    }
    const chain = await client.auto({
      csr,
      ...(options.email === undefined ? {} : { email: options.email }),
      termsOfServiceAgreed: true,
      challengePriority: ['http-01'],
      // The proxies' convergence on the challenge's version is the check (the system resolver
      // of this replica may not resolve the names the CA validates).
      skipChallengeVerification: true,
      challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
        const version = await store.putChallenge(challenge.token, keyAuthorization)
        await options.waitForProxies(version)
      },
      challengeRemoveFn: async (_authz, challenge) => {
        await store.removeChallenge(challenge.token)
      },
      // biome-ignore lint/nursery/noMisusedPromises: finally() waits for the promise its callback returns
    }).finally(saveAccountUrl)
    const result = await certificates.put(w.name, { certificate: chain, key: key.toString() }, { actor: 'acme', source: 'acme' })
    await store.setAcmeValue(failureField(w.name), null)
    log.info({ certificate: w.name, domains: w.domains, fingerprint: result.info.fingerprint, notAfter: result.info.notAfter, version: result.version }, 'certificate issued by ACME')
  }

  /**
   * One attempt at `w` within orderTimeoutMs. Past the deadline the attempt is abandoned: its
   * requests are aborted, whatever it still awaits (the proxies) is left to settle unobserved.
   */
  async function attempt(w: Wanted): Promise<void> {
    const controller = new AbortController()
    current = controller
    const since = now()
    const record: AttemptRecord = { by: options.holder, since, deadline: since + orderTimeoutMs }
    let deadline: NodeJS.Timeout | undefined
    const expired = new Promise<never>((_, reject) => {
      deadline = setTimeout(() => {
        const err = new Error(`order abandoned: not done within ${seconds(orderTimeoutMs)} (TETHER_ACME_ORDER_TIMEOUT_SECONDS)`)
        controller.abort(err)
        reject(err)
      }, orderTimeoutMs)
    })
    const work = (async () => {
      await store.setAcmeValue(attemptField(w.name), JSON.stringify(record))
      // The next round starts by the attempt's deadline and an interval: what status expects.
      await store.setAcmeValue(ROUND, JSON.stringify({ by: options.holder, at: since, nextAt: record.deadline + intervalMs } satisfies RoundRecord))
      await attemptContext.run({ signal: controller.signal, requestTimeoutMs, httpsAgent }, () => order(w))
    })()
    work.catch(() => undefined) // an abandoned attempt's own failure is not reported again
    try {
      await Promise.race([work, expired])
    } finally {
      clearTimeout(deadline)
      if (current === controller) current = undefined
      await store.setAcmeValue(attemptField(w.name), null).catch(() => undefined)
    }
  }

  async function round(): Promise<void> {
    leader = await store.acquireLease(LEASE, options.holder, leaseTtlMs).catch(() => false)
    if (!leader) return
    const { wanted } = wantedCertificates(
      (await store.list()).map((r) => r.route),
      { everyDomain, certificates: (await store.listCertificates()).map((c) => c.info), now: now() },
    )
    for (const w of wanted) {
      if (stopped || !(await due(w))) continue
      // Keep the lease while ordering (an order takes seconds to minutes), never past the
      // attempt's deadline: a stuck replica must not keep the others from trying.
      keepAlive = setInterval(() => void store.acquireLease(LEASE, options.holder, leaseTtlMs).catch(() => undefined), Math.max(100, leaseTtlMs / 3))
      let abandoned = false
      try {
        await attempt(w)
        options.onOrder?.('issued')
      } catch (err) {
        clearInterval(keepAlive)
        errors += 1
        options.onOrder?.('failed')
        abandoned = (err as Error).message.startsWith('order abandoned')
        const previous = await readFailure(w.name).catch(() => null)
        const failures = (previous?.failures ?? 0) + 1
        const message = err instanceof Error ? err.message : String(err)
        const failure: Failure = { failures, lastError: message.slice(0, 500), at: now(), nextAttemptAt: now() + retryDelay(failures, backoffMs, maxBackoffMs, random()) }
        await store.setAcmeValue(failureField(w.name), JSON.stringify(failure)).catch(() => undefined)
        log.warn({ certificate: w.name, domains: w.domains, failures, nextAttemptAt: new Date(failure.nextAttemptAt).toISOString(), err: message }, 'ACME order failed; will retry')
      } finally {
        clearInterval(keepAlive)
      }
      if (abandoned) {
        // Whatever held this attempt up may hold the next: let another replica try.
        await store.releaseLease(LEASE, options.holder).catch(() => undefined)
        leader = false
        log.warn({ certificate: w.name }, 'ACME lease released after an abandoned order; another replica may take over')
        break
      }
    }
    const at = now()
    const record: RoundRecord = { by: options.holder, at, nextAt: at + intervalMs }
    await store.setAcmeValue(ROUND, JSON.stringify(record)).catch(() => undefined)
  }

  let timer: NodeJS.Timeout | undefined
  /** The first round runs a second after start (a fresh deployment should not wait a whole interval), then every interval. */
  const schedule = (delayMs = intervalMs): void => {
    if (stopped) return
    timer = setTimeout(() => {
      void acmeApi.runOnce().finally(() => schedule())
    }, delayMs)
    timer.unref()
  }

  const acmeApi: Acme = {
    runOnce() {
      running ??= round()
        .catch((err: unknown) => log.error({ err }, 'ACME round failed'))
        .finally(() => {
          running = null
        })
      return running
    },
    get errors() {
      return errors
    },
    isLeader: () => leader,
    status() {
      return readAcmeStatus(store, { directoryUrl: options.directoryUrl, everyDomain, leader, now: now() })
    },
    async stop() {
      stopped = true
      clearTimeout(timer)
      clearInterval(keepAlive)
      current?.abort(new Error('order abandoned: this replica is stopping'))
      // An order stuck on the CA does not hold up shutdown for long: the lease expires and another replica resumes.
      let bound: NodeJS.Timeout | undefined
      await Promise.race([running, new Promise<void>((r) => (bound = setTimeout(r, 5_000)))])
      clearTimeout(bound)
      if (leader) await store.releaseLease(LEASE, options.holder).catch(() => undefined)
    },
  }
  schedule(options.firstRoundDelayMs ?? Math.min(intervalMs, 1_000))
  return acmeApi
}
