/**
 * Chaos, bounded: the control plane (`tether control`, a real process on real Redis) killed
 * with kill -9 while 32 writers reconfigure concurrently over HTTP, then started again while
 * they go on (for a second after it is ready). Every answer is checked against the change log in Redis: 0 acknowledged (200)
 * writes lost, 0 refused ones (4xx, 503 "nothing was changed", connection refused) stored. A
 * request cut by the kill has no answer, so its outcome is unknown to the client and either way
 * is fine; retrying it is safe (reconfigure is idempotent).
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, it } from 'node:test'
import { Agent, request } from 'undici'
import { createRedisRouteStore } from '../../../src/control/store/redis-route-store.ts'
import { freePort } from '../../../src/shared/free-port.ts'
import { startRedisFor } from '../../helpers/redis-server.ts'

const TOKEN = 'chaos-api-token-0123456789'

type Outcome = 'ok' | 'refused' | 'unknown'

describe('tether control killed (kill -9) among concurrent writers', () => {
  it('loses no acknowledged write, and stores no refused one', async (t) => {
    const redis = await startRedisFor(t)
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    let child: ChildProcess | undefined
    const start = async (): Promise<void> => {
      const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'control'], {
        env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(port), REDIS_URL: redis.url, TETHER_API_TOKENS: `ci=${TOKEN}`, TETHER_PROXY_TOKEN: 'chaos-proxy-token-0123456789', TETHER_LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'ignore', 'pipe'],
      })
      child = proc
      let stderr = ''
      proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()))
      const deadline = Date.now() + 90_000 // tsx compiles on start: slow on a loaded machine
      for (;;) {
        if (proc.exitCode !== null) throw new Error(`tether control exited: ${stderr}`)
        if (Date.now() > deadline) throw new Error(`tether control not ready in 90 s: ${stderr}`)
        const ready = await request(`${url}/readyz`).then((r) => (r.body.dump(), r.statusCode === 200), () => false)
        if (ready) return
        await sleep(100)
      }
    }
    const kill = async (): Promise<void> => {
      const proc = child
      if (proc === undefined || proc.exitCode !== null) return
      const exited = once(proc, 'exit')
      proc.kill('SIGKILL')
      await exited
    }
    t.after(kill)
    await start()

    const agent = new Agent({ connections: 64 })
    t.after(() => agent.close())
    const answers: Array<{ serviceName: string; port: number; outcome: Outcome; status: number | string; at: number }> = []
    const writers = 32
    let stop = false
    const started = Date.now()
    const work = Array.from({ length: writers }, async (_, w) => {
      for (let i = 0; i < 10_000 && !stop && Date.now() - started < 180_000; i++) {
        const serviceName = `svc-${w}`
        const p = 1000 + i
        try {
          const res = await request(`${url}/v1/reconfigure?serviceName=${serviceName}&servicePath=/${serviceName}&port=${p}`, {
            method: 'PUT',
            headers: { authorization: `Bearer ${TOKEN}` },
            dispatcher: agent,
            headersTimeout: 10_000,
            bodyTimeout: 10_000,
          })
          const body = (await res.body.json()) as { code?: string }
          if (res.statusCode === 200) answers.push({ serviceName, port: p, outcome: 'ok', status: 200, at: Date.now() })
          else if (res.statusCode === 503 && body.code === 'WRITE_OUTCOME_UNKNOWN') answers.push({ serviceName, port: p, outcome: 'unknown', status: body.code, at: Date.now() })
          else answers.push({ serviceName, port: p, outcome: 'refused', status: `${res.statusCode} ${body.code ?? ''}`, at: Date.now() })
        } catch (err) {
          // Never sent (the port is closed) is a refusal; a request cut mid-way has no answer.
          const code = (err as { code?: string }).code ?? ''
          answers.push({ serviceName, port: p, outcome: code === 'ECONNREFUSED' ? 'refused' : 'unknown', status: code, at: Date.now() })
          await sleep(200)
        }
        await sleep(10)
      }
    })
    await sleep(700)
    await kill()
    const killedAt = Date.now()
    await sleep(300)
    await start()
    const restartedAt = Date.now()
    await sleep(1000)
    stop = true
    await Promise.all(work)

    const store = createRedisRouteStore({ url: redis.url })
    t.after(() => store.close())
    const log = await store.changes(0, 10_000)
    const logged = new Set(log.map((c) => `${c.serviceName}:${c.after?.destinations[0]?.port ?? 'removed'}`))
    const count = (o: Outcome) => answers.filter((a) => a.outcome === o).length
    process.stdout.write(
      `# control kill -9: ${answers.length} writes: ${count('ok')} ok, ${count('refused')} refused, ${count('unknown')} unknown (cut by the kill); restarted ${restartedAt - killedAt} ms after the kill\n`,
    )
    assert.ok(answers.some((a) => a.outcome === 'ok' && a.at < killedAt) && answers.some((a) => a.outcome === 'ok' && a.at > restartedAt), 'writes succeeded before the kill and after the restart')
    assert.ok(count('ok') < answers.length, 'the kill made some writes fail, or the test proves nothing')
    assert.deepEqual(answers.filter((a) => a.outcome === 'ok' && !logged.has(`${a.serviceName}:${a.port}`)), [], 'acknowledged writes missing from the change log')
    assert.deepEqual(answers.filter((a) => a.outcome === 'refused' && logged.has(`${a.serviceName}:${a.port}`)), [], 'refused writes that were stored')
    // Nothing half-written: every route in the table is a writer's last logged write.
    const table = new Map((await store.snapshot()).routes.map((r) => [r.serviceName, r.destinations[0]?.port]))
    for (let w = 0; w < writers; w++) {
      const last = [...log].reverse().find((c) => c.serviceName === `svc-${w}`)
      assert.equal(table.get(`svc-${w}`), last?.after?.destinations[0]?.port)
    }
  })
})
