#!/usr/bin/env node
// The image's HEALTHCHECK, one per role: reads the role from PID 1's command line (the image's
// entrypoint is `tini -s -- node /app/dist/cli.js <role>`) and asks that role's health
// endpoint on loopback. Exit 0 healthy, 1 not. Plain JavaScript: it runs as shipped.
import { readFileSync } from 'node:fs'
import { request } from 'node:http'

const argv = readFileSync('/proc/1/cmdline', 'utf8').split('\0')
const env = process.env
const portOf = (listen, fallback) => Number(/:(\d+)$/.exec(listen ?? '')?.[1] ?? fallback)

let port
if (argv.some((a) => a.endsWith('demo-backend.mjs'))) port = Number(env.PORT ?? 8080)
else {
  const cli = argv.findIndex((a) => a.endsWith('cli.js'))
  const role = cli >= 0 ? argv[cli + 1] : undefined
  if (role === 'control') port = Number(env.PORT ?? 8080)
  else if (role === 'proxy') port = portOf(env.TETHER_ADMIN_LISTEN, 8404)
  else process.exit(0) // a role without a health endpoint (e.g. `tether demo`): nothing to check
}

const req = request({ host: '127.0.0.1', port, path: '/healthz', timeout: 2500 }, (res) => {
  res.resume()
  process.exit(res.statusCode === 200 ? 0 : 1)
})
req.on('timeout', () => req.destroy(new Error('timeout')))
req.on('error', (error) => {
  process.stderr.write(`healthcheck: ${error.message}\n`)
  process.exit(1)
})
req.end()
