/**
 * The HTTPS part of GET /v1/status, from what the store holds (certificates, ACME state) and
 * what the proxies report (certificates from their own files, files they could not load).
 * Pure: the route reads, this decides what to say. Nothing here ever holds a key.
 */
import { Type, type Static } from 'typebox'
import type { CertificateInfo } from '../../contracts/certificate.ts'
import type { ProxyStatus } from '../../contracts/proxy-status.ts'
import type { Route } from '../../contracts/route.ts'
import { covers, type AcmeStatus } from '../acme.ts'

export const AcmeNameStatusSchema = Type.Object(
  {
    name: Type.String({ description: "The certificate it stores ('acme-<serviceName>')." }),
    serviceName: Type.String(),
    domains: Type.Array(Type.String()),
    reason: Type.Union([Type.Literal('route'), Type.Literal('every-domain')], { description: 'The route asked (acme, letsencrypt.host), or TETHER_ACME_EVERY_DOMAIN=on.' }),
    state: Type.Union([Type.Literal('pending'), Type.Literal('ordering'), Type.Literal('valid'), Type.Literal('failing')], {
      description: 'pending: not issued yet; ordering: an attempt is under way (within its deadline); failing: the last order failed (the current certificate, if any, is still served).',
    }),
    ordering: Type.Optional(
      Type.Object(
        {
          by: Type.String({ description: 'The control replica ordering.' }),
          since: Type.String({ format: 'date-time' }),
          deadline: Type.String({ format: 'date-time', description: 'Abandoned by then (TETHER_ACME_ORDER_TIMEOUT_SECONDS).' }),
          overdue: Type.Boolean({ description: 'Past its deadline and not ended: that replica was stopped or is stuck; another takes over once its lease expires.' }),
        },
        { additionalProperties: false },
      ),
    ),
    notAfter: Type.Optional(Type.String({ format: 'date-time' })),
    renewAt: Type.Optional(Type.String({ format: 'date-time', description: 'Next renewal: two thirds of the lifetime.' })),
    failures: Type.Integer({ minimum: 0, description: 'Failed orders in a row (0 after a success).' }),
    lastError: Type.Optional(Type.String()),
    lastFailureAt: Type.Optional(Type.String({ format: 'date-time' })),
    nextAttemptAt: Type.Optional(
      Type.String({ format: 'date-time', description: "When the next order starts: after the backoff of a failure (exponential, with jitter), at the leader's next round; absent while ordering or when nothing is due (see renewAt)." }),
    ),
  },
  { additionalProperties: false },
)

export const AcmeStatusSchema = Type.Object(
  {
    directory: Type.String({ description: 'TETHER_ACME_DIRECTORY.' }),
    everyDomain: Type.Boolean({ description: "TETHER_ACME_EVERY_DOMAIN: every route's serviceDomain gets a certificate without asking." }),
    leader: Type.Boolean({ description: 'The replica that answered holds the ordering lease.' }),
    certificates: Type.Array(AcmeNameStatusSchema),
    skipped: Type.Array(Type.Object({ serviceName: Type.String(), domain: Type.String(), reason: Type.String() }, { additionalProperties: false }), {
      description: 'With everyDomain: route names no certificate is ordered for, and why (wildcard, not a DNS name, covered by an uploaded certificate).',
    }),
    lastRound: Type.Optional(
      Type.Object(
        { by: Type.String(), at: Type.String({ format: 'date-time' }), nextAt: Type.String({ format: 'date-time' }) },
        { additionalProperties: false, description: "The ordering replica's last word: when it finished a round or started an order, and by when the next round starts (a time in the past: no replica runs rounds)." },
      ),
    ),
  },
  { additionalProperties: false, description: 'Automatic certificates (ACME): what is ordered, how each order stands.' },
)

