/**
 * A Redis Sentinel deployment on loopback for tests: one primary, `replicas` replicas and three
 * sentinels (quorum 2, down-after-milliseconds 1000), each a real redis-server / redis-sentinel
 * process in a directory of its own. Everything is killed and removed when the test ends.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
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
  const clients: Redis[] = []
  t.after(() => {
    for (const c of clients) c.disconnect()
    for (const p of procs.values()) if (p.exitCode === null) p.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })
  const replicas = options.replicas ?? 1
  const serverPorts: number[] = []
  for (let i = 0; i <= replicas; i++) serverPorts.push(await freePort())
  const [primary] = serverPorts as [number]
  for (const [i, port] of serverPorts.entries()) {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--dbfilename', `dump-${port}.rdb`, '--logfile', join(dir, `redis-${port}.log`), ...(options.serverArgs ?? [])]
    if (i > 0) args.push('--replicaof', '127.0.0.1', String(primary))
    procs.set(port, spawn('redis-server', args, { stdio: 'ignore' }))
  }
  const sentinels: Array<{ host: string; port: number }> = []
  for (let i = 0; i < 3; i++) {
    const port = await freePort()
    const conf = join(dir, `sentinel-${port}.conf`)
    writeFileSync(conf, [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `sentinel monitor ${name} 127.0.0.1 ${primary} 2`, `sentinel down-after-milliseconds ${name} 1000`, `sentinel failover-timeout ${name} 10000`, ''].join('\n'))
    procs.set(port, spawn('redis-sentinel', [conf], { stdio: 'ignore' }))
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
