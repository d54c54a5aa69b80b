/**
 * Starts a real redis-server on a free loopback port for a test, and stops it. No
 * persistence, so each server starts empty. `stop()` then `start()` again on the same port
 * simulates an outage and recovery.
 */
import { freePort } from '../../src/shared/free-port.ts'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'

export interface RedisServer {
  url: string
  port: number
  start(): Promise<void>
  stop(): Promise<void>
  /** kill -STOP: Redis keeps its connections but answers nothing until resume(). */
  pause(): void
  /** kill -CONT after pause(). */
  resume(): void
}


export async function startRedisServer(): Promise<RedisServer> {
  const port = await freePort()
  let child: ChildProcess | undefined

  async function start(): Promise<void> {
    const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], {
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

  await start()
  return { url: `redis://127.0.0.1:${port}`, port, start, stop, pause: () => signal('SIGSTOP'), resume: () => signal('SIGCONT') }
}

export { freePort }
