/**
 * Tiny stateful HTTP backends on loopback, the kind of app sticky sessions exist for: each one
 * answers with its instance name and a per-session counter kept in its own memory. A client
 * that stays on one instance sees the counter grow; one that is moved to another instance
 * starts over at 1 (that instance has never seen its session).
 *
 *   GET <any path> → 200 application/json
 *     { instance, session, count, path, host, forwardedFor, forwardedProto, method, headers }
 *   and `Set-Cookie: <sessionCookie>=<id>` when the request carried no session this instance knows.
 *
 * A WebSocket-style upgrade (`Connection: Upgrade`) is answered with 101 and the socket then
 * echoes what it receives, so tests can check upgrades pass through a proxy.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import { createHash, randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'

export interface BackendReply {
  instance: string
  session: string
  count: number
  path: string
  host: string | null
  forwardedFor: string | null
  forwardedProto: string | null
  method: string
  /** Every request header as received (lower-case names; repeated ones joined with ', '). */
  headers: Record<string, string>
}

export interface Backend {
  name: string
  host: string
  port: number
  /** `host:port`, as a route endpoint. */
  address: string
  /** Requests answered so far (upgrades not included). */
  readonly requests: number
  /** Stops listening and destroys every open connection (a crashed task). Idempotent. */
  close(): Promise<void>
}

export interface BackendOptions {
  name: string
  /** Loopback address to bind; any of 127.0.0.0/8 works on Linux. Default 127.0.0.1. */
  host?: string
  /** Default 0 (a free port). */
  port?: number
  /** Name of the backend's own session cookie. Default 'sid'. */
  sessionCookie?: string
}

function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

export async function startBackend(options: BackendOptions): Promise<Backend> {
  const { name } = options
  const host = options.host ?? '127.0.0.1'
  const cookieName = options.sessionCookie ?? 'sid'
  const sessions = new Map<string, number>()
  const sockets = new Set<Socket>()
  let requests = 0

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    requests++
    let session = readCookie(req.headers.cookie, cookieName)
    if (session === undefined || !sessions.has(session)) {
      session = randomBytes(8).toString('hex')
      res.setHeader('set-cookie', `${cookieName}=${session}; Path=/; HttpOnly`)
    }
    const count = (sessions.get(session) ?? 0) + 1
    sessions.set(session, count)
    const header = (h: string): string | null => {
      const v = req.headers[h]
      return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v
    }
    const body: BackendReply = {
      instance: name,
      session,
      count,
      path: req.url ?? '',
      host: header('host'),
      forwardedFor: header('x-forwarded-for'),
      forwardedProto: header('x-forwarded-proto'),
      method: req.method ?? '',
      headers: Object.fromEntries(Object.keys(req.headers).map((h) => [h, header(h) ?? ''])),
    }
    const text = JSON.stringify(body)
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
    res.end(text)
    req.resume()
  })
  server.keepAliveTimeout = 30_000
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const key = req.headers['sec-websocket-key']
    const accept = typeof key === 'string' ? `Sec-WebSocket-Accept: ${createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64')}\r\n` : ''
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${accept}X-Instance: ${name}\r\n\r\n`)
    if (head.length > 0) socket.write(head)
    socket.on('data', (chunk: Buffer) => socket.write(chunk))
    socket.on('error', () => {})
  })

  server.listen(options.port ?? 0, host)
  await once(server, 'listening')
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('backend: no address')
  let closed: Promise<void> | undefined

  return {
    name,
    host,
    port: address.port,
    address: `${host}:${address.port}`,
    get requests() {
      return requests
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const socket of sockets) socket.destroy()
        server.closeAllConnections()
      })
      return closed
    },
  }
}

/**
 * Starts `count` backends named `<prefix>1..N`. With `hosts`, backend i binds hosts[i] (all on
 * the same `port`, which is then required to be free on each: pass a port from freePort()).
 */
export async function startBackends(
  count: number,
  options: { prefix?: string; hosts?: string[]; port?: number; sessionCookie?: string } = {},
): Promise<Backend[]> {
  const backends: Backend[] = []
  try {
    for (let i = 0; i < count; i++) {
      const opts: BackendOptions = { name: `${options.prefix ?? 'app-'}${i + 1}` }
      const host = options.hosts?.[i]
      if (host !== undefined) opts.host = host
      if (options.port !== undefined) opts.port = options.port
      if (options.sessionCookie !== undefined) opts.sessionCookie = options.sessionCookie
      backends.push(await startBackend(opts))
    }
  } catch (err) {
    await Promise.all(backends.map((b) => b.close()))
    throw err
  }
  return backends
}

export async function closeBackends(backends: readonly Backend[]): Promise<void> {
  await Promise.all(backends.map((b) => b.close()))
}

/**
 * A WebSocket task: answers 200 to plain requests, upgrades (101 with a valid
 * Sec-WebSocket-Accept, which HAProxy 3.0 checks), echoes, and closes its side of an upgraded
 * connection when the client closes, as a WebSocket server does. (startBackend keeps its side
 * open: a session through HAProxy then ends only at a timeout, server-fin on 2.6 and the 1 h
 * tunnel timeout on 3.0, which no longer applies half-closed timeouts to HTTP-mode tunnels.)
 * Closed when the test ends; resolves with its host:port.
 */
export async function startWebSocketTask(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const sockets = new Set<Socket>()
  const server = createServer((_req, res) => res.writeHead(200).end('ok')).on('upgrade', (req: IncomingMessage, socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket)).on('error', () => undefined)
    const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64')
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
    socket.on('data', (d: Buffer) => socket.write(d)).on('end', () => socket.end())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => (sockets.forEach((s) => s.destroy()), server.close(() => resolve()))))
  return `127.0.0.1:${(server.address() as { port: number }).port}`
}

/** A task whose health path can be made to fail: see startCheckedTask. */
export interface CheckedTask {
  name: string
  /** `host:port`. */
  address: string
  /** GET /healthz answers 200 while true, 503 otherwise; set it at any time. */
  healthy: boolean
  /** Requests answered other than health checks. */
  readonly served: number
}

/**
 * A task with a health path: GET /healthz answers 200 or 503 as `healthy` says, every other
 * request 200 with the task's name as text (counted in `served`). Closed when the test ends.
 */
export async function startCheckedTask(t: { after(fn: () => Promise<void>): void }, options: { name: string; host?: string; port?: number; healthy: boolean }): Promise<CheckedTask> {
  const host = options.host ?? '127.0.0.1'
  let served = 0
  const sockets = new Set<Socket>()
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    if (req.url === '/healthz') {
      res.writeHead(task.healthy ? 200 : 503, { 'content-type': 'text/plain' }).end(task.healthy ? 'ok' : 'starting')
      return
    }
    served++
    res.writeHead(200, { 'content-type': 'text/plain' }).end(options.name)
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  server.listen(options.port ?? 0, host)
  await once(server, 'listening')
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('task: no address')
  const task: CheckedTask = {
    name: options.name,
    address: `${host}:${address.port}`,
    healthy: options.healthy,
    get served() {
      return served
    },
  }
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const s of sockets) s.destroy()
      }),
  )
  return task
}
