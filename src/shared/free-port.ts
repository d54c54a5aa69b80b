import { once } from 'node:events'
import { createServer } from 'node:net'

/** A TCP port free on `host` right now (the demo's "any free port", and every test). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer()
  server.listen(0, host)
  await once(server, 'listening')
  const address = server.address()
  server.close()
  await once(server, 'close')
  if (address === null || typeof address === 'string') throw new Error(`no free port on ${host}`)
  return address.port
}
