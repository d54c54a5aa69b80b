/**
 * The route's fields towards its tasks (contracts/route-backend.ts) from every form: Tether's
 * query string and JSON body, Docker Flow Proxy's parameters and com.df.* labels (same names:
 * DFP's sslVerifyNone; Tether's backendScheme and backendCaSecret). Text values come from the
 * query and DFP forms, typed ones from JSON; both are judged by the same rules.
 */
import { BACKEND_SCHEMES, backendRules, type RouteBackend } from '../../contracts/route-backend.ts'
import { fail, showValue } from './fields.ts'
import { parseBool } from './route-features.ts'

export const BACKEND_FIELDS = ['backendScheme', 'sslVerifyNone', 'backendCaSecret'] as const

/** The backend fields of a form's input (absent and '' count as not given). */
export function backendFields(input: Record<string, unknown>): RouteBackend {
  const out: RouteBackend = {}
  const given = (name: string): unknown => (Object.prototype.hasOwnProperty.call(input, name) && input[name] !== '' ? input[name] : undefined)
  const scheme = given('backendScheme')
  if (scheme !== undefined) {
    const known = BACKEND_SCHEMES.find((s) => s === String(scheme).toLowerCase())
    if (typeof scheme !== 'string' || known === undefined) fail('backendScheme', `${showValue(String(scheme))} ${backendRules.backendScheme.text}`)
    out.backendScheme = known
  }
  const verifyNone = given('sslVerifyNone')
  if (verifyNone !== undefined && (typeof verifyNone === 'boolean' ? verifyNone : parseBool('sslVerifyNone', String(verifyNone)))) out.sslVerifyNone = true
  const ca = given('backendCaSecret')
  if (ca !== undefined) {
    if (typeof ca !== 'string' || !new RegExp(backendRules.backendCaSecret.pattern).test(ca)) fail('backendCaSecret', `${showValue(String(ca))} ${backendRules.backendCaSecret.text}`)
    out.backendCaSecret = ca
  }
  return out
}
