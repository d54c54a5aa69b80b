/**
 * Automatic certificates (ACME, RFC 8555) with acme-client, for the whole fleet:
 * - what to issue: every route that asks (Tether's `acmeDomains`, DFP's com.df.letsencrypt.host),
 *   one certificate per route named `acme-<serviceName>`;
 * - who orders: exactly one control replica, the holder of the store lease 'acme' (renewed
 *   during an order); another replica takes over when it stops renewing (killed mid-order: the
 *   order is started again, the CA's pending authorizations are reused);
 * - HTTP-01: the key authorization is published in the store as a version of the feed, so every
 *   proxy answers /.well-known/acme-challenge/<token>; the CA is told to validate once every
 *   live proxy applied that version (whichever proxy it reaches answers). acme-client's own
 *   pre-check through the system resolver is skipped: the proxies' convergence is the check;
 * - renewal at two thirds of the lifetime; failures back off exponentially with jitter
 *   (1 min doubling to 24 h), so a failing CA or a rate limit is not hammered;
 * - the account key and the certificate keys are sealed (secret-box.ts) in the store.
 */
import { Agent as HttpsAgent } from 'node:https'
import * as acme from 'acme-client'
import type { CertificateService } from './certificates.ts'
import type { SecretBox } from './secret-box.ts'
import type { RouteStore } from './store/route-store.ts'

export const LETS_ENCRYPT_STAGING = 'https://acme-staging-v02.api.letsencrypt.org/directory'

export interface AcmeLogger {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

export interface AcmeOptions {
  store: RouteStore
  certificates: CertificateService
  box: SecretBox
  directoryUrl: string
  /** Account contact (TETHER_ACME_EMAIL); a route's own email is used for nothing else. */
  email?: string | undefined
  /** This replica's id (lease holder). */
  holder: string
  log: AcmeLogger
  /** Waits until every live proxy serves `version` (the challenge is then answerable everywhere). */
  waitForProxies: (version: number) => Promise<void>
  /** PEM of the CA that signs the ACME server's own HTTPS certificate (private CAs, pebble). */
  caPem?: string | undefined
  now?: () => number
  random?: () => number
  /** Between rounds. Default 60 s. */
  intervalMs?: number
  /** Lease TTL; renewed every third of it during an order. Default 30 s. */
  leaseTtlMs?: number
  /** First retry delay after a failure, doubled up to maxBackoffMs. Default 60 s / 24 h. */
  backoffMs?: number
  maxBackoffMs?: number
}

export interface AcmeNameStatus {
  name: string
  domains: string[]
  state: 'pending' | 'valid' | 'failing'
  notAfter?: string
  renewAt?: string
  failures: number
  lastError?: string
  nextAttemptAt?: string
}

export interface AcmeStatus {
  directory: string
  leader: boolean
  certificates: AcmeNameStatus[]
}

export interface Acme {
  /** One round: take the lease, issue or renew what is due. Resolves when done (never rejects). */
  runOnce(): Promise<void>
  status(): Promise<AcmeStatus>
  /** Errors of orders since start (Prometheus counter source). */
  readonly errors: number
  stop(): Promise<void>
}

interface Wanted {
  name: string
  domains: string[]
}

interface Failure {
  failures: number
  lastError: string
  nextAttemptAt: number
}

const LEASE = 'acme'
const ACCOUNT_KEY = 'account-key'
const failureField = (name: string): string => `failure:${name}`

/** Pure: the certificates the routes ask for. */
export function wantedCertificates(routes: ReadonlyArray<{ serviceName: string; acmeDomains?: string[] | undefined }>): Wanted[] {
  return routes
    .filter((r) => r.acmeDomains !== undefined && r.acmeDomains.length > 0)
    .map((r) => ({ name: `acme-${r.serviceName}`, domains: [...(r.acmeDomains as string[])].sort() }))
}

/** Pure: renew at two thirds of the lifetime; due at once when absent or for other domains. */
export function renewalTime(cert: { notBefore: string; notAfter: string }): number {
  const from = Date.parse(cert.notBefore)
  const to = Date.parse(cert.notAfter)
  return from + ((to - from) * 2) / 3
}

/** Pure: exponential backoff with ±25 % jitter, capped. */
export function retryDelay(failures: number, baseMs: number, maxMs: number, random: number): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, failures - 1))
  return Math.round(exp * (0.75 + random * 0.5))
}

