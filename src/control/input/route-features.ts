/**
 * The HTTP routing features Docker Flow Proxy users rely on (path rewrites, headers, basic auth,
 * method filters, exclusions, redirects, timeouts, User-Agent and header routing), parsed from
 * their text form. Tether's query string and Docker Flow Proxy's form (and com.df.* labels) use
 * the same parameter names and the same rules, so both parsers read them through here; the
 * JSON form gives the same fields typed (see tether-forms.ts).
 *
 * A reader answers a parameter's value and the field name to blame in an error (DFP's
 * `allowedMethods.2` falls back to `allowedMethods`: the reader decides, the rules stay here).
 */
import { createHash } from 'node:crypto'
import { encrypt } from 'unixcrypt'
import { COMPRESSION_ALGOS, headerValueProblem, limits, rules, type Auth, type Destination, type Header, type RouteInput } from '../../contracts/route.ts'
import { checkList, checkString, fail, HEADER_FIELDS, showValue, splitList } from './fields.ts'
import { pcreProblem } from './pcre-regex.ts'

/** A parameter's value ('' counts as not given) and the name it was given under. */
export type Read = (name: string) => { value: string; field: string } | undefined

/** The per-destination parameters (also as `name.N` in the DFP form). */
export const DESTINATION_FEATURES = [
  'listener',
  'userAgent',
  'serviceHeader',
  'servicePathExclude',
  'reqPathSearchReplace',
  'stripPrefix',
  'allowedMethods',
  'deniedMethods',
  'ignoreAuthorization',
  'timeoutServer',
  'timeoutTunnel',
  'redirectFromDomain',
] as const

/** The once-per-route parameters. */
export const ROUTE_FEATURES = [
  'reqPathSearch',
  'reqPathReplace',
  ...HEADER_FIELDS,
  'users',
  'usersPassEncrypted',
  'usersSecret',
  'realm',
  'isDefaultBackend',
  'compressionAlgo',
  'compressionType',
  'ipAllow',
  'ipDeny',
  'healthCheckPath',
  'healthCheckInterval',
  'healthCheckStatus',
  'healthCheckSlowStart',
  'canary',
  'rateLimit',
  'rateLimitBurst',
  'rateLimitTotal',
  'bodyLimit',
] as const

/** Go's strconv.ParseBool, as DFP reads booleans (Tether's query form gives true/false); anything else is refused. */
export function parseBool(field: string, value: string): boolean {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false
  fail(field, `${showValue(value)} must be true or false`)
}

/** 'Name value' entries, comma-separated (the header name, a space, the value). */
function headers(field: string, value: string): Header[] {
  return splitList(value).map((entry) => {
    const text = entry.trim()
    const space = text.search(/\s/)
    if (space < 0) fail(field, `${showValue(entry)} must be 'Name value' (the header name, a space, the value)`)
    const name = checkString(field, 'headerName', text.slice(0, space))
    const v = text.slice(space + 1).trim()
    checkString(field, 'headerValue', v)
    const problem = headerValueProblem(v)
    if (problem !== null) fail(field, `${showValue(v)} ${problem}`)
    return { name, value: v }
  })
}

function headerNames(field: string, value: string): string[] {
  return splitList(value).map((n) => checkString(field, 'headerName', n.trim()))
}

/** A regular-expression rewrite of the path: the search must compile; both fit in HAProxy's regsub(). */
export function rewrite(field: string, search: string, replace: string): { search: string; replace: string } {
  checkString(field, 'pathRegex', search)
  if (replace !== '') checkString(field, 'pathRegex', replace)
  // HAProxy compiles it with PCRE2: refused here what would make every proxy leave the route out.
  const problem = pcreProblem(search)
  if (problem !== null) fail(field, `${showValue(search)} ${problem}`)
  return { search, replace }
}

/** DFP's reqPathSearchReplace: 'search,replace' pairs separated by ':'. */
function rewrites(field: string, value: string): Array<{ search: string; replace: string }> {
  return value
    .split(':')
    .filter((pair) => pair.length > 0)
    .map((pair) => {
      const comma = pair.indexOf(',')
      if (comma < 0) fail(field, `${showValue(pair)} must be 'search,replace' (pairs separated by ':')`)
      return rewrite(field, pair.slice(0, comma), pair.slice(comma + 1))
    })
}

function seconds(field: string, value: string): number {
  if (!/^[0-9]{1,5}$/.test(value) || Number(value) < 1 || Number(value) > 86400) fail(field, `${showValue(value)} ${rules.timeout.text}`)
  return Number(value)
}

type DestinationFeatures = Partial<Omit<Destination, 'servicePath' | 'port' | 'serviceDomain'>>

