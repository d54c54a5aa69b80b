/** `tether proxy` as an operator starts it: wrong settings and a missing HAProxy fail at once, clearly. */
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'

async function runProxy(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'proxy'], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
  clearTimeout(timer)
  return { code, stderr }
}

describe('tether proxy (process)', () => {
  it('exits non-zero naming the variable when the configuration is wrong', async () => {
    const { code, stderr } = await runProxy({ TETHER_CONTROL_URL: 'http://127.0.0.1:9', TETHER_PROXY_TOKEN: 't', TETHER_COOKIE_KEY: 'cookie-key-1', TETHER_SLOTS: 'lots' })
    assert.equal(code, 78)
    assert.match(stderr, /invalid configuration: TETHER_SLOTS: .*integer/)
  })

  it('exits non-zero and says how to install HAProxy when it is missing', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'tether-main-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    const { code, stderr } = await runProxy({
      TETHER_CONTROL_URL: 'http://127.0.0.1:9',
      TETHER_PROXY_TOKEN: 't',
      TETHER_COOKIE_KEY: 'cookie-key-1',
      TETHER_STATE_DIR: dir,
      TETHER_HAPROXY_BIN: join(dir, 'no-haproxy-here'),
    })
    assert.equal(code, 69)
    assert.match(stderr, /cannot start HAProxy/)
    assert.match(stderr, /apt-get install (-y )?haproxy/)
  })
})
