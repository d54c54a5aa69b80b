/**
 * Basic-auth users kept in Docker secrets (Docker Flow Proxy's `usersSecret`): a route names
 * the secret `dfp_users_<usersSecret>`, the proxies have it mounted (`/run/secrets` by default,
 * TETHER_SECRETS_DIR), and each proxy reads it when it applies a table. The control plane never
 * sees those passwords.
 *
 * The file holds 'name:password' entries separated by ',' or new lines; with
 * `usersSecretEncrypted` (DFP's usersPassEncrypted) the passwords are crypt(3) hashes, else
 * they are hashed here (SHA-512 crypt, cached, so a table applied again costs nothing), and
 * only hashes reach HAProxy's configuration. The route's own users come first; `usersFromSecret`
 * picks which users of the secret get in.
 *
 * Failing closed: a secret that is missing or unreadable, or an entry that is not valid, is left
 * out and reported as a route problem (the proxy's heartbeat, /v1/status); a route with no user
 * left lets nobody in (401), never everybody.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { encrypt } from 'unixcrypt'
import { rules, type Route } from '../contracts/route.ts'
import type { ConfigSnapshot } from '../contracts/config-snapshot.ts'
import type { RouteProblem } from '../contracts/proxy-status.ts'
import type { ApplyResult, Engine } from './engine.ts'

const USER_NAME = new RegExp(rules.userName.pattern)
const PASSWORD_HASH = new RegExp(rules.passwordHash.pattern)

export const SECRET_PREFIX = 'dfp_users_'

export interface SecretUsersOptions {
  /** Where the secrets are mounted. Default /run/secrets. */
  dir: string
  /** Injected for tests. Default readFileSync(path, 'utf8'); null when the file is missing. */
  readFile?: (path: string) => string
}

export interface SecretUsers {
  /** The snapshot with every usersSecret replaced by the users read from it, and what went wrong. */
  resolve(snapshot: ConfigSnapshot): { snapshot: ConfigSnapshot; problems: RouteProblem[] }
}

export function createSecretUsers(options: SecretUsersOptions): SecretUsers {
  const readFile = options.readFile ?? ((path: string) => readFileSync(path, 'utf8'))
  /** Plain password → hash, per (service, user, password digest): hashing costs milliseconds. */
  const hashes = new Map<string, string>()

  function hashOf(serviceName: string, name: string, password: string): string {
    const digest = createHash('sha256').update(`${serviceName}\n${name}\n${password}`).digest('base64')
    let hash = hashes.get(digest)
    if (hash === undefined) {
      const salt = createHash('sha256').update(`tether-secret-users|${digest}`).digest('base64').replace(/[^A-Za-z0-9]/g, '').slice(0, 16)
      hash = encrypt(password, `$6$${salt}`)
      if (hashes.size > 10_000) hashes.clear()
      hashes.set(digest, hash)
    }
    return hash
  }

  function resolveRoute(route: Route, problems: RouteProblem[]): Route {
    const auth = route.auth
    if (auth?.usersSecret === undefined) return route
    const file = `${SECRET_PREFIX}${auth.usersSecret}`
    const path = join(options.dir, file)
    const problem = (message: string) => problems.push({ serviceName: route.serviceName, problem: message })
    let text: string | null
    try {
      text = readFile(path)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      text = null
      problem(
        code === 'ENOENT'
          ? `the Docker secret ${file} is not mounted in this proxy (looked for ${path}): its users cannot log in until it is (add it to the proxy service's secrets)`
          : `the Docker secret ${file} cannot be read (${code ?? (error as Error).message}): its users cannot log in`,
      )
    }
    const wanted = auth.usersFromSecret === undefined ? null : new Set(auth.usersFromSecret)
    const own = new Set(auth.users.map((u) => u.name))
    const users = [...auth.users]
    const found = new Set<string>()
    if (text !== null) {
      text.split(/[,\n]/).forEach((raw, index) => {
        const entry = raw.trim()
        if (entry === '') return
        const colon = entry.indexOf(':')
        const name = colon < 0 ? entry : entry.slice(0, colon).trim()
        const password = colon < 0 ? '' : entry.slice(colon + 1).trim()
        // Never the password in a message: the entry's position and the user name only.
        if (!USER_NAME.test(name)) return void problem(`${file}: entry ${index + 1} is not 'name:password' with a valid user name; left out`)
        if ((wanted !== null && !wanted.has(name)) || own.has(name) || found.has(name)) return // not this route's, or given already
        if (password === '') return void problem(`${file}: user ${name} has no password; left out`)
        if (auth.usersSecretEncrypted === true && !PASSWORD_HASH.test(password)) return void problem(`${file}: the password of ${name} is not a crypt(3) hash (usersPassEncrypted); left out`)
        if (/[\x00-\x1f\x7f]/.test(password)) return void problem(`${file}: the password of ${name} holds a control character; left out`)
        found.add(name)
        users.push({ name, passwordHash: auth.usersSecretEncrypted === true ? password : hashOf(route.serviceName, name, password) })
      })
    }
    if (text !== null && wanted !== null) {
      const missing = [...wanted].filter((n) => !found.has(n) && !own.has(n))
      if (missing.length > 0) problem(`${file} has no password for ${missing.join(', ')}: ${missing.length === 1 ? 'that user' : 'those users'} cannot log in`)
    }
    const { usersSecret: _s, usersSecretEncrypted: _e, usersFromSecret: _f, ...rest } = auth
    return { ...route, auth: { ...rest, users } }
  }

  return {
    resolve(snapshot) {
      if (!snapshot.routes.some((r) => r.auth?.usersSecret !== undefined)) return { snapshot, problems: [] }
      const problems: RouteProblem[] = []
      const routes = snapshot.routes.map((r) => resolveRoute(r, problems))
      return { snapshot: { ...snapshot, routes }, problems }
    },
  }
}

/** An engine that reads the secrets' users before each apply, and reports what it could not read. */
export function withSecretUsers(engine: Engine, secretUsers: SecretUsers): Engine {
  return Object.assign(Object.create(engine) as Engine, {
    async apply(snapshot: ConfigSnapshot): Promise<ApplyResult> {
      const { snapshot: resolved, problems } = secretUsers.resolve(snapshot)
      const result = await engine.apply(resolved)
      return problems.length === 0 ? result : { ...result, problems: [...(result.problems ?? []), ...problems] }
    },
  })
}
