/**
 * The control plane's configuration: one TypeBox schema for the environment, giving both the
 * type and the boot-time check. A wrong value stops the process at start with a message
 * naming the variable; nothing is read from the environment anywhere else.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Type, type Static } from 'typebox'
import { EnvError, loadEnv, LogLevelEnv, logLevelOf } from '../shared/env.ts'
import { parseSecretKey } from './secret-box.ts'
import { LogFormatEnv, logFormatOf, type LogFormat } from '../shared/create-logger.ts'

const TokenPattern = '^[A-Za-z0-9._~+/=-]{16,512}$'
const TokenNamePattern = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'

/** Every environment variable the control plane reads, with its default. */
export const ControlEnvSchema = Type.Object(
  {
    HOST: Type.String({ default: '0.0.0.0', minLength: 1, description: 'Address to listen on.' }),
    PORT: Type.Integer({ default: 8080, minimum: 0, maximum: 65535, description: 'Port to listen on.' }),
    REDIS_URL: Type.Optional(Type.String({ pattern: '^rediss?://', description: 'Redis URL (redis:// or rediss://). Unset: the embedded in-memory store.' })),
    REDIS_SENTINELS: Type.Optional(
      Type.String({
        pattern: '^[A-Za-z0-9.:\\[\\]-]+:[0-9]{1,5}(,[A-Za-z0-9.:\\[\\]-]+:[0-9]{1,5})*$',
        description: "Redis Sentinel: comma-separated host:port of the sentinels; the store then follows the primary they name (REDIS_URL optional, its password and database still used).",
      }),
    ),
    REDIS_SENTINEL_NAME: Type.String({ default: 'mymaster', pattern: '^[A-Za-z0-9._-]{1,64}$', description: 'Redis Sentinel: the monitored primary\'s name.' }),
    REDIS_WAIT_REPLICAS: Type.Integer({
      default: 0,
      minimum: 0,
      maximum: 16,
      description:
        'Durability across a Redis failover (opt-in): acknowledge a route write only once this many replicas confirmed it (Redis WAIT); when fewer do in time the write answers 503 WRITE_NOT_REPLICATED (stored on the primary, not yet on the replicas; repeating it is safe). 0: acknowledged once the primary has it.',
    }),
    REDIS_WAIT_TIMEOUT_MS: Type.Integer({ default: 500, minimum: 1, maximum: 900, description: 'How long a write waits for REDIS_WAIT_REPLICAS replicas (below the 1 s command timeout).' }),
    TETHER_REDIS_PREFIX: Type.String({ default: 'tether:', pattern: '^[A-Za-z0-9:_.-]{1,64}$', description: 'Prefix of every Redis key and channel.' }),
    TETHER_API_TOKENS: Type.Optional(Type.String({ description: "API tokens as 'name=token,name=token'; the name is the actor in the change log." })),
    TETHER_API_TOKENS_FILE: Type.Optional(Type.String({ minLength: 1, description: 'File holding TETHER_API_TOKENS (one name=token a line or comma-separated), e.g. a Docker secret.' })),
    TETHER_PROXY_TOKEN: Type.Optional(Type.String({ pattern: TokenPattern, description: 'Token of the proxy replicas (GET /v1/config, PUT /v1/proxies/{id}).' })),
    TETHER_PROXY_TOKEN_FILE: Type.Optional(Type.String({ minLength: 1, description: 'File holding TETHER_PROXY_TOKEN, e.g. a Docker secret.' })),
    TETHER_AUTH: Type.Union([Type.Literal('on'), Type.Literal('off')], { default: 'on', description: "'off' disables every token check (logged as a warning)." }),
    TETHER_ACME_DIRECTORY: Type.String({ default: 'https://acme-staging-v02.api.letsencrypt.org/directory', pattern: '^https://', description: "ACME directory URL (default: Let's Encrypt staging; production: https://acme-v02.api.letsencrypt.org/directory)." }),
    TETHER_ACME_EMAIL: Type.Optional(Type.String({ pattern: '^[^\\s@,]+@[^\\s@,]+$', description: 'ACME account contact.' })),
    TETHER_ACME_EVERY_DOMAIN: Type.Union([Type.Literal('on'), Type.Literal('off')], {
      default: 'off',
      description:
        "'on': ACME certificates for every route's serviceDomain names without asking per route (wildcards, IPs and names an uploaded certificate covers are left out and listed in /v1/status). 'off': only routes with acme=true or letsencrypt.host.",
    }),
    TETHER_ACME_INTERVAL_SECONDS: Type.Integer({ default: 60, minimum: 1, maximum: 86_400, description: 'Pause between two ACME rounds (what is due is ordered; failures wait for their backoff). Default 60.' }),
    TETHER_ACME_REQUEST_TIMEOUT_SECONDS: Type.Integer({ default: 30, minimum: 1, maximum: 600, description: 'Deadline of each request to the ACME server, from connecting to the end of its answer. Default 30.' }),
    TETHER_ACME_ORDER_TIMEOUT_SECONDS: Type.Integer({
      default: 300,
      minimum: 10,
      maximum: 3_600,
      description: 'Deadline of one whole ACME order (every request and retry, the proxies serving the challenge); past it the order is abandoned, counted as failed and the ACME lease released so another replica can try. Default 300.',
    }),
    TETHER_ACME_CA_FILE: Type.Optional(Type.String({ minLength: 1, description: "PEM of the CA that signs the ACME server's own HTTPS certificate (private ACME servers)." })),
    TETHER_SECRET_KEY_FILE: Type.Optional(
      Type.String({ minLength: 1, description: 'File holding the 32-byte key (raw, 64 hex characters or base64) that encrypts certificate keys in the store, e.g. a Docker secret. The same on every control replica.' }),
    ),
    ...LogLevelEnv,
    ...LogFormatEnv,
    TETHER_PROXY_TTL_SECONDS: Type.Integer({ default: 15, minimum: 1, maximum: 3600, description: 'A proxy is live while its last heartbeat is younger than this (3 heartbeat intervals).' }),
    TETHER_LONG_POLL_MAX_SECONDS: Type.Integer({ default: 60, minimum: 1, maximum: 60, description: 'Longest wait a GET /v1/config long poll may ask for.' }),
    TETHER_STATS_URL: Type.Optional(
      Type.String({ pattern: '^https?://[^\\s"<>]+$', description: "The dashboard's link to each proxy's HAProxy stats page; {node} and {id} are replaced (e.g. http://{node}:8404/stats)." }),
    ),
  },
  { additionalProperties: true },
)
export type ControlEnv = Static<typeof ControlEnvSchema>

