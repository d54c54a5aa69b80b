/**
 * `tether proxy` killed with SIGKILL (a crash, an OOM kill, `kill -9` outside a container) leaves
 * its HAProxy running. The agent started again on the same state directory ends that HAProxy
 * before it starts its own: one master serves, the routes are the control plane's, and the TCP
 * ports of the table are bound by the new HAProxy. (Before, both masters bound the same ports
 * through SO_REUSEPORT: half the requests after a change reached the old endpoints, a removed route
 * still answered, and the TCP route was reported EADDRINUSE.)
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { request } from 'undici'
import pino from 'pino'
import { endLeftovers, findLeftovers } from '../../src/proxy/haproxy/process.ts'
import type { BackendReply } from '../helpers/backends.ts'
import { waitFor } from '../helpers/haproxy.ts'
import { freePort } from '../helpers/redis-server.ts'
import { backends, PROXY_TOKEN, startControl, startLoad } from './harness.ts'

/** The masters among HAProxy processes: those whose parent is not one of them. */
async function masters(pids: number[]): Promise<Array<{ pid: number; parent: number }>> {
  const out: Array<{ pid: number; parent: number }> = []
  for (const pid of pids) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
    const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    if (stat !== '' && !pids.includes(parent)) out.push({ pid, parent })
  }
  return out
}

/** Instance names answered by `count` requests, each on a new connection (SO_REUSEPORT spreads connections, not requests). */
async function instances(url: string, count: number): Promise<Map<string, number>> {
  const seen = new Map<string, number>()
  for (let i = 0; i < count; i++) {
    const res = await request(url, { reset: true, headersTimeout: 5000, bodyTimeout: 5000 })
    const text = await res.body.text()
    const key = res.statusCode === 200 ? (JSON.parse(text) as BackendReply).instance : `HTTP ${res.statusCode}`
    seen.set(key, (seen.get(key) ?? 0) + 1)
  }
  return seen
}

describe('tether proxy killed with SIGKILL and started again', () => {
  it('ends the HAProxy it left: after a change every request reaches the new endpoints, a removed route answers 404, one master remains and the TCP route binds', async (t) => {
    const control = await startControl(t)
    const [oldWeb] = await backends(t, 1, 'old-')
    const [newWeb] = await backends(t, 1, 'new-')
    const dir = await mkdtemp(join(tmpdir(), 'tether-restart-'))
    const configPath = join(dir, 'haproxy', 'haproxy.cfg')
    const pidFile = join(dir, 'haproxy', 'haproxy.pid')
    t.after(async () => {
      // Whatever happened, no HAProxy of this test outlives it.
      await endLeftovers(configPath, pidFile, pino({ level: 'silent' }), 0)
      await rm(dir, { recursive: true, force: true })
    })
    const [port, admin, tcpPort] = [await freePort(), await freePort(), await freePort()]
    const children: ChildProcess[] = []
    let stderr = ''
    const startProxy = (): ChildProcess => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'proxy'], {
        env: {
          PATH: process.env.PATH ?? '',
          TETHER_CONTROL_URL: control.url,
          TETHER_PROXY_TOKEN: PROXY_TOKEN,
          TETHER_COOKIE_KEY: 'cookie-key-for-restart-test',
          TETHER_PROXY_ID: 'restart-test',
          TETHER_PROXY_LISTEN: `127.0.0.1:${port}`,
          TETHER_ADMIN_LISTEN: `127.0.0.1:${admin}`,
          TETHER_PROXY_LISTEN_TLS: 'off',
          TETHER_STATE_DIR: dir,
          TETHER_DNS: '127.0.0.1:1',
          TETHER_HEARTBEAT_MS: '500',
          TETHER_LOG_LEVEL: 'warn',
        },
        stdio: ['ignore', 'ignore', 'pipe'],
      })
      child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()))
      children.push(child)
      return child
    }
    t.after(async () => {
      for (const child of children) {
        if (child.exitCode !== null || child.signalCode !== null) continue
        const exited = once(child, 'exit')
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
        await exited
        clearTimeout(timer)
      }
    })
    const put = async (query: string): Promise<void> => {
      const res = await control.api('PUT', `/v1/reconfigure?${query}&wait=converged&timeout=60`)
      assert.equal(res.status, 200, `${JSON.stringify(res.body)}\n${stderr}`)
    }

    // The first agent serves two HTTP routes and a TCP route.
    const first = startProxy()
    await put(`serviceName=web&servicePath=/web&port=80&endpoints=${oldWeb!.address}`)
    await put(`serviceName=gone&servicePath=/gone&port=80&endpoints=${oldWeb!.address}`)
    await put(`serviceName=tcp&reqMode=tcp&srcPort=${tcpPort}&port=${oldWeb!.port}&endpoints=${oldWeb!.address}`)
    const firstMaster = Number((await readFile(pidFile, 'utf8')).trim())
    assert.deepEqual((await masters(await findLeftovers(configPath, pidFile))).map((m) => m.pid), [firstMaster])

    // Under load, the agent is killed; its HAProxy goes on serving (nothing ends it).
    const load = startLoad(`http://127.0.0.1:${port}/web`, { connections: 4, maxMs: 120_000 })
    await waitFor('the load to be served', async () => (load.ok >= 20 ? true : undefined), 20_000)
    first.kill('SIGKILL')
    await once(first, 'exit')
    assert.deepEqual(await instances(`http://127.0.0.1:${port}/web`, 5), new Map([['old-1', 5]]), 'the orphaned HAProxy serves on')

    // A new agent on the same state directory; then the routes change.
    const second = startProxy()
    const changedAt = Date.now()
    await put(`serviceName=web&servicePath=/web&port=80&endpoints=${newWeb!.address}`)
    const removed = await control.api('DELETE', '/v1/remove?serviceName=gone&wait=converged&timeout=60')
    assert.equal(removed.status, 200, JSON.stringify(removed.body))
    const result = await load.stop()
    console.log(`MEASURED kill -9 + restart + change: ${Date.now() - changedAt} ms until converged; load ${result.ok} ok, ${result.failed} failed (${result.failures.join('; ')})`)

    // Every request reaches the new endpoints; the removed route is gone.
    assert.deepEqual(await instances(`http://127.0.0.1:${port}/web`, 200), new Map([['new-1', 200]]))
    assert.deepEqual(await instances(`http://127.0.0.1:${port}/gone`, 100), new Map([['HTTP 404', 100]]))

    // One master for this state directory, the new agent's; the first one is gone.
    const left = await masters(await findLeftovers(configPath, pidFile))
    assert.equal(left.length, 1, JSON.stringify(left))
    assert.equal(left[0]!.parent, second.pid)
    assert.notEqual(left[0]!.pid, firstMaster)
    assert.equal(Number((await readFile(pidFile, 'utf8')).trim()), left[0]!.pid)

    // The TCP route is bound by the new HAProxy and reported without a problem.
    const viaTcp = await request(`http://127.0.0.1:${tcpPort}/web`, { reset: true, headersTimeout: 5000 })
    assert.equal(viaTcp.statusCode, 200)
    assert.equal(((await viaTcp.body.json()) as BackendReply).instance, 'old-1')
    const status = (await control.api('GET', '/v1/proxies')).body.proxies as Array<{ id: string; status: string; routeProblems?: unknown[] }>
    assert.deepEqual(status.map((p) => [p.id, p.status, p.routeProblems ?? []]), [['restart-test', 'ok', []]], stderr)
  })
})
