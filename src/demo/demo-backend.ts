/**
 * The demo's backend: a tiny stateful web app, the kind sticky sessions exist for. It keeps a
 * visit counter per session in its own memory (its session cookie is `demo_session`) and
 * answers with one line naming the instance:
 *
 *   demo-2: visit 3 of session 5f1c0a9e (GET /demo)
 *
 * A client that stays on one instance sees the count grow; one moved to another instance
 * starts over at 1, because that instance never saw its session.
 */
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { Socket } from 'node:net'

export const DEMO_SESSION_COOKIE = 'demo_session'

export interface DemoBackend {
  name: string
  /** host:port, as a route endpoint. */
  address: string
  close(): Promise<void>
}

function sessionOf(cookieHeader: string | undefined): string | undefined {
  for (const part of (cookieHeader ?? '').split(';')) {
    const [name, value] = part.trim().split('=')
    if (name === DEMO_SESSION_COOKIE && value !== undefined && /^[0-9a-f]{8}$/.test(value)) return value
  }
  return undefined
}

export async function startDemoBackend(name: string, host = '127.0.0.1', port = 0): Promise<DemoBackend> {
  const visits = new Map<string, number>()
  const sockets = new Set<Socket>()
  const server: Server = createServer((req, res) => {
    let session = sessionOf(req.headers.cookie)
    if (session === undefined || !visits.has(session)) {
      session = randomBytes(4).toString('hex')
      res.setHeader('set-cookie', `${DEMO_SESSION_COOKIE}=${session}; Path=/; HttpOnly; SameSite=Lax`)
    }
    // Bounded memory: a demo left running with a load generator must not grow forever.
    if (visits.size > 10_000) visits.clear()
    const count = (visits.get(session) ?? 0) + 1
    visits.set(session, count)
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' })
    res.end(`${name}: visit ${count} of session ${session} (${req.method ?? 'GET'} ${req.url ?? '/'})\n`)
    req.resume()
  })
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  server.listen(port, host)
  await once(server, 'listening')
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('demo backend: no address')
  let closed: Promise<void> | undefined
  return {
    name,
    address: `${host}:${address.port}`,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const socket of sockets) socket.destroy()
      })
      return closed
    },
  }
}
