/**
 * A Redis Sentinel deployment on loopback for tests: one primary, `replicas` replicas and three
 * sentinels (quorum 2, down-after-milliseconds 1000), each a real redis-server / redis-sentinel
 * process on a port of its own, in a directory of its own. Everything is killed (and waited for)
 * and removed when the test ends.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { TestContext } from 'node:test'
import { Redis } from 'ioredis'
import { freePort } from '../../src/shared/free-port.ts'

export const hasSentinel = spawnSync('redis-sentinel', ['--version']).status === 0

export interface SentinelCluster {
  name: string
  /** The directory of every process (logs: redis-<port>.log), removed at the end. */
  dir: string
  sentinels: Array<{ host: string; port: number }>
  /** Ports of every redis-server, the first primary at start. */
  serverPorts: number[]
  /** A raw client of one server or sentinel (no retries), closed at the end. */
  client(port: number): Redis
  /** The port Sentinel names as the primary now. */
  primaryPort(): Promise<number>
  /** SIGKILL of the redis-server on `port`. */
  kill(port: number): void
}

export interface SentinelClusterOptions {
  replicas?: number
  /** Extra redis-server arguments for every server (they keep them after a promotion). */
  serverArgs?: string[]
}

export async function waitUntil(what: string, ms: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms
  for (let i = 0; i < 10_000; i++) {
    if (await check().catch(() => false)) return
    if (Date.now() > deadline) break
    await sleep(100)
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`)
}

export async function startSentinelCluster(t: TestContext, options: SentinelClusterOptions = {}): Promise<SentinelCluster> {
  const name = 'mymaster'
  const dir = mkdtempSync(join(tmpdir(), 'tether-sentinel-'))
  const procs = new Map<number, ChildProcess>()
  /** Every process started, killed and waited for at the end (a sentinel left running would keep reconfiguring whatever later binds the ports it watches). */
  const started: ChildProcess[] = []
  const clients: Redis[] = []
  t.after(async () => {
    for (const c of clients) c.disconnect()
    await Promise.all(
      started.map(async (p) => {
        if (p.exitCode !== null || p.signalCode !== null) return
        const exited = once(p, 'exit')
        p.kill('SIGKILL')
        await exited
      }),
    )
    rmSync(dir, { recursive: true, force: true })
  })
  const replicas = options.replicas ?? 1
  // Every port is taken before any process starts, and all differ: freePort() can hand out a
  // port again until a process has bound it, and two processes given one port leave one of them
  // unable to start.
  const ports = new Set<number>()
  for (let i = 0; i < 1000 && ports.size < replicas + 1 + 3; i++) ports.add(await freePort())
  if (ports.size < replicas + 4) throw new Error(`no ${replicas + 4} distinct free ports`)
  const serverPorts = [...ports].slice(0, replicas + 1)
  const sentinelPorts = [...ports].slice(replicas + 1)
  const [primary] = serverPorts as [number]
  const start = (port: number, command: string, args: string[]): void => {
    const p = spawn(command, args, { stdio: 'ignore' })
    started.push(p)
    procs.set(port, p)
  }
  for (const [i, port] of serverPorts.entries()) {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--dbfilename', `dump-${port}.rdb`, '--logfile', join(dir, `redis-${port}.log`), ...(options.serverArgs ?? [])]
    if (i > 0) args.push('--replicaof', '127.0.0.1', String(primary))
    start(port, 'redis-server', args)
  }
  const sentinels: Array<{ host: string; port: number }> = []
  for (const port of sentinelPorts) {
    const conf = join(dir, `sentinel-${port}.conf`)
    writeFileSync(conf, [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `sentinel monitor ${name} 127.0.0.1 ${primary} 2`, `sentinel down-after-milliseconds ${name} 1000`, `sentinel failover-timeout ${name} 10000`, ''].join('\n'))
    start(port, 'redis-sentinel', [conf])
    sentinels.push({ host: '127.0.0.1', port })
  }
  const client = (port: number): Redis => {
    const c = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => 100, enableOfflineQueue: true })
    c.on('error', () => {})
    clients.push(c)
    return c
  }
  const sentinelClients = sentinels.map((s) => client(s.port))
  const primaryClient = client(primary)
  await waitUntil('every replica to sync', 15_000, async () => (await primaryClient.info('replication')).match(/state=online/g)?.length === replicas)
  // Every sentinel sees every replica and the other two sentinels: a failover can be voted.
  await waitUntil('the sentinels to see the replicas and each other', 20_000, async () => {
    for (const s of sentinelClients) {
      if (((await s.call('SENTINEL', 'REPLICAS', name)) as unknown[]).length !== replicas) return false
      if (((await s.call('SENTINEL', 'SENTINELS', name)) as unknown[]).length !== 2) return false
    }
    return true
  })
  return {
    name,
    dir,
    sentinels,
    serverPorts,
    client,
    async primaryPort() {
      const [, port] = (await sentinelClients[0]!.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name)) as [string, string]
      return Number(port)
    },
    kill(port) {
      procs.get(port)?.kill('SIGKILL')
    },
  }
}
