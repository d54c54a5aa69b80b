/**
 * `tether demo` as a newcomer runs it: it starts, prints commands, and those commands show
 * what the text beside them says. Runs the real CLI (control plane, agent, HAProxy, backends)
 * on free ports, and the printed commands through bash and curl.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { dirname } from 'node:path'
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { promisify } from 'node:util'
import { request } from 'undici'

const run = promisify(execFile)

function startDemo(env: Record<string, string>): { child: ChildProcess; output: () => string; errors: () => string } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'demo'], {
    env: { ...process.env, TETHER_DEMO_CONTROL_PORT: '0', TETHER_DEMO_PROXY_PORT: '0', TETHER_DEMO_ADMIN_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()))
  return { child, output: () => out, errors: () => err }
}

async function exited(child: ChildProcess, limitMs: number): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode
  const timer = setTimeout(() => child.kill('SIGKILL'), limitMs)
  const [code] = (await once(child, 'exit')) as [number | null]
  clearTimeout(timer)
  return code
}

/** The command printed after the line that contains `heading`. */
function commandAfter(text: string, heading: string): string {
  const lines = text.split('\n')
  const at = lines.findIndex((l) => l.includes(heading))
  const command = lines.slice(at + 1).find((l) => l.startsWith('  $ '))
  assert.ok(at >= 0 && command !== undefined, `no command after '${heading}' in:\n${text}`)
  return command.slice(4)
}

const bash = async (command: string): Promise<string> => (await run('bash', ['-c', command], { timeout: 20_000 })).stdout

describe('tether demo', () => {
  let demo: ReturnType<typeof startDemo>
  let text = ''

  before(async () => {
    demo = startDemo({})
    // A bound, not a timing check: on a loaded CI machine tsx compiles the control plane slowly.
    const deadline = Date.now() + 120_000
    while (!demo.output().includes('/v1/status')) {
      if (demo.child.exitCode !== null || Date.now() > deadline) assert.fail(`the demo did not start:\n${demo.output()}\n${demo.errors()}`)
      await new Promise((r) => setTimeout(r, 50))
    }
    text = demo.output()
  })
  after(async () => {
    if (demo.child.exitCode === null) demo.child.kill('SIGKILL')
  })

  it('prints where the control plane, the proxy, its admin page and the backends run', () => {
    for (const label of ['control plane  http://127.0.0.1:', 'proxy          http://127.0.0.1:', 'proxy admin    http://127.0.0.1:', 'backends       demo-1 ']) {
      assert.ok(text.includes(label), `missing '${label}'`)
    }
  })

  it('the sticky command stays on one instance and the visit count grows', async () => {
    const lines = (await bash(commandAfter(text, 'Sticky route /demo'))).trim().split('\n')
    assert.equal(lines.length, 5)
    const instance = lines[0]?.split(':')[0]
    lines.forEach((line, i) => assert.match(line, new RegExp(`^${instance}: visit ${i + 1} of session [0-9a-f]{8} \\(GET /demo\\)$`)))
  })

  it('the round-robin command spreads over the three instances, each visit a new session', async () => {
    const lines = (await bash(commandAfter(text, 'Round-robin route /rr'))).trim().split('\n')
    assert.equal(lines.length, 6)
    assert.deepEqual(new Set(lines.map((l) => l.split(':')[0])), new Set(['demo-1', 'demo-2', 'demo-3']))
    for (const line of lines) assert.match(line, /: visit 1 of session/)
  })

  it('the registration commands are what a pipeline runs: again, they change nothing', async () => {
    const answer = JSON.parse(await bash(`${commandAfter(text, 'Routes registered')} -s`)) as { changed: boolean; version: number; route: { sticky: boolean } }
    assert.equal(answer.changed, false)
    assert.equal(answer.version, 2)
    assert.equal(answer.route.sticky, true)
  })

  it('the status command shows the proxy serving the current version', async () => {
    const status = JSON.parse(await bash(commandAfter(text, 'Fleet status'))) as { version: number; live: number; converged: number }
    assert.deepEqual({ version: status.version, live: status.live, converged: status.converged }, { version: 2, live: 1, converged: 1 })
  })

  it('stops everything on Ctrl-C (SIGINT), HAProxy included, and removes its temporary files', async () => {
    const proxyUrl = /proxy {10}(http:\/\/127\.0\.0\.1:\d+)/.exec(text)?.[1]
    const jar = / -c (\S+) /.exec(text)?.[1]
    assert.ok(proxyUrl !== undefined && jar !== undefined)
    demo.child.kill('SIGINT')
    assert.equal(await exited(demo.child, 20_000), 0)
    assert.match(demo.output(), /tether demo: stopped\./)
    await assert.rejects(request(`${proxyUrl}/demo`, { headersTimeout: 2000 }), /ECONNREFUSED/)
    assert.equal(existsSync(dirname(jar)), false, `${dirname(jar)} is left behind`)
  })
})

describe('tether demo without HAProxy', () => {
  it('says how to install it and exits non-zero', async () => {
    const demo = startDemo({ TETHER_HAPROXY_BIN: 'haproxy-that-is-not-installed' })
    assert.equal(await exited(demo.child, 30_000), 69)
    assert.match(demo.errors(), /the demo needs HAProxy/)
    assert.match(demo.errors(), /apt-get install (-y )?haproxy/)
  })
})
