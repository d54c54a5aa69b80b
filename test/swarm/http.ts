/** HTTP from the host to the lab's published host-mode ports (loopback only). */
import { get as httpGet } from 'node:http'

export interface Reply {
  status: number
  /** Parsed JSON body, or null when the body is not JSON. */
  json: Record<string, unknown> | null
  text: string
  setCookies: string[]
}

/** The demo backend's answer (scripts/swarm/demo-backend.mjs). */
export interface DemoReply {
  instance: string
  session: string
  count: number
  path: string
}

/** A browser's cookie jar, reduced to what the suite needs: one host, names and values. */
export class CookieJar {
  readonly cookies = new Map<string, string>()
  header(): string | undefined {
    return this.cookies.size === 0 ? undefined : [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
  }
  store(setCookies: readonly string[]): void {
    for (const line of setCookies) {
      const pair = line.split(';')[0] ?? ''
      const eq = pair.indexOf('=')
      if (eq > 0) this.cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim())
    }
  }
}

/**
 * One request on a new connection (no keep-alive pool), as a CI job's next `curl` makes it.
 * fetch() below reuses pooled keep-alive connections, like a browser.
 */
export function requestFresh(url: string, options: { timeoutMs?: number; jar?: CookieJar } = {}): Promise<Reply> {
  const cookie = options.jar?.header()
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { agent: false, timeout: options.timeoutMs ?? 5_000, ...(cookie === undefined ? {} : { headers: { cookie } }) }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        const json = jsonObject(text)
        const setCookie = res.headers['set-cookie'] ?? []
        options.jar?.store(setCookie)
        resolve({ status: res.statusCode ?? 0, json, text, setCookies: setCookie })
      })
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
  })
}

export async function request(url: string, options: { method?: string; jar?: CookieJar; token?: string; timeoutMs?: number; json?: unknown } = {}): Promise<Reply> {
  const headers: Record<string, string> = {}
  if (options.json !== undefined) headers['content-type'] = 'application/json'
  const cookie = options.jar?.header()
  if (cookie !== undefined) headers.cookie = cookie
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
  const response = await fetch(url, { method: options.method ?? 'GET', headers, ...(options.json === undefined ? {} : { body: JSON.stringify(options.json) }), redirect: 'manual', signal: AbortSignal.timeout(options.timeoutMs ?? 5_000) })
  const text = await response.text()
  const setCookies = response.headers.getSetCookie()
  options.jar?.store(setCookies)
  return { status: response.status, json: jsonObject(text), text, setCookies }
}

export function demoReply(reply: Reply): DemoReply | null {
  const j = reply.json
  if (reply.status !== 200 || j === null || typeof j.instance !== 'string' || typeof j.count !== 'number') return null
  return { instance: j.instance, session: String(j.session), count: j.count, path: String(j.path) }
}

/** Outcome of one request in a load loop. */
export interface Sample {
  at: number
  ok: boolean
  instance: string | null
  count: number | null
  error?: string
}

/**
 * Sends sequential requests to `url` every `gapMs` until `stop` is aborted (and at most
 * `maxRequests`), with its own cookie jar when `sticky`. Returns every outcome in order.
 */
export async function loadLoop(url: string, options: { stop: AbortSignal; sticky: boolean; gapMs: number; maxRequests: number }): Promise<Sample[]> {
  const jar = options.sticky ? new CookieJar() : undefined
  const samples: Sample[] = []
  for (let i = 0; i < options.maxRequests && !options.stop.aborted; i += 1) {
    const at = Date.now()
    try {
      const reply = await request(url, { ...(jar === undefined ? {} : { jar }), timeoutMs: 5_000 })
      const demo = demoReply(reply)
      samples.push(demo === null ? { at, ok: false, instance: null, count: null, error: `HTTP ${reply.status}` } : { at, ok: true, instance: demo.instance, count: demo.count })
    } catch (error) {
      samples.push({ at, ok: false, instance: null, count: null, error: (error as Error).message })
    }
    await new Promise((r) => setTimeout(r, options.gapMs))
  }
  return samples
}

/** The body as a JSON object, or null when it is not one. */
function jsonObject(text: string): Record<string, unknown> | null {
  try {
    const parsed: unknown = JSON.parse(text)
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : null
  } catch {
    return null
  }
}