export const TlsStatusSchema = Type.Object(
  {
    certificates: Type.Array(
      Type.Object(
        {
          name: Type.String(),
          domains: Type.Array(Type.String()),
          source: Type.String(),
          notAfter: Type.String({ format: 'date-time' }),
          expiresInSeconds: Type.Integer({ description: 'Negative once expired.' }),
          warnings: Type.Array(Type.String()),
        },
        { additionalProperties: false },
      ),
      { description: 'Certificates in the store (API, DFP, ACME); the proxies also serve the ones in their own files (proxies[].tls.files).' },
    ),
    uncoveredDomains: Type.Array(Type.Object({ serviceName: Type.String(), domain: Type.String() }, { additionalProperties: false }), {
      description: "Route names no certificate covers (store or proxies' files): HTTPS answers them with the self-signed default certificate.",
    }),
    warnings: Type.Array(Type.String(), { description: 'What needs attention: HTTPS with only the default certificate, files a proxy could not load, failing ACME orders, certificates expiring soon.' }),
    acme: Type.Optional(AcmeStatusSchema),
  },
  { additionalProperties: false, description: 'HTTPS across the fleet.' },
)
export type TlsStatus = Static<typeof TlsStatusSchema>

/** A next ACME attempt this far in the past means no replica runs rounds (timers and a round's own reads take a moment). */
export const ACME_OVERDUE_GRACE_MS = 60_000

type RouteNames = Pick<Route, 'serviceName' | 'serviceDomain' | 'destinations'>

/** The names a route serves (its own and its destinations'), lower case. */
function routeNames(r: RouteNames): string[] {
  return [...new Set([...r.serviceDomain, ...r.destinations.flatMap((d) => d.serviceDomain ?? [])].map((d) => d.toLowerCase()))].sort()
}

/** A route name a certificate covered until it was replaced by one that does not (kept in the store). */
export interface DroppedName {
  domain: string
  /** The certificate replaced. */
  certificate: string
  /** The names of the certificate that replaced it. */
  replacedBy: string[]
  at: string
}
/** Store field (a small named value, see certificate-store.ts) of a dropped name. */
export const droppedField = (domain: string): string => `dropped:${domain}`
export const DROPPED_PREFIX = 'dropped:'

/** The dropped-name records among the store's small values (unreadable ones are skipped). */
export function droppedNamesOf(values: Record<string, string>): DroppedName[] {
  const out: DroppedName[] = []
  for (const [field, text] of Object.entries(values)) {
    if (!field.startsWith(DROPPED_PREFIX)) continue
    try {
      const r = JSON.parse(text) as Omit<DroppedName, 'domain'>
      out.push({ domain: field.slice(DROPPED_PREFIX.length), certificate: r.certificate, replacedBy: r.replacedBy, at: r.at })
    } catch {
      // not ours to judge: left out
    }
  }
  return out.sort((a, b) => a.domain.localeCompare(b.domain))
}

/**
 * Pure: the names routes serve that a certificate covering `before` covered and one covering
 * `after` does not, and that no other valid certificate (stored or in a proxy's files) covers:
 * what HTTPS would answer with the self-signed default after the replacement, with the routes.
 */
export function namesDropped(input: {
  before: readonly string[]
  after: readonly string[]
  others: ReadonlyArray<{ domains: readonly string[]; notAfter: string }>
  routes: readonly RouteNames[]
  now: number
}): Array<{ domain: string; serviceNames: string[] }> {
  const coveredBy = (domains: readonly string[], domain: string): boolean => domains.some((d) => covers(d, domain))
  const others = input.others.filter((c) => Date.parse(c.notAfter) > input.now)
  const lost = new Map<string, string[]>()
  for (const r of input.routes) {
    for (const domain of routeNames(r)) {
      if (domain.startsWith('*') || !coveredBy(input.before, domain) || coveredBy(input.after, domain)) continue
      if (others.some((c) => coveredBy(c.domains, domain))) continue
      lost.set(domain, [...(lost.get(domain) ?? []), r.serviceName])
    }
  }
  return [...lost].sort(([a], [b]) => a.localeCompare(b)).map(([domain, serviceNames]) => ({ domain, serviceNames: [...new Set(serviceNames)].sort() }))
}

/** `site.test (route site), www.site.test (routes a, b)`. */
export function describeDropped(dropped: ReadonlyArray<{ domain: string; serviceNames: string[] }>): string {
  return dropped.map((d) => `${d.domain} (route${d.serviceNames.length === 1 ? '' : 's'} ${d.serviceNames.join(', ')})`).join(', ')
}