/**
 * The per-destination features. `hosts` are the destination's host names (its own, else the
 * route's): redirectFromDomain sends to the first one that is not a wildcard. `routeRewrite`
 * (DFP's reqPathSearch/reqPathReplace) comes before the destination's own rewrites.
 */
export function destinationFeatures(read: Read, hosts: readonly string[], routeRewrite: ReadonlyArray<{ search: string; replace: string }> = []): DestinationFeatures {
  const d: DestinationFeatures = {}
  const listener = read('listener')
  if (listener !== undefined) {
    if (listener.value !== 'http' && listener.value !== 'https') fail(listener.field, `${showValue(listener.value)} must be http or https (the proxies' listener the requests arrive on)`)
    d.listener = listener.value
  }
  const ua = read('userAgent')
  if (ua !== undefined) d.userAgent = checkList(ua.field, 'userAgent', splitList(ua.value), 16)
  const hdr = read('serviceHeader')
  if (hdr !== undefined) {
    d.serviceHeader = splitList(hdr.value).map((entry) => {
      const parts = entry.split(':')
      if (parts.length !== 2) fail(hdr.field, `${showValue(entry)} must be 'Name:value'`)
      const value = (parts[1] ?? '').trim()
      if (!/^[\x20-\x7e]{1,256}$/.test(value)) fail(hdr.field, `${showValue(value)} must be 1 to 256 printable ASCII characters`)
      return { name: checkString(hdr.field, 'headerName', (parts[0] ?? '').trim()), value }
    })
  }
  const ex = read('servicePathExclude')
  if (ex !== undefined) d.servicePathExclude = checkList(ex.field, 'servicePath', splitList(ex.value), limits.maxPaths)
  const rw = read('reqPathSearchReplace')
  const pathRewrite = [...routeRewrite, ...(rw === undefined ? [] : rewrites(rw.field, rw.value))]
  if (pathRewrite.length > 8) fail(rw?.field ?? 'reqPathSearchReplace', `gives ${pathRewrite.length} rewrites; at most 8 are allowed`)
  if (pathRewrite.length > 0) d.pathRewrite = pathRewrite
  const strip = read('stripPrefix')
  if (strip !== undefined && parseBool(strip.field, strip.value)) d.stripPrefix = true
  for (const name of ['allowedMethods', 'deniedMethods'] as const) {
    const m = read(name)
    if (m !== undefined) d[name] = checkList(m.field, 'method', splitList(m.value).map((x) => x.trim().toUpperCase()), 32)
  }
  const ign = read('ignoreAuthorization')
  if (ign !== undefined && parseBool(ign.field, ign.value)) d.ignoreAuthorization = true
  for (const name of ['timeoutServer', 'timeoutTunnel'] as const) {
    const t = read(name)
    if (t !== undefined) d[name] = seconds(t.field, t.value)
  }
  const rd = read('redirectFromDomain')
  if (rd !== undefined) {
    d.redirectFromDomain = checkList(rd.field, 'serviceDomain', splitList(rd.value), limits.maxDomains)
    if (!hosts.some((h) => !h.startsWith('*.'))) fail(rd.field, "redirects to the destination's first host name: give serviceDomain (not only a wildcard)")
  }
  return d
}

/** DFP's reqPathSearch + reqPathReplace: one rewrite for every destination. */
export function routeRewriteOf(read: Read): Array<{ search: string; replace: string }> {
  const search = read('reqPathSearch')
  if (search === undefined) return []
  return [rewrite(search.field, search.value, read('reqPathReplace')?.value ?? '')]
}

type HealthFeatures = Pick<RouteInput, 'healthCheckPath' | 'healthCheckInterval' | 'healthCheckStatus' | 'healthCheckSlowStart'>
type RateFeatures = Pick<RouteInput, 'rateLimit' | 'rateLimitBurst' | 'rateLimitTotal'>

/** Rate limits in the text forms (Tether extensions: Docker Flow Proxy has none). Combinations are judged by finish(). */
export function rateLimitOf(read: Read): RateFeatures {
  const out: RateFeatures = {}
  const rate = read('rateLimit')
  if (rate !== undefined) out.rateLimit = integer(rate.field, rate.value, 1, 1_000_000, rules.rateLimit.text)
  const burst = read('rateLimitBurst')
  if (burst !== undefined) out.rateLimitBurst = integer(burst.field, burst.value, 1, 10_000_000, rules.rateLimitBurst.text)
  const total = read('rateLimitTotal')
  if (total !== undefined) out.rateLimitTotal = integer(total.field, total.value, 1, 10_000_000, rules.rateLimitTotal.text)
  return out
}
/** The body limit in the text forms (a Tether extension): bytes, decimal digits only (no unit). */
function bodyLimitOf(read: Read): Pick<RouteInput, 'bodyLimit'> {
  const limit = read('bodyLimit')
  if (limit === undefined) return {}
  if (!/^[1-9][0-9]{0,12}$/.test(limit.value) || Number(limit.value) > 1_099_511_627_776) fail(limit.field, `${showValue(limit.value)} ${rules.bodyLimit.text}`)
  return { bodyLimit: Number(limit.value) }
}
type RouteFeatures = Pick<RouteInput, 'canary' | 'bodyLimit'> & Pick<RouteInput, 'addReqHeader' | 'setReqHeader' | 'delReqHeader' | 'addResHeader' | 'setResHeader' | 'delResHeader' | 'auth' | 'isDefaultBackend' | 'compressionAlgo' | 'compressionType' | 'ipAllow' | 'ipDeny'> & HealthFeatures & RateFeatures