export interface ControlConfig {
  host: string
  port: number
  redisUrl: string | undefined
  redisPrefix: string
  /** REDIS_SENTINELS parsed; undefined without Sentinel. */
  redisSentinels: Array<{ host: string; port: number }> | undefined
  redisSentinelName: string
  /** REDIS_WAIT_REPLICAS / REDIS_WAIT_TIMEOUT_MS: replicas a route write waits for (0: none). */
  redisWaitReplicas: number
  redisWaitTimeoutMs: number
  /** token → name; 'off' when TETHER_AUTH=off. */
  apiTokens: Map<string, string> | 'off'
  proxyToken: string | undefined
  /** Tokens generated at start because none was configured; printed once by server.ts. */
  generated: { apiToken?: string; proxyToken?: string }
  logLevel: string
  /** Warnings about deprecated settings, logged at start. */
  deprecations: string[]
  logFormat: LogFormat
  proxyTtlMs: number
  longPollMaxSeconds: number
  /** TETHER_STATS_URL: the dashboard's link template to each proxy's stats page. */
  statsUrl: string | undefined
  /** The 32-byte key of TETHER_SECRET_KEY_FILE; undefined when not configured. */
  secretKey: Buffer | undefined
  acme: { directoryUrl: string; email: string | undefined; caPem: string | undefined; everyDomain: boolean; intervalMs: number; requestTimeoutMs: number; orderTimeoutMs: number }
}

/** A wrong variable: the one coded error of every role's environment (shared/env.ts). */
export { EnvError }

/** Parses `name=token,name=token` (newlines also separate entries, for files). */
export function parseApiTokens(text: string, variable: string): Map<string, string> {
  const tokens = new Map<string, string>()
  const names = new Set<string>()
  const entries = text.split(/[,\n]/).map((s) => s.trim()).filter((s) => s.length > 0)
  for (const [i, entry] of entries.entries()) {
    const eq = entry.indexOf('=')
    const name = eq < 0 ? '' : entry.slice(0, eq).trim()
    const token = eq < 0 ? '' : entry.slice(eq + 1).trim()
    if (!new RegExp(TokenNamePattern).test(name)) throw new EnvError(variable, `each entry must be name=token with a name of letters, digits, '_', '.', '-' (entry ${i + 1} is not)`)
    if (!new RegExp(TokenPattern).test(token)) throw new EnvError(variable, `the token of '${name}' must be 16-512 characters of letters, digits and . _ ~ + / = -`)
    if (names.has(name)) throw new EnvError(variable, `the name '${name}' appears twice`)
    if (tokens.has(token)) throw new EnvError(variable, `two names share one token`)
    names.add(name)
    tokens.set(token, name)
  }
  if (tokens.size === 0) throw new EnvError(variable, `no name=token entry`)
  return tokens
}