export function tlsStatusOf(input: {
  certificates: readonly CertificateInfo[]
  routes: readonly RouteNames[]
  proxies: readonly Pick<ProxyStatus, 'id' | 'tls'>[]
  acme: AcmeStatus | null
  /** Route names replacements left uncovered (warned about while no certificate covers them). */
  dropped?: readonly DroppedName[]
  now: number
}): TlsStatus {
  const { now } = input
  const warnings: string[] = []
  const certificates = input.certificates.map((c) => ({
    name: c.name,
    domains: c.domains,
    source: c.source,
    notAfter: c.notAfter,
    expiresInSeconds: Math.floor((Date.parse(c.notAfter) - now) / 1000),
    warnings: c.warnings,
  }))
  for (const c of certificates) for (const w of c.warnings) warnings.push(`certificate '${c.name}': ${w}`)

  const fileDomains = input.proxies.flatMap((p) => p.tls?.files.map((f) => ({ name: f.name, domains: f.domains, notAfter: f.notAfter })) ?? [])
  const valid = [...input.certificates.filter((c) => Date.parse(c.notAfter) > now), ...fileDomains.filter((f) => Date.parse(f.notAfter) > now)]
  const uncoveredDomains: TlsStatus['uncoveredDomains'] = []
  for (const r of input.routes) {
    const names = new Set([...r.serviceDomain, ...r.destinations.flatMap((d) => d.serviceDomain ?? [])])
    for (const domain of [...names].sort()) {
      if (domain.startsWith('*')) continue
      if (!valid.some((c) => c.domains.some((d) => covers(d, domain)))) uncoveredDomains.push({ serviceName: r.serviceName, domain })
    }
  }

  const reporting = input.proxies.filter((p) => p.tls !== undefined)
  const defaultOnly = reporting.filter((p) => p.tls?.defaultOnly === true).map((p) => p.id)
  // Only what the proxies report: a fleet with HTTPS off (or none live) gets no HTTPS warning.
  if (reporting.length > 0 && defaultOnly.length === reporting.length) {
    warnings.push('no certificate: HTTPS answers every name with the self-signed default certificate (clients see a certificate error); upload one (PUT /v1/certificates/{name}), mount one as a Docker secret in the proxies, or let ACME issue one')
  } else if (defaultOnly.length > 0) {
    warnings.push(`proxies ${defaultOnly.join(', ')} have no certificate yet: HTTPS answers there with the self-signed default certificate`)
  }
  for (const d of input.dropped ?? []) {
    const routes = [...new Set(uncoveredDomains.filter((u) => u.domain.toLowerCase() === d.domain).map((u) => u.serviceName))].sort()
    if (routes.length === 0) continue // covered again, or no route serves it any more
    warnings.push(
      `${describeDropped([{ domain: d.domain, serviceNames: routes }])}: no certificate covers it since '${d.certificate}' was replaced at ${d.at} by one for ${d.replacedBy.join(', ')}; HTTPS answers it with the self-signed default certificate`,
    )
  }
  for (const p of input.proxies) for (const problem of p.tls?.problems ?? []) warnings.push(`proxy ${p.id}: certificate file ${problem.file} not served: ${problem.error}`)
  for (const a of input.acme?.certificates ?? []) {
    if (a.state === 'failing') warnings.push(`ACME order for ${a.domains.join(', ')} ('${a.name}') failing (${a.failures} in a row): ${a.lastError ?? 'unknown error'}; next attempt at ${a.nextAttemptAt ?? 'the next round'}`)
    if (a.ordering?.overdue === true) {
      warnings.push(`ACME order for ${a.domains.join(', ')} ('${a.name}') started by ${a.ordering.by} at ${a.ordering.since} has not ended by its deadline ${a.ordering.deadline}: that replica was stopped or is stuck; another replica takes over once its lease expires`)
    } else if (a.state !== 'ordering' && a.nextAttemptAt !== undefined && Date.parse(a.nextAttemptAt) < now - ACME_OVERDUE_GRACE_MS) {
      const last = input.acme?.lastRound
      warnings.push(`ACME order for ${a.domains.join(', ')} ('${a.name}') overdue since ${a.nextAttemptAt}: no control replica has run an ACME round${last === undefined ? '' : ` since ${last.at} (${last.by})`}; check that the control replicas are running and can reach the store`)
    }
  }
  return { certificates, uncoveredDomains, warnings, ...(input.acme === null ? {} : { acme: input.acme }) }
}