/** A whole number from `min` to `max`, written in decimal without a sign or leading zeros. */
function integer(field: string, value: string, min: number, max: number, text: string): number {
  if (!/^(?:0|[1-9][0-9]{0,7})$/.test(value) || Number(value) < min || Number(value) > max) fail(field, `${showValue(value)} ${text}`)
  return Number(value)
}

/** The HTTP health check in the text forms (Tether's names; Docker Flow Proxy has no HTTP check: com.df.healthCheckPath etc. are Tether extensions). */
export function healthCheckOf(read: Read): HealthFeatures {
  const out: HealthFeatures = {}
  const path = read('healthCheckPath')
  if (path !== undefined) out.healthCheckPath = checkString(path.field, 'healthCheckPath', path.value)
  const interval = read('healthCheckInterval')
  if (interval !== undefined) out.healthCheckInterval = integer(interval.field, interval.value.replace(/s$/, ''), 1, 3600, rules.healthCheckInterval.text)
  const status = read('healthCheckStatus')
  if (status !== undefined) out.healthCheckStatus = integer(status.field, status.value, 100, 599, rules.healthCheckStatus.text)
  const slow = read('healthCheckSlowStart')
  if (slow !== undefined) out.healthCheckSlowStart = integer(slow.field, slow.value.replace(/s$/, ''), 1, 3600, rules.healthCheckSlowStart.text)
  return out
}

/** Docker Flow Proxy's compression lists: separated by spaces (its examples) or commas. */
const words = (value: string): string[] => value.split(/[\s,]+/).filter((w) => w.length > 0)

/** compressionAlgo / compressionType in the text forms (the JSON form's lists are judged by its schema). */
export function compressionOf(read: Read): Pick<RouteInput, 'compressionAlgo' | 'compressionType'> {
  const out: Pick<RouteInput, 'compressionAlgo' | 'compressionType'> = {}
  const algo = read('compressionAlgo')
  if (algo !== undefined) {
    const list = words(algo.value).map((a) => {
      const known = COMPRESSION_ALGOS.find((k) => k === a.toLowerCase())
      if (known === undefined) fail(algo.field, `${showValue(a)} ${rules.compressionAlgo.text}`)
      return known
    })
    if (list.length === 0) fail(algo.field, `is empty; it ${rules.compressionAlgo.text}`)
    out.compressionAlgo = list
  }
  const type = read('compressionType')
  if (type !== undefined) {
    const list = words(type.value)
    if (list.length > 32) fail(type.field, `has ${list.length} entries; at most 32 are allowed`)
    out.compressionType = list.map((t) => checkString(type.field, 'mimeType', t))
  }
  return out
}

/**
 * The once-per-route features. `aliases` maps DFP's deprecated names (addHeader → addReqHeader,
 * setHeader → setReqHeader). Returns the fields and the warnings for what is accepted but not used.
 */
export function routeFeatures(read: Read, serviceName: string): { features: RouteFeatures; warnings: string[] } {
  const warnings: string[] = []
  const features: RouteFeatures = {}
  for (const name of ['addReqHeader', 'setReqHeader', 'addResHeader', 'setResHeader'] as const) {
    const h = read(name)
    if (h !== undefined) features[name] = headers(h.field, h.value)
  }
  for (const name of ['delReqHeader', 'delResHeader'] as const) {
    const h = read(name)
    if (h !== undefined) features[name] = headerNames(h.field, h.value)
  }
  const isDefault = read('isDefaultBackend')
  if (isDefault !== undefined) features.isDefaultBackend = parseBool(isDefault.field, isDefault.value)
  Object.assign(features, compressionOf(read), healthCheckOf(read), rateLimitOf(read), bodyLimitOf(read))
  // A release (docs/releasing.md): the percent of new sessions of another service's paths.
  const canary = read('canary')
  if (canary !== undefined) features.canary = integer(canary.field, canary.value.replace(/%$/, ''), 1, 99, rules.canary.text)
  for (const name of ['ipAllow', 'ipDeny'] as const) {
    const ip = read(name)
    if (ip === undefined) continue
    const list = words(ip.value)
    if (list.length === 0) fail(ip.field, `is empty; each entry ${rules.cidr.text}`)
    if (list.length > 64) fail(ip.field, `has ${list.length} entries; at most 64 are allowed`)
    // Each entry is judged by finish() (cidrProblem), as in the JSON form: here only the characters.
    features[name] = list.map((c) => checkString(ip.field, 'cidr', c))
  }
  const auth = authOf(read, serviceName, warnings)
  if (auth !== undefined) features.auth = auth
  return { features, warnings }
}