function readSecretFile(path: string, variable: string): string {
  try {
    return readFileSync(path, 'utf8').trim()
  } catch (err) {
    throw new EnvError(variable, `cannot read ${JSON.stringify(path)} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
}

const generateToken = (): string => randomBytes(24).toString('base64url')

/**
 * Reads and checks the environment. Throws EnvError naming the first wrong variable.
 * With auth on and no API token configured, generates one (and a proxy token when none is
 * configured) so the embedded default works out of the box; `generated` holds them.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): ControlConfig {
  const e = loadEnv(ControlEnvSchema, env, { secret: ['TETHER_API_TOKENS', 'TETHER_PROXY_TOKEN'] })
  if (e.TETHER_API_TOKENS !== undefined && e.TETHER_API_TOKENS_FILE !== undefined) throw new EnvError('TETHER_API_TOKENS_FILE', 'set either TETHER_API_TOKENS or TETHER_API_TOKENS_FILE, not both')
  if (e.TETHER_PROXY_TOKEN !== undefined && e.TETHER_PROXY_TOKEN_FILE !== undefined) throw new EnvError('TETHER_PROXY_TOKEN_FILE', 'set either TETHER_PROXY_TOKEN or TETHER_PROXY_TOKEN_FILE, not both')

  const generated: ControlConfig['generated'] = {}
  let apiTokens: ControlConfig['apiTokens'] = 'off'
  let proxyToken: string | undefined
  if (e.TETHER_AUTH === 'on') {
    if (e.TETHER_API_TOKENS !== undefined) apiTokens = parseApiTokens(e.TETHER_API_TOKENS, 'TETHER_API_TOKENS')
    else if (e.TETHER_API_TOKENS_FILE !== undefined) apiTokens = parseApiTokens(readSecretFile(e.TETHER_API_TOKENS_FILE, 'TETHER_API_TOKENS_FILE'), 'TETHER_API_TOKENS_FILE')
    else {
      generated.apiToken = generateToken()
      apiTokens = new Map([[generated.apiToken, 'admin']])
    }
    proxyToken = e.TETHER_PROXY_TOKEN
    if (e.TETHER_PROXY_TOKEN_FILE !== undefined) {
      proxyToken = readSecretFile(e.TETHER_PROXY_TOKEN_FILE, 'TETHER_PROXY_TOKEN_FILE')
      if (!new RegExp(TokenPattern).test(proxyToken)) throw new EnvError('TETHER_PROXY_TOKEN_FILE', 'the token must be 16-512 characters of letters, digits and . _ ~ + / = -')
    }
    if (proxyToken === undefined) {
      generated.proxyToken = generateToken()
      proxyToken = generated.proxyToken
    }
    if (apiTokens.has(proxyToken)) throw new EnvError('TETHER_PROXY_TOKEN', 'must differ from every API token')
  }
  let secretKey: Buffer | undefined
  if (e.TETHER_SECRET_KEY_FILE !== undefined) {
    let content: Buffer
    try {
      content = readFileSync(e.TETHER_SECRET_KEY_FILE)
    } catch (err) {
      throw new EnvError('TETHER_SECRET_KEY_FILE', `cannot read ${JSON.stringify(e.TETHER_SECRET_KEY_FILE)} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
    }
    try {
      secretKey = parseSecretKey(content)
    } catch (err) {
      throw new EnvError('TETHER_SECRET_KEY_FILE', `${(err as Error).message}`)
    }
  }
  const logLevel = logLevelOf(e)
  return {
    acme: {
      directoryUrl: e.TETHER_ACME_DIRECTORY,
      email: e.TETHER_ACME_EMAIL,
      caPem: e.TETHER_ACME_CA_FILE === undefined ? undefined : readSecretFile(e.TETHER_ACME_CA_FILE, 'TETHER_ACME_CA_FILE'),
      everyDomain: e.TETHER_ACME_EVERY_DOMAIN === 'on',
      intervalMs: e.TETHER_ACME_INTERVAL_SECONDS * 1000,
      requestTimeoutMs: e.TETHER_ACME_REQUEST_TIMEOUT_SECONDS * 1000,
      orderTimeoutMs: e.TETHER_ACME_ORDER_TIMEOUT_SECONDS * 1000,
    },
    secretKey,
    host: e.HOST,
    port: e.PORT,
    redisUrl: e.REDIS_URL ?? (e.REDIS_SENTINELS !== undefined ? 'redis://sentinel' : undefined),
    redisPrefix: e.TETHER_REDIS_PREFIX,
    redisSentinels: e.REDIS_SENTINELS?.split(',').map((hp) => {
      const i = hp.lastIndexOf(':')
      return { host: hp.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port: Number(hp.slice(i + 1)) }
    }),
    redisSentinelName: e.REDIS_SENTINEL_NAME,
    redisWaitReplicas: e.REDIS_WAIT_REPLICAS,
    redisWaitTimeoutMs: e.REDIS_WAIT_TIMEOUT_MS,
    apiTokens,
    proxyToken,
    generated,
    logLevel: logLevel.level,
    deprecations: logLevel.deprecations,
    logFormat: logFormatOf(e),
    proxyTtlMs: e.TETHER_PROXY_TTL_SECONDS * 1000,
    longPollMaxSeconds: e.TETHER_LONG_POLL_MAX_SECONDS,
    statsUrl: e.TETHER_STATS_URL,
  }
}
