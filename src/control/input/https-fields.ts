/**
 * The per-route HTTPS fields, from every form: Tether's query string and JSON body, Docker Flow
 * Proxy's parameters and com.df.* labels (same names: httpsOnly, redirectWhenHttpProto,
 * httpsRedirectCode, denyHttp; Tether's hstsMaxAge). TLS to backends (DFP's sslVerifyNone) is
 * in backend-fields.ts.
 */
import type { RouteHttps } from '../../contracts/route.ts'
import { checkString, fail, showValue, splitList } from './fields.ts'

export const HTTPS_FIELDS = ['httpsOnly', 'redirectWhenHttpProto', 'httpsRedirectCode', 'denyHttp', 'hstsMaxAge', 'hstsIncludeSubDomains', 'hstsPreload', 'acme', 'acmeDomains', 'letsencrypt.host', 'letsencrypt.email'] as const

const REDIRECT_CODES = [301, 302, 307, 308] as const

function bool(field: string, value: string | boolean | undefined): boolean | undefined {
  if (value === undefined || typeof value === 'boolean') return value
  if (value === 'true') return true
  if (value === 'false') return false
  return fail(field, `${showValue(value)} must be true or false`)
}

/** The HTTPS fields of a query (all values text) or a JSON body (typed values), checked. */
export function httpsFields(input: Record<string, unknown>, serviceDomain: readonly string[] = []): RouteHttps {
  const out: RouteHttps = {}
  const httpsOnly = bool('httpsOnly', input.httpsOnly as string | boolean | undefined)
  const redirectWhenHttpProto = bool('redirectWhenHttpProto', input.redirectWhenHttpProto as string | boolean | undefined)
  const denyHttp = bool('denyHttp', input.denyHttp as string | boolean | undefined)
  if (httpsOnly !== undefined) out.httpsOnly = httpsOnly
  if (redirectWhenHttpProto !== undefined) out.redirectWhenHttpProto = redirectWhenHttpProto
  if (denyHttp !== undefined) out.denyHttp = denyHttp
  if (denyHttp === true && httpsOnly === true) fail('denyHttp', 'and httpsOnly contradict each other (one refuses plain HTTP, the other redirects it): give one')
  const code = input.httpsRedirectCode
  if (code !== undefined) {
    const n = typeof code === 'number' ? code : /^[0-9]{3}$/.test(String(code)) ? Number(code) : NaN
    if (!(REDIRECT_CODES as readonly number[]).includes(n)) fail('httpsRedirectCode', `${showValue(code)} must be 301, 302, 307 or 308`)
    out.httpsRedirectCode = n as (typeof REDIRECT_CODES)[number]
  }
  const hsts = input.hstsMaxAge
  if (hsts !== undefined) {
    const n = typeof hsts === 'number' ? hsts : /^[0-9]{1,9}$/.test(String(hsts)) ? Number(hsts) : NaN
    if (!Number.isInteger(n) || n < 0 || n > 63_072_000) fail('hstsMaxAge', `${showValue(hsts)} must be a number of seconds from 0 to 63072000 (two years)`)
    out.hstsMaxAge = n
  }
  const subDomains = bool('hstsIncludeSubDomains', input.hstsIncludeSubDomains as string | boolean | undefined)
  const preload = bool('hstsPreload', input.hstsPreload as string | boolean | undefined)
  if (subDomains !== undefined) out.hstsIncludeSubDomains = subDomains
  if (preload !== undefined) out.hstsPreload = preload
  if (subDomains === true && out.hstsMaxAge === undefined) fail('hstsIncludeSubDomains', 'needs hstsMaxAge (how long browsers keep the policy)')
  if (preload === true) {
    // What the browsers' preload list accepts (hstspreload.org): anything less would be a request it refuses.
    if (subDomains !== true) fail('hstsPreload', 'needs hstsIncludeSubDomains=true (the preload list covers every subdomain)')
    if (out.hstsMaxAge === undefined || out.hstsMaxAge < 31_536_000) fail('hstsPreload', 'needs hstsMaxAge of at least 31536000 (one year), as the preload list requires')
  }
  // ACME: Tether's acme=true asks for the route's own names; DFP's letsencrypt.host names them.
  const acme = bool('acme', input.acme as string | boolean | undefined)
  const listed = input.acmeDomains ?? input['letsencrypt.host']
  const hosts = listed === undefined ? undefined : Array.isArray(listed) ? listed.map(String) : splitList(String(listed))
  if (acme === true || hosts !== undefined) {
    const field = input.acmeDomains !== undefined ? 'acmeDomains' : hosts !== undefined ? 'letsencrypt.host' : 'acme'
    const names = hosts ?? [...serviceDomain]
    if (names.length === 0) fail(field, hosts !== undefined ? 'is empty; give the host names to get a certificate for' : 'needs serviceDomain: the names to get a certificate for')
    names.forEach((n) => checkString(field, 'serviceDomain', n))
    const wildcard = names.find((n) => n.startsWith('*.'))
    if (wildcard !== undefined) fail(field, `${showValue(wildcard)}: a wildcard name cannot be validated over HTTP-01; upload a certificate for it instead`)
    out.acmeDomains = names
  }
  if (input['letsencrypt.email'] !== undefined && !/^[^\s@,]+@[^\s@,]+$/.test(String(input['letsencrypt.email']))) fail('letsencrypt.email', `${showValue(input['letsencrypt.email'])} must be an email address`)
  return out
}