/** A deterministic salt per (service, user): the same password gives the same hash, so a repeated request changes nothing. */
export function saltOf(serviceName: string, user: string): string {
  return createHash('sha256').update(`tether-basic-auth|${serviceName}|${user}`).digest('base64').replace(/[^A-Za-z0-9]/g, '').slice(0, 16)
}

/** A password as stored: a crypt(3) hash as given, or a plain password hashed here (SHA-512 crypt). */
export function passwordHashOf(field: string, serviceName: string, name: string, password: string, encrypted: boolean): string {
  if (encrypted) {
    if (!new RegExp(rules.passwordHash.pattern).test(password)) fail(field, `the password of ${showValue(name)} ${rules.passwordHash.text} (usersPassEncrypted=true)`)
    return password
  }
  if (/[\x00-\x1f\x7f]/.test(password)) fail(field, `the password of ${showValue(name)} holds a control character`)
  if (password.length > 256) fail(field, `the password of ${showValue(name)} is ${password.length} characters long; at most 256 are allowed`)
  return encrypt(password, `$6$${saltOf(serviceName, name)}`)
}

/** 'name:password' entries, separated by ',' or new lines (DFP's `users` and its secret files). */
export function userEntries(value: string): Array<{ name: string; password: string }> {
  return value
    .split(/[,\n]/)
    .map((u) => u.trim())
    .filter((u) => u.length > 0)
    .map((entry) => {
      const colon = entry.indexOf(':')
      return { name: (colon < 0 ? entry : entry.slice(0, colon)).trim(), password: colon < 0 ? '' : entry.slice(colon + 1).trim() }
    })
}

/**
 * Basic auth, with Docker Flow Proxy's rules: `users` are 'name:password' entries (plain
 * passwords are hashed here and never stored; crypt(3) hashes with usersPassEncrypted=true);
 * `usersSecret=S` names the Docker secret dfp_users_S mounted in the proxies, read there. A user
 * listed without a password takes it from that secret; with no `users`, every user of the
 * secret gets in; when every listed user has a password, the secret is not used (DFP's rule,
 * said in a warning).
 */
function authOf(read: Read, serviceName: string, warnings: string[]): Auth | undefined {
  const users = read('users')
  const secret = read('usersSecret')
  const realm = read('realm')
  const encryptedValue = read('usersPassEncrypted')
  const encrypted = encryptedValue !== undefined && parseBool(encryptedValue.field, encryptedValue.value)
  const entries = users === undefined ? [] : userEntries(users.value)
  if (entries.length > 64) fail('users', `has ${entries.length} entries; at most 64 are allowed`)
  entries.forEach((u) => checkString(users?.field ?? 'users', 'userName', u.name))
  const secretName = secret === undefined ? undefined : checkString(secret.field, 'secretName', secret.value)
  const withoutPassword = entries.filter((u) => u.password === '').map((u) => u.name)
  if (withoutPassword.length > 0 && secretName === undefined) {
    fail(users?.field ?? 'users', `user ${showValue(withoutPassword[0])} has no password: give 'name:password', or usersSecret to take it from the proxies' Docker secret dfp_users_<usersSecret>`)
  }
  if (entries.length === 0 && secretName === undefined) {
    if (realm !== undefined) fail(realm.field, 'needs users or usersSecret (the realm of basic authentication)')
    return undefined
  }
  const auth: Auth = {
    users: entries.filter((u) => u.password !== '').map((u) => ({ name: u.name, passwordHash: passwordHashOf(users?.field ?? 'users', serviceName, u.name, u.password, encrypted) })),
  }
  if (secretName !== undefined) {
    if (entries.length > 0 && withoutPassword.length === 0) {
      warnings.push(`usersSecret: not used, because every user in users has a password (Docker Flow Proxy takes from dfp_users_${secretName} only the users listed without one)`)
    } else {
      auth.usersSecret = secretName
      if (encrypted) auth.usersSecretEncrypted = true
      if (withoutPassword.length > 0) auth.usersFromSecret = withoutPassword
    }
  }
  if (realm !== undefined) auth.realm = checkString(realm.field, 'realm', realm.value)
  return auth
}
