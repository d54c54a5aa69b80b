/**
 * Bearer-token checks. Tokens are compared in constant time: both sides are hashed to equal-
 * length SHA-256 digests and compared with timingSafeEqual, and every configured token is
 * compared (no early exit), so neither the length nor the position of a match leaks.
 */
import { createHash, timingSafeEqual } from 'node:crypto'

export interface AuthOptions {
  /** token → name (the name is the actor in the change log), or 'off' to disable every check. */
  apiTokens: ReadonlyMap<string, string> | 'off'
  /** The proxies' token: accepted by GET /v1/config and PUT /v1/proxies/{id} only. */
  proxyToken?: string | undefined
}

/**
 * Who may call a route: 'api' (API tokens), 'proxy' (API tokens or the proxy token),
 * 'proxy-only' (the proxy token alone: certificate keys), 'none'.
 */
export type AuthLevel = 'api' | 'proxy' | 'proxy-only' | 'none'

/** Actor name used when auth is off. */
export const ANONYMOUS = 'anonymous'
/** Actor name of the proxy token. */
export const PROXY_ACTOR = 'proxy'

const digest = (s: string): Buffer => createHash('sha256').update(s).digest()

export interface Authenticator {
  readonly enabled: boolean
  /** The actor name, or null when the header does not carry an accepted token. */
  check(authorization: string | undefined, level: Exclude<AuthLevel, 'none'>): string | null
}

export function createAuthenticator(options: AuthOptions): Authenticator {
  if (options.apiTokens === 'off') {
    return { enabled: false, check: () => ANONYMOUS }
  }
  const api = [...options.apiTokens].map(([token, name]) => ({ hash: digest(token), name }))
  const proxy = options.proxyToken === undefined ? null : digest(options.proxyToken)
  return {
    enabled: true,
    check(authorization, level) {
      if (authorization === undefined) return null
      const m = /^Bearer +(\S+) *$/i.exec(authorization)
      if (m === null || m[1] === undefined) return null
      const presented = digest(m[1])
      let actor: string | null = null
      for (const t of api) if (timingSafeEqual(t.hash, presented) && actor === null && level !== 'proxy-only') actor = t.name
      if ((level === 'proxy' || level === 'proxy-only') && proxy !== null && timingSafeEqual(proxy, presented) && actor === null) actor = PROXY_ACTOR
      return actor
    },
  }
}
