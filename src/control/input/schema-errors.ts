/**
 * Validator messages rewritten for people: one schema-validation error (ajv's, Fastify's
 * validator, or typebox/compile's) as a sentence naming the field and the rule, with the same
 * wording the input parsers use.
 */
import { certificateRules } from '../../contracts/certificate.ts'
import { rules } from '../../contracts/route.ts'

export type RuleName = keyof typeof rules

/** A value as an error message may show it: JSON-quoted (so control characters are visible), bounded. */
export function showValue(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value)
  return text.length > 80 ? `${text.slice(0, 77)}...` : text
}

/** Which rule judges a field, by the field's name (last named segment of its path). */
const ruleOfField: Record<string, RuleName> = {
  serviceName: 'serviceName',
  servicePath: 'servicePath',
  serviceDomain: 'serviceDomain',
  stickyCookie: 'stickyCookie',
  endpoints: 'endpoint',
  endpoint: 'endpoint',
  port: 'port',
  aclName: 'aclName',
  serverName: 'serverName',
  srcPort: 'srcPort',
  usersSecret: 'secretName',
  usersFromSecret: 'userName',
  realm: 'realm',
  passwordHash: 'passwordHash',
  userAgent: 'userAgent',
  allowedMethods: 'method',
  deniedMethods: 'method',
  search: 'pathRegex',
  replace: 'pathRegex',
  compressionAlgo: 'compressionAlgo',
  compressionType: 'mimeType',
  ipAllow: 'cidr',
  ipDeny: 'cidr',
  healthCheckPath: 'healthCheckPath',
  healthCheckInterval: 'healthCheckInterval',
  healthCheckStatus: 'healthCheckStatus',
  healthCheckSlowStart: 'healthCheckSlowStart',
  canary: 'canary',
  drain: 'drain',
  rateLimit: 'rateLimit',
  rateLimitBurst: 'rateLimitBurst',
  rateLimitTotal: 'rateLimitTotal',
  bodyLimit: 'bodyLimit',
}

/**
 * The rule of every other pattern in the API, by the pattern itself: fields whose name says
 * nothing (a user's or a header's `name`, a header's `value`, a certificate's `name`), and the
 * patterns that are not rules of the route contract. A pattern missing here would show ajv's
 * "must match pattern" with no rule (test/control/validation-messages.test.ts walks every
 * pattern of the OpenAPI document).
 */
const ruleOfPattern = new Map<string, string>([
  // serviceName's pattern is also aclName's and secretName's: those fields are named above.
  ...Object.values(rules).flatMap((r): Array<[string, string]> => ('pattern' in r ? [[r.pattern, r.text]] : [])),
  [rules.serviceName.pattern, rules.serviceName.text],
  [certificateRules.name.pattern, certificateRules.name.text],
  ['^[\\x20-\\x7e]{1,256}$', 'must be 1 to 256 printable ASCII characters'],
  [`^(?:${rules.pathRegex.pattern.slice(1, -1)})?$`, "must be at most 256 printable ASCII characters without spaces, quotes or '%' (the replacement; \\1..\\9 are the search's groups)"],
  ['^[0-9]{1,5}$', 'must be decimal digits (at most 5)'],
  ['^[A-Za-z0-9_-]{16,256}$', "must be an ACME token: 16 to 256 letters, digits, '_' and '-'"],
  ['^[A-Za-z0-9_-]{16,256}\\.[A-Za-z0-9_-]{16,128}$', "must be an ACME key authorization: token '.' thumbprint (letters, digits, '_' and '-')"],
])

/** The human rule of a pattern keyword's failure, or undefined when neither the field nor the pattern is known. */
export function ruleTextOfPattern(pattern: unknown): string | undefined {
  return typeof pattern === 'string' ? ruleOfPattern.get(pattern) : undefined
}

/** Rules of the query parameters that are not part of a route. */
const otherRules: Record<string, string> = {
  wait: "must be a number of seconds from 0 to 60 ('30' and '30s' are the same), or 'converged' on endpoints that change routes",
  timeout: "must be a number of seconds from 0 to 300 ('30' and '30s' are the same)",
  id: "must be a proxy id: letters, digits, '_', '.', '-', starting with a letter or digit, at most 128 characters",
}

