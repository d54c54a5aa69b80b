/**
 * What a proxy's log says when the control plane goes away and comes back: one line each,
 * not one per retry (a real control plane stopped and started on the same port).
 */
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { describe, it } from 'node:test'
import pino from 'pino'
import { waitFor } from '../helpers/haproxy.ts'
import { startAgent, startControl } from './harness.ts'

describe('proxy agent log', () => {
  it('writes one line when it loses the control plane and one when it is back, however many retries in between', async (t) => {
    const lines: Array<{ level: number; msg: string; attempts?: number }> = []
    const stream = new Writable({
      write(chunk: Buffer, _e, done) {
        for (const text of chunk.toString().split('\n')) if (text !== '') lines.push(JSON.parse(text))
        done()
      },
    })
    const control = await startControl(t)
    const agent = await startAgent(t, { id: 'edge-1', controlUrls: [control.url], engine: 'recording', agent: { log: pino({ level: 'info' }, stream) } })
    await waitFor('the first apply', async () => (agent.agent.status().version === 0 && agent.agent.status().ready ? true : undefined))
    const messages = (): string[] => lines.map((l) => l.msg)
    assert.deepEqual(messages().filter((m) => /control plane/.test(m)), ['control plane reachable'])

    await control.stop()
    await waitFor('the lost line', async () => (messages().some((m) => m.startsWith('lost the control plane')) ? true : undefined))
    // Backoff 50-400 ms in the harness: a few seconds are many failed attempts.
    await new Promise((r) => setTimeout(r, 2000))
    await control.start()
    await waitFor('the back line', async () => (messages().some((m) => m.startsWith('control plane reachable again')) ? true : undefined))

    const about = lines.filter((l) => /control plane/.test(l.msg))
    assert.equal(about.length, 3, JSON.stringify(about))
    assert.match(about[1]!.msg, /^lost the control plane \(.+\); serving version 0 meanwhile, retrying$/)
    assert.equal(about[1]!.level, 40)
    assert.match(about[2]!.msg, /^control plane reachable again after \d+ s \(\d+ failed attempts\)$/)
    assert.ok((about[2]!.attempts ?? 0) > 2, `several retries happened (${about[2]!.attempts})`)
  })
})
