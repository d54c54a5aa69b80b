#!/usr/bin/env node
// The Swarm stack's demo service: a stateful app of the kind sticky sessions exist for. Each
// task keeps a per-session counter in its own memory, behind its own session cookie, and
// answers with its instance name (the task's host name), so a client that stays on one task
// sees the counter climb and one moved to another task starts over at 1.
//
//   GET /healthz          → 200 ok
//   GET <any other path>  → 200 {"instance","session","count","path","host"}
//
// Environment: PORT (default 8080), SESSION_COOKIE (default sid). Plain JavaScript: it runs
// as shipped in the image (`node /app/bin/demo-backend.mjs`).
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
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

const stop = () => {
  server.close(() => process.exit(0))
  server.closeAllConnections()
  setTimeout(() => process.exit(0), 2000).unref()
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
