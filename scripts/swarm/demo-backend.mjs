#!/usr/bin/env node
// The Swarm stack's demo service: a stateful app of the kind sticky sessions exist for. Each
// task keeps a per-session counter in its own memory, behind its own session cookie, and
// answers with its instance name (the task's host name), so a client that stays on one task
// sees the counter climb and one moved to another task starts over at 1.
//
//   GET /healthz          → 200 ok
//   GET <any other path>  → 200 {"instance","session","count","path","host"}
//
// With TCP_PORT set it also serves raw TCP on that port, as a line echo that names its task:
// every line a client sends comes back as "<instance> <line>" on the same connection (the
// Swarm suite's TCP route, reached through the proxies' published port).
//
// Environment: PORT (default 8080), SESSION_COOKIE (default sid), TCP_PORT (default: no TCP
// echo). Plain JavaScript: it runs as shipped in the image (`node /app/bin/demo-backend.mjs`).
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import { createServer as createTcpServer } from 'node:net'
import { hostname } from 'node:os'

const port = Number(process.env.PORT ?? 8080)
const cookieName = process.env.SESSION_COOKIE ?? 'sid'
const instance = process.env.INSTANCE ?? hostname()
const sessions = new Map()

function readCookie(header, name) {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

const server = createServer((req, res) => {
  req.resume()
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end('ok\n')
    return
  }
  let session = readCookie(req.headers.cookie, cookieName)
  if (session === undefined || !sessions.has(session)) {
    session = randomBytes(8).toString('hex')
    res.setHeader('set-cookie', `${cookieName}=${session}; Path=/; HttpOnly`)
  }
  const count = (sessions.get(session) ?? 0) + 1
  sessions.set(session, count)
  const body = JSON.stringify({ instance, session, count, path: req.url ?? '', host: req.headers.host ?? null })
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
  res.end(body)
})
server.keepAliveTimeout = 30_000
server.listen(port, () => process.stdout.write(`demo-backend ${instance} listening on :${port}\n`))

const tcpSockets = new Set()
const tcpServer =
  process.env.TCP_PORT === undefined || process.env.TCP_PORT === ''
    ? null
    : createTcpServer((socket) => {
        tcpSockets.add(socket)
        socket.on('close', () => tcpSockets.delete(socket))
        socket.on('error', () => {})
        socket.setEncoding('utf8')
        let pending = ''
        socket.on('data', (chunk) => {
          pending += chunk
          for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
            socket.write(`${instance} ${pending.slice(0, nl).replace(/\r$/, '')}\n`)
            pending = pending.slice(nl + 1)
          }
          // A line echo, not a sink: a client that never sends a newline is cut off at 64 KiB.
          if (pending.length > 65_536) socket.destroy()
        })
      })
tcpServer?.listen(Number(process.env.TCP_PORT), () => process.stdout.write(`demo-backend ${instance} TCP echo on :${process.env.TCP_PORT}\n`))

const stop = () => {
  server.close(() => process.exit(0))
  server.closeAllConnections()
  tcpServer?.close()
  for (const socket of tcpSockets) socket.destroy()
  setTimeout(() => process.exit(0), 2000).unref()
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
