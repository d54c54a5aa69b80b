/**
 * Token checks. Tokens are compared in constant time: both sides are hashed to equal-length
 * SHA-256 digests and compared with timingSafeEqual, and every configured token is compared
 * (no early exit), so neither the length nor the position of a match leaks.
 *
 * Two ways to present an API token:
 * - `Authorization: Bearer <token>`;
 * - HTTP Basic with the token as the password and the token's name as the user name
 *   (`http://ci:<token>@control:8080/...`): Docker Flow Swarm Listener only has a URL to send
 *   to, and Go's HTTP client sends the URL's userinfo as Basic credentials. The user name must
 *   be the token's name (so the actor in the change log is what the URL says); any other name
 *   is refused like a wrong token.
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
      const credentials = parseAuthorization(authorization)
      if (credentials === null) return null
      const presented = digest(credentials.token)
      let actor: string | null = null
      for (const t of api) if (timingSafeEqual(t.hash, presented) && actor === null && level !== 'proxy-only') actor = t.name
      if ((level === 'proxy' || level === 'proxy-only') && proxy !== null && timingSafeEqual(proxy, presented) && actor === null) actor = PROXY_ACTOR
      if (actor !== null && credentials.user !== undefined && credentials.user !== actor) return null
      return actor
    },
  }
}

/**
 * The token (and, for Basic, the user name) an Authorization header carries, or null.
 * Basic credentials are decoded as UTF-8 and split at the first ':' (RFC 7617).
 */
export function parseAuthorization(authorization: string | undefined): { token: string; user?: string } | null {
  if (authorization === undefined) return null
  const bearer = /^Bearer +(\S+) *$/i.exec(authorization)
  if (bearer?.[1] !== undefined) return { token: bearer[1] }
  const basic = /^Basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(authorization)
  if (basic?.[1] === undefined) return null
  const decoded = Buffer.from(basic[1], 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0 || colon === decoded.length - 1) return null
  return { user: decoded.slice(0, colon), token: decoded.slice(colon + 1) }
}
