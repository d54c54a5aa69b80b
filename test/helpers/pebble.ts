/**
 * A real ACME server for tests: Debian's `pebble` with `pebble-challtestsrv` as its DNS (every
 * name resolves to 127.0.0.1 unless told otherwise), all on loopback ports. Pebble's own HTTPS
 * certificate is made with openssl for 127.0.0.1; `caPem` is it, `root()` fetches the root that
 * signs the certificates pebble issues. `pebbleSkip` skips a suite when pebble is not installed,
 * outside CI only; CI installs it (.ci/run).
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { Agent as HttpsAgent, request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from './redis-server.ts'

const run = promisify(execFile)

/** Whether `pebble` and `pebble-challtestsrv` are on the PATH. */
export const hasPebble = ((): boolean => {
  try {
    execFileSync('sh', ['-c', 'command -v pebble && command -v pebble-challtestsrv'])
    return true
  } catch {
    return false
  }
})()

/** `describe`'s skip for tests that need pebble: a reason outside CI when it is not installed; never in CI (CI installs it). */
export const pebbleSkip: string | false = !hasPebble && process.env.CI !== 'true' ? 'pebble is not installed (apt-get install pebble)' : false

export interface Pebble {
  directoryUrl: string
  caPem: string
  /** The root of the chains pebble issues. */
  root(): Promise<string>
  /** Resolve `host` to `address` (instead of 127.0.0.1). */
  addA(host: string, address: string): Promise<void>
  stop(): Promise<void>
}

function get(url: string, ca: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: new HttpsAgent({ ca }), timeout: 5000 }, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => (text += c.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
    })
    req.on('error', reject)
    req.end()
  })
}

/**
 * `address`: where pebble's directory and management API listen (default 127.0.0.1; the Swarm
 * suite uses the lab's docker_gwbridge gateway so that containers reach it). Its own HTTPS
 * certificate names that address.
 */
export async function startPebble(options: { httpPort: number; address?: string }): Promise<Pebble> {
  const address = options.address ?? '127.0.0.1'
  const dir = await mkdtemp(join(tmpdir(), 'tether-pebble-'))
  const [listen, management, tlsPort, dnsPort, chall] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()]
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '2', '-subj', `/CN=${address}`, '-addext', `subjectAltName=IP:${address}`])
  const caPem = await readFile(join(dir, 'cert.pem'), 'utf8')
  await writeFile(
    join(dir, 'pebble.json'),
    JSON.stringify({ pebble: { listenAddress: `${address}:${listen}`, managementListenAddress: `${address}:${management}`, certificate: join(dir, 'cert.pem'), privateKey: join(dir, 'key.pem'), httpPort: options.httpPort, tlsPort, ocspResponderURL: '', externalAccountBindingRequired: false } }),
  )
  const children: ChildProcess[] = []
  const output: string[] = []
  const start = (cmd: string, args: string[], env: Record<string, string> = {}): ChildProcess => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout?.on('data', (c: Buffer) => output.push(c.toString()))
    child.stderr?.on('data', (c: Buffer) => output.push(c.toString()))
    children.push(child)
    return child
  }
  start('pebble-challtestsrv', ['-defaultIPv4', '127.0.0.1', '-defaultIPv6', '', '-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', `127.0.0.1:${chall}`])
  start('pebble', ['-config', join(dir, 'pebble.json'), '-dnsserver', `127.0.0.1:${dnsPort}`], { PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0' })
  const stop = async (): Promise<void> => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  }
  const directoryUrl = `https://${address}:${listen}/dir`
  const deadline = Date.now() + 20_000
  for (;;) {
    const ok = await get(directoryUrl, caPem).then((r) => r.status === 200, () => false)
    const challOk = await fetch(`http://127.0.0.1:${chall}/`).then(() => true, () => false)
    if (ok && challOk) break
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`pebble did not start: ${output.join('').slice(-2000)}`)
    }
    await sleep(100)
  }
  return {
    directoryUrl,
    caPem,
    async root() {
      const r = await get(`https://${address}:${management}/roots/0`, caPem)
      return r.text
    },
    async addA(host, address) {
      const res = await fetch(`http://127.0.0.1:${chall}/add-a`, { method: 'POST', body: JSON.stringify({ host, addresses: [address] }) })
      if (!res.ok) throw new Error(`challtestsrv add-a: ${res.status}`)
    },
    stop,
  }
}
