/**
 * One environment loader for every role (control, proxy, discovery, demo): a TypeBox schema
 * per role gives the type, the defaults and the boot-time check; a wrong value stops the
 * process at start with one coded error naming the variable. Only the schema's variables are
 * read; empty values count as unset.
 */
import { Type, type Static, type TObject } from 'typebox'
import { Value } from 'typebox/value'

/** A wrong environment variable. `code` is stable for scripts; `variable` names it. */
export class EnvError extends Error {
  override name = 'EnvError'
  readonly code = 'TETHER_ENV_INVALID'
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`)
  }
}

export interface LoadEnvOptions {
  /** Variables whose value must never be shown in an error (tokens, keys). */
  secret?: readonly string[]
}

/** Reads `schema`'s variables from `env`, fills defaults, converts and checks them. Throws EnvError. */
export function loadEnv<T extends TObject>(schema: T, env: Readonly<Record<string, string | undefined>>, options: LoadEnvOptions = {}): Static<T> {
  const raw: Record<string, unknown> = {}
  for (const key of Object.keys(schema.properties)) {
    const value = env[key]
    if (value !== undefined && value !== '') raw[key] = value
  }
  const value = Value.Convert(schema, Value.Default(schema, raw))
  const first = [...Value.Errors(schema, value)][0]
  if (first === undefined) return value as Static<T>
  const params = first.params as { requiredProperties?: string[]; requiredProperty?: string; missingProperty?: string }
  const variable = first.instancePath.split('/')[1] || (params.requiredProperties?.[0] ?? params.requiredProperty ?? params.missingProperty ?? 'environment')
  const property = (schema.properties as Record<string, PropertySchema>)[variable]
  const described = property?.description
  const shown = typeof raw[variable] === 'string' && !(options.secret ?? []).includes(variable) ? ` (got ${JSON.stringify(raw[variable])})` : ''
  const rule = raw[variable] === undefined ? 'is required' : (ruleOf(property) ?? first.message)
  throw new EnvError(variable, `${rule}${shown}${described === undefined ? '' : `. ${described}`}`)
}

interface PropertySchema {
  description?: string
  type?: string
  minimum?: number
  maximum?: number
  anyOf?: Array<{ const?: unknown }>
  pattern?: string
}

/** The rule a variable breaks, in words, for the shapes environment schemas use. */
function ruleOf(property: PropertySchema | undefined): string | undefined {
  if (property === undefined) return undefined
  const choices = property.anyOf?.map((branch) => branch.const)
  if (choices !== undefined && choices.length > 0 && choices.every((c) => typeof c === 'string')) return `must be one of ${choices.map((c) => `'${String(c)}'`).join(', ')}`
  if (property.type === 'integer' && property.minimum !== undefined && property.maximum !== undefined) return `must be an integer from ${property.minimum} to ${property.maximum}`
  // The description says what the form is; a regular expression says it to nobody.
  if (property.pattern !== undefined && property.description !== undefined) return 'is not in the expected form'
  return undefined
}

const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof levels)[number]

/** TETHER_LOG_LEVEL, the one spelling for every role; LOG_LEVEL is read too, with a deprecation warning. */
export const LogLevelEnv = {
  TETHER_LOG_LEVEL: Type.Optional(Type.Union(levels.map((l) => Type.Literal(l)), { description: 'Log level: fatal, error, warn, info, debug, trace or silent. Default info.' })),
  LOG_LEVEL: Type.Optional(Type.Union(levels.map((l) => Type.Literal(l)), { description: 'Deprecated spelling of TETHER_LOG_LEVEL.' })),
}

/** The log level an environment asks for, and the deprecation warnings it earns. */
export function logLevelOf(env: { TETHER_LOG_LEVEL?: LogLevel | undefined; LOG_LEVEL?: LogLevel | undefined }, fallback: LogLevel = 'info'): { level: LogLevel; deprecations: string[] } {
  if (env.TETHER_LOG_LEVEL !== undefined) {
    const ignored = env.LOG_LEVEL === undefined ? [] : ['LOG_LEVEL is deprecated and ignored because TETHER_LOG_LEVEL is set; remove it.']
    return { level: env.TETHER_LOG_LEVEL, deprecations: ignored }
  }
  if (env.LOG_LEVEL !== undefined) return { level: env.LOG_LEVEL, deprecations: ['LOG_LEVEL is deprecated: use TETHER_LOG_LEVEL (the same for every role).'] }
  return { level: fallback, deprecations: [] }
}