export function startAcme(options: AcmeOptions): Acme {
  const { store, certificates, box, log } = options
  const now = options.now ?? Date.now
  const random = options.random ?? Math.random
  const intervalMs = options.intervalMs ?? 60_000
  const leaseTtlMs = options.leaseTtlMs ?? 30_000
  const backoffMs = options.backoffMs ?? 60_000
  const maxBackoffMs = options.maxBackoffMs ?? 86_400_000
  let errors = 0
  let leader = false
  let stopped = false
  let running: Promise<void> | null = null
  let keepAlive: NodeJS.Timeout | undefined
  if (options.caPem !== undefined) acme.axios.defaults.httpsAgent = new HttpsAgent({ ca: options.caPem })

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
    const client = new acme.Client({ directoryUrl: options.directoryUrl, accountKey: await accountKey() })
    const [key, csr] = await acme.crypto.createCsr({ commonName: w.domains[0] as string, altNames: w.domains }, await acme.crypto.createPrivateEcdsaKey('P-256'))
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
    })
    const result = await certificates.put(w.name, { certificate: chain, key: key.toString() }, { actor: 'acme', source: 'acme' })
    await store.setAcmeValue(failureField(w.name), null)
    log.info({ certificate: w.name, domains: w.domains, fingerprint: result.info.fingerprint, notAfter: result.info.notAfter, version: result.version }, 'certificate issued by ACME')
  }

  async function round(): Promise<void> {
    leader = await store.acquireLease(LEASE, options.holder, leaseTtlMs).catch(() => false)
    if (!leader) return
    const wanted = wantedCertificates((await store.list()).map((r) => r.route))
    for (const w of wanted) {
      if (stopped || !(await due(w))) continue
      // Keep the lease while ordering (an order takes seconds to minutes).
      keepAlive = setInterval(() => void store.acquireLease(LEASE, options.holder, leaseTtlMs).catch(() => undefined), Math.max(100, leaseTtlMs / 3))
      try {
        await order(w)
      } catch (err) {
        errors += 1
        const previous = await readFailure(w.name).catch(() => null)
        const failures = (previous?.failures ?? 0) + 1
        const message = err instanceof Error ? err.message : String(err)
        const failure: Failure = { failures, lastError: message.slice(0, 500), nextAttemptAt: now() + retryDelay(failures, backoffMs, maxBackoffMs, random()) }
        await store.setAcmeValue(failureField(w.name), JSON.stringify(failure)).catch(() => undefined)
        log.warn({ certificate: w.name, domains: w.domains, failures, nextAttemptAt: new Date(failure.nextAttemptAt).toISOString(), err: message }, 'ACME order failed; will retry')
      } finally {
        clearInterval(keepAlive)
      }
    }
  }

  let timer: NodeJS.Timeout | undefined
  const schedule = (): void => {
    if (stopped) return
    timer = setTimeout(() => {
      void acmeApi.runOnce().finally(schedule)
    }, intervalMs)
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
    async status() {
      const wanted = wantedCertificates((await store.list()).map((r) => r.route))
      const out: AcmeNameStatus[] = []
      for (const w of wanted) {
        const [stored, failure] = await Promise.all([store.getCertificate(w.name), readFailure(w.name)])
        const s: AcmeNameStatus = { name: w.name, domains: w.domains, state: failure !== null ? 'failing' : stored === null ? 'pending' : 'valid', failures: failure?.failures ?? 0 }
        if (stored !== null) {
          s.notAfter = stored.info.notAfter
          s.renewAt = new Date(renewalTime(stored.info)).toISOString()
        }
        if (failure !== null) {
          s.lastError = failure.lastError
          s.nextAttemptAt = new Date(failure.nextAttemptAt).toISOString()
        }
        out.push(s)
      }
      return { directory: options.directoryUrl, leader, certificates: out }
    },
    async stop() {
      stopped = true
      clearTimeout(timer)
      clearInterval(keepAlive)
      // An order stuck on the CA does not hold up shutdown for long: the lease expires and another replica resumes.
      let bound: NodeJS.Timeout | undefined
      await Promise.race([running, new Promise<void>((r) => (bound = setTimeout(r, 5_000)))])
      clearTimeout(bound)
      if (leader) await store.releaseLease(LEASE, options.holder).catch(() => undefined)
    },
  }
  schedule()
  return acmeApi
}