/** The error shape shared by ajv (Fastify's validator) and typebox/compile. */
export interface SchemaError {
  keyword: string
  instancePath: string
  params: Record<string, unknown>
  message?: string | undefined
}

/** '/destinations/0/servicePath/1' → 'destinations[0].servicePath[1]' */
export function fieldOf(instancePath: string): string {
  return instancePath
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((acc, seg) => (/^[0-9]+$/.test(seg) ? `${acc}[${seg}]` : acc === '' ? seg : `${acc}.${seg}`), '')
}

function valueAt(root: unknown, instancePath: string): unknown {
  let node: unknown = root
  for (const seg of instancePath.split('/').slice(1)) {
    if (node === null || typeof node !== 'object') return undefined
    node = (node as Record<string, unknown>)[seg.replace(/~1/g, '/').replace(/~0/g, '~')]
  }
  return node
}

/**
 * One schema-validation error as a sentence naming the field and the rule, e.g.
 * `servicePath[0]: "/a b" must start with '/' and hold only RFC 3986 path characters ...`
 * instead of ajv's raw `must match pattern "^(?:/|..."`. `root` is the validated value.
 */
export function describeSchemaError(error: SchemaError, root: unknown): string {
  const field = fieldOf(error.instancePath)
  const named = field.replace(/\[[0-9]+\]/g, '').split('.').pop() ?? ''
  const rule = ruleOfField[named]
  const value = valueAt(root, error.instancePath)
  const p = error.params
  const at = (msg: string): string => (field === '' ? msg : `${field}: ${msg}`)
  switch (error.keyword) {
    case 'required': {
      const missing = String(p.missingProperty ?? p.requiredProperties ?? '')
      const r = ruleOfField[missing]
      return `${field === '' ? '' : `${field}.`}${missing}: is required${r === undefined ? '' : `; it ${rules[r].text}`}`
    }
    case 'pattern':
    case 'format':
      if (rule !== undefined) return at(`${showValue(value)} ${rules[rule].text}`)
      if (otherRules[named] !== undefined) return at(`${showValue(value)} ${otherRules[named]}`)
      if (error.keyword === 'pattern' && ruleTextOfPattern(p.pattern) !== undefined) return at(`${showValue(value)} ${ruleTextOfPattern(p.pattern)}`)
      // Never a raw regular expression, and never "must match pattern" alone.
      return at(`${showValue(value)} ${error.keyword === 'pattern' ? 'is not in the expected form (see the field in the API document, /docs)' : String(error.message ?? 'is malformed').replace(/ ".*"$/, '')}`)
    case 'maxLength':
    case 'minLength':
      if (rule !== undefined) return at(`is ${typeof value === 'string' ? value.length : '?'} characters long; ${rules[rule].text}${error.keyword === 'maxLength' ? `, at most ${String(p.limit)} characters` : ''}`)
      return at(`must be ${error.keyword === 'maxLength' ? 'at most' : 'at least'} ${String(p.limit)} characters long`)
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      if (rule === 'port' || rule === 'srcPort') return at(`${showValue(value)} ${rules[rule].text}`)
      return at(`${showValue(value)} ${error.message ?? 'is out of range'}`)
    case 'type':
      if (rule === 'port' || rule === 'srcPort') return at(`${showValue(value)} ${rules[rule].text}`)
      return at(`${showValue(value)} must be ${String(p.type)}`)
    case 'maxItems':
      return at(`has too many entries; at most ${String(p.limit)} are allowed`)
    case 'minItems':
      return at(`needs at least ${String(p.limit)} ${Number(p.limit) === 1 ? 'entry' : 'entries'}`)
    case 'additionalProperties':
      return `${field === '' ? '' : `${field}.`}${String(p.additionalProperty)}: is not a known field`
    case 'enum':
    case 'const':
    case 'anyOf':
      if (rule !== undefined) return at(`${showValue(value)} ${rules[rule].text}`)
      if (otherRules[named] !== undefined) return at(`${showValue(value)} ${otherRules[named]}`)
      return at(`${showValue(value)} ${error.message ?? 'is not an allowed value'}`)
    default:
      return at(error.message ?? 'is invalid')
  }
}
