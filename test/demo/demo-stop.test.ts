/**
 * Stopping `tether demo` the ways people do: SIGTERM to the process (a service manager, `kill`),
 * Ctrl-C in a terminal (SIGINT to the whole process group: HAProxy gets it too), and SIGTERM
 * to `npm run demo` (npm passes it on through its shell). Each time: the temporary directory
 * is gone, HAProxy no longer answers, "stopped." is printed, and nothing was logged at error
 * level (HAProxy's report of its workers ending after our stop is expected, not an error).
 * Runs the real CLI (control plane, agent, HAProxy, backends) on free ports.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { describe, it, type TestContext } from 'node:test'
import { request } from 'undici'

const run = promisify(execFile)
const PORTS = { TETHER_DEMO_CONTROL_PORT: '0', TETHER_DEMO_PROXY_PORT: '0', TETHER_DEMO_ADMIN_PORT: '0' }

interface Demo {
  child: ChildProcess
  output: () => string
  errors: () => string
}

/** The demo in a process group of its own (detached), so a test can signal the group as a terminal does. */
function startDemo(t: TestContext, how: 'node' | 'npm', env: Record<string, string> = {}): Demo {
  const [cmd, args] = how === 'node' ? [process.execPath, ['--import', 'tsx', 'src/cli.ts', 'demo']] : ['npm', ['run', '-s', 'demo']]
  const child = spawn(cmd, args, { env: { ...process.env, ...PORTS, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  let out = ''
  let err = ''
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()))
  t.after(() => {
    // Whatever happened, nothing of this group outlives the test.
    try {
      process.kill(-(child.pid as number), 'SIGKILL')
    } catch {
      /* gone */
    }
  })
  return { child, output: () => out, errors: () => err }
}

async function started(demo: Demo): Promise<{ dir: string; proxyUrl: string }> {
  const deadline = Date.now() + 120_000 // tsx compiles on start: slow on a loaded machine
  while (!demo.output().includes('/v1/status')) {
    if (demo.child.exitCode !== null || Date.now() > deadline) assert.fail(`the demo did not start:\n${demo.output()}\n${demo.errors()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  const jar = / -c (\S+) /.exec(demo.output())?.[1]
  const proxyUrl = /proxy {10}(http:\/\/127\.0\.0\.1:\d+)/.exec(demo.output())?.[1]
  assert.ok(jar !== undefined && proxyUrl !== undefined)
  const dir = dirname(jar)
  assert.equal(existsSync(dir), true)
  return { dir, proxyUrl }
}

async function exited(child: ChildProcess, limitMs: number): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode
  const timer = setTimeout(() => child.kill('SIGKILL'), limitMs)
  const [code] = (await once(child, 'exit')) as [number | null]
  clearTimeout(timer)
  return code
}

/** Log lines at error level or above (pino JSON: 50 error, 60 fatal), and HAProxy alerts however they came out. */
const errorLines = (text: string): string[] => text.split('\n').filter((l) => /"level":(5\d|6\d)\b/.test(l) || /\[(ALERT|EMERG)\]/.test(l) || /\bERROR\b|\bFATAL\b/.test(l))

async function stoppedCleanly(demo: Demo, where: { dir: string; proxyUrl: string }, stop: () => void): Promise<void> {
  const t0 = Date.now()
  stop()
  assert.equal(await exited(demo.child, 30_000), 0, demo.errors())
  console.log(`MEASURED demo stop: ${Date.now() - t0} ms`)
  // What should be there is there...
  assert.match(demo.output(), /Tether demo is running/)
  assert.match(demo.output(), /tether demo: stopped\./)
  assert.match(demo.errors(), /tether demo: the proxy serves both routes/)
  // ...and what should not, is not: no error line, no temporary directory, no HAProxy.
  assert.deepEqual(errorLines(demo.output() + demo.errors()), [])
  const deadline = Date.now() + 10_000
  while (existsSync(where.dir) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
  assert.equal(existsSync(where.dir), false, `${where.dir} is left behind`)
  await assert.rejects(request(`${where.proxyUrl}/demo`, { headersTimeout: 2000 }), /ECONNREFUSED/)
}

describe('stopping tether demo', () => {
  it('SIGTERM to the demo cleans up as Ctrl-C does, and logs nothing at error level', async (t) => {
    const demo = startDemo(t, 'node')
    const where = await started(demo)
    await stoppedCleanly(demo, where, () => demo.child.kill('SIGTERM'))
  })

  it("Ctrl-C in a terminal (SIGINT to the process group, HAProxy included): clean, no error line", async (t) => {
    const demo = startDemo(t, 'node')
    const where = await started(demo)
    await stoppedCleanly(demo, where, () => process.kill(-(demo.child.pid as number), 'SIGINT'))
  })

  it('SIGTERM while it starts (as soon as HAProxy runs, routes being registered): clean, no error line, no HAProxy left', async (t) => {
    // Its own TMPDIR, so the test knows the demo's temporary directory and HAProxy's command line.
    const tmp = mkdtempSync(join(tmpdir(), 'tether-demo-stop-'))
    t.after(() => rmSync(tmp, { recursive: true, force: true }))
    const demo = startDemo(t, 'node', { TMPDIR: tmp })
    const haproxyRuns = async (): Promise<boolean> => (await run('ps', ['-eo', 'args'])).stdout.split('\n').some((l) => l.startsWith('haproxy') && l.includes(tmp))
    const deadline = Date.now() + 120_000
    while (!(await haproxyRuns())) {
      if (demo.child.exitCode !== null || Date.now() > deadline) assert.fail(`HAProxy did not start:\n${demo.output()}\n${demo.errors()}`)
      await new Promise((r) => setTimeout(r, 50))
    }
    assert.equal(readdirSync(tmp).filter((n) => n.startsWith('tether-demo-')).length, 1)
    demo.child.kill('SIGTERM')
    assert.equal(await exited(demo.child, 30_000), 0, demo.errors())
    assert.match(demo.output(), /tether demo: stopped\./)
    assert.match(demo.errors(), /tether demo: proxy agent started/)
    assert.deepEqual(errorLines(demo.output() + demo.errors()), [])
    const until = Date.now() + 10_000
    while ((await haproxyRuns()) && Date.now() < until) await new Promise((r) => setTimeout(r, 50))
    assert.equal(await haproxyRuns(), false, 'a HAProxy of the demo is left running')
    // (tsx keeps its compile cache there too: only the demo's own directory counts.)
    assert.deepEqual(readdirSync(tmp).filter((n) => n.startsWith('tether-demo-')), [], 'the temporary directory is left behind')
  })

  it('SIGTERM to npm run demo reaches the demo: clean, no error line', async (t) => {
    const demo = startDemo(t, 'npm')
    const where = await started(demo)
    await stoppedCleanly(demo, where, () => demo.child.kill('SIGTERM'))
  })
})
