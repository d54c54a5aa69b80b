/**
 * Starts a real redis-server on a free loopback port for a test, and stops it. No
 * persistence by default, so each server starts empty. `stop()` (kill -9) then `start()` again
 * on the same port simulates an outage and recovery; with `appendfsync` the server keeps an
 * append-only file in its own directory and a restart reloads it (what survives a crash).
 */
import { freePort } from '../../src/shared/free-port.ts'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { TestContext } from 'node:test'

export interface RedisServer {
  url: string
  port: number
  start(): Promise<void>
  stop(): Promise<void>
  /** kill -STOP: Redis keeps its connections but answers nothing until resume(). */
  pause(): void
  /** kill -CONT after pause(). */
  resume(): void
  /** Stops the server (resuming it first if paused) and removes its directory. */
  dispose(): Promise<void>
}

export interface RedisServerOptions {
  /** Persistence: an append-only file, fsynced on every write ('always') or once a second ('everysec'). Default none. */
  appendfsync?: 'always' | 'everysec'
  /** More redis-server arguments, e.g. ['--replicaof', '127.0.0.1', '6379']. */
  args?: string[]
}

/** A Redis server stopped and removed when the test ends. */
export async function startRedisFor(t: TestContext, options: RedisServerOptions = {}): Promise<RedisServer> {
  const server = await startRedisServer(options)
  t.after(() => server.dispose())
  return server
}

export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const port = await freePort()
  let child: ChildProcess | undefined
  // Every server works in a directory of its own: a replica writes the RDB of its full sync to
  // its working directory (dump.rdb), and a server started later in the same one (the cwd, for
  // every test) loaded it at start, so a "fresh" Redis came up holding another test's routes.
  const dir = mkdtempSync(join(tmpdir(), 'tether-redis-'))
  const persistent = options.appendfsync !== undefined
  const persistence = persistent ? ['--appendonly', 'yes', '--appendfsync', options.appendfsync!] : ['--appendonly', 'no']

  async function start(): Promise<void> {
    // Without persistence a restart comes back empty, whatever a sync left on disk.
    if (!persistent) rmSync(join(dir, 'dump.rdb'), { force: true })
    const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', ...persistence, '--protected-mode', 'no', ...(options.args ?? [])], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    child = proc
    const failed = once(proc, 'exit').then(([code]) => {
      throw new Error(`redis-server exited with ${String(code)} (is redis-server installed? apt-get install -y redis-server)`)
    })
    failed.catch(() => {})
    let output = ''
    proc.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    const deadline = Date.now() + 10_000
    while (!output.includes('Ready to accept connections')) {
      if (Date.now() > deadline) throw new Error(`redis-server did not start: ${output}`)
      await Promise.race([sleep(20), failed])
    }
  }

  async function stop(): Promise<void> {
    const proc = child
    child = undefined
    if (proc === undefined || proc.exitCode !== null) return
    const exited = once(proc, 'exit')
    proc.kill('SIGKILL')
    await exited
  }

  function signal(name: NodeJS.Signals): void {
    if (child === undefined || child.exitCode !== null) throw new Error('redis-server is not running')
    child.kill(name)
  }

  async function dispose(): Promise<void> {
    if (child !== undefined && child.exitCode === null) child.kill('SIGCONT')
    await stop()
    rmSync(dir, { recursive: true, force: true })
  }

  await start()
  return { url: `redis://127.0.0.1:${port}`, port, start, stop, pause: () => signal('SIGSTOP'), resume: () => signal('SIGCONT'), dispose }
}

export { freePort }
