/**
 * The image's HEALTHCHECK (scripts/swarm/healthcheck.sh, run by busybox): cheap, patient, and a
 * proxy's health never depends on the control plane. Run here as the image runs it, against a
 * real control plane and a real HAProxy on loopback; PID 1's command line comes from a file.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, it, type TestContext } from 'node:test'
import { freePort } from '../../src/shared/free-port.ts'
import { startControl } from '../control/harness.ts'

const script = join(import.meta.dirname, '../../scripts/swarm/healthcheck.sh')
const hasBusybox = spawnSync('busybox', ['true']).status === 0

function workDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'tether-healthcheck-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Runs the check as the image does; returns its exit code and what it printed. */
async function check(dir: string, pid1: string[], env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const cmdline = join(dir, 'cmdline')
  writeFileSync(cmdline, `${pid1.join('\0')}\0`)
  const child = spawn('busybox', ['sh', script], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TETHER_HEALTHCHECK_CMDLINE: cmdline, ...env }, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
  const [code] = (await once(child, 'exit')) as [number | null]
  return { code, stderr }
}

const controlPid1 = ['tini', '-s', '--', 'node', '/app/dist/cli.js', 'control']
const proxyPid1 = ['tini', '-s', '--', 'node', '/app/dist/cli.js', 'proxy']

async function startHaproxy(t: TestContext, dir: string, port: number) {
  const cfg = join(dir, 'haproxy.cfg')
  writeFileSync(cfg, ['defaults', '    mode http', '    timeout client 5s', '    timeout server 5s', '    timeout connect 5s', 'frontend admin', `    bind 127.0.0.1:${port}`, '    monitor-uri /healthz', ''].join('\n'))
  const proc = spawn('haproxy', ['-db', '-f', cfg], { stdio: 'ignore' })
  t.after(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL')
  })
  for (let i = 0; i < 100; i++) {
    const up = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false)
    if (up) return proc
    await sleep(50)
  }
  throw new Error('haproxy did not start')
}

describe('the image HEALTHCHECK', { skip: hasBusybox ? false : 'busybox is not installed (.ci/run installs busybox-static)' }, () => {
  it('runs busybox, not a Node process, with a 10 s timeout and 6 retries', () => {
    const dockerfile = readFileSync(join(import.meta.dirname, '../../Dockerfile'), 'utf8')
    const line = dockerfile.split('\n').find((l) => l.startsWith('HEALTHCHECK'))
    assert.ok(line !== undefined, 'the Dockerfile has a HEALTHCHECK')
    assert.match(line, /CMD \["busybox", "sh", "\/app\/bin\/healthcheck\.sh"\]$/)
    assert.doesNotMatch(line, /node/)
    assert.match(line, /--timeout=10s/)
    assert.match(line, /--retries=6/)
    assert.match(dockerfile, /COPY scripts\/swarm\/healthcheck\.sh /)
  })

  it('control: healthy while /healthz answers, unhealthy once the control plane is gone', async (t) => {
    const dir = workDir(t)
    const { app } = await startControl(t)
    await app.listen({ port: 0, host: '127.0.0.1' })
    const port = String((app.server.address() as { port: number }).port)
    assert.deepEqual(await check(dir, controlPid1, { PORT: port }), { code: 0, stderr: '' })
    await app.close()
    const down = await check(dir, controlPid1, { PORT: port })
    assert.equal(down.code, 1)
    assert.match(down.stderr, /control on :\d+\/healthz did not answer 200/)
  })

  it('proxy: asks HAProxy itself (no control plane anywhere); unhealthy when HAProxy dies after serving', async (t) => {
    const dir = workDir(t)
    const port = await freePort()
    const env = { TETHER_ADMIN_LISTEN: `127.0.0.1:${port}`, TETHER_STATE_DIR: dir }
    const haproxy = await startHaproxy(t, dir, port)
    writeFileSync(join(dir, 'last-known-good.json'), '{"version":1,"routes":[]}')
    assert.deepEqual(await check(dir, proxyPid1, env), { code: 0, stderr: '' })
    haproxy.kill('SIGKILL')
    await once(haproxy, 'exit')
    const down = await check(dir, proxyPid1, env)
    assert.equal(down.code, 1)
    assert.match(down.stderr, /proxy on :\d+\/healthz did not answer 200/)
  })

  it('proxy: healthy while it waits for its first configuration (a slow control plane never gets a proxy restarted)', async (t) => {
    const dir = workDir(t)
    const port = await freePort()
    const waiting = await check(dir, proxyPid1, { TETHER_ADMIN_LISTEN: `:${port}`, TETHER_STATE_DIR: dir })
    assert.equal(waiting.code, 0)
    assert.match(waiting.stderr, /waiting for its first configuration/)
  })

  it('another command (tether demo): nothing to check', async (t) => {
    assert.equal((await check(workDir(t), ['tini', '--', 'node', '/app/dist/cli.js', 'demo'], {})).code, 0)
  })
})
