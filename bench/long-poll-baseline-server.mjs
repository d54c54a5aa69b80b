// The long-poll benchmark's baseline: a bare node:http server, no framework, no store, that
// holds every GET and, on PUT /release?bytes=N, answers all of them at once with the same N
// bytes (as the control plane answers its waiters with one encoded snapshot). The bench's
// clients measure it exactly as they measure the control plane, in the same run, so the
// control plane's result reads as a ratio against what Node itself costs on this machine.
import http from 'node:http'

const held = new Set()
const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/waiters') return res.end(String(held.size))
  if (req.method === 'GET') {
    held.add(res)
    res.on('close', () => held.delete(res))
    return
  }
  const bytes = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('bytes') ?? 0)
  const body = Buffer.alloc(bytes, 'x')
  const waiting = [...held]
  held.clear()
  for (const w of waiting) {
    w.writeHead(200, ['content-type', 'application/json; charset=utf-8', 'content-length', String(body.length), 'etag', '"1"', 'cache-control', 'no-cache'])
    w.end(body)
  }
  res.end(String(waiting.length))
})
server.keepAliveTimeout = 72_000
server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`))
process.on('SIGTERM', () => process.exit(0))
