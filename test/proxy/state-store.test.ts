import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { normalizeRoute } from '../../src/contracts/route.ts'
import { createStateStore } from '../../src/proxy/state-store.ts'

const snapshot = (version: number) => ({ version, routes: [normalizeRoute({ serviceName: `svc${version}`, destinations: [{ servicePath: ['/x'], port: 80 }] })] })

describe('last known good snapshot on disk', () => {
  it('gives back the last snapshot saved, and leaves no temporary file behind', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'tether-state-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    const store = await createStateStore({ dir: join(dir, 'nested', 'state') })
    assert.equal(await store.load(), null)
    await store.save(snapshot(1))
    await store.save(snapshot(2))
    assert.deepEqual(await store.load(), snapshot(2))
    assert.deepEqual(await readdir(join(dir, 'nested', 'state')), ['last-known-good.json'])
    // a new process (a restarted proxy) reads the same file
    assert.deepEqual(await (await createStateStore({ dir: join(dir, 'nested', 'state') })).load(), snapshot(2))
  })

  it('treats a truncated or foreign file as absent and says why', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'tether-state-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    const reasons: string[] = []
    const store = await createStateStore({ dir, onInvalid: (r) => reasons.push(r) })
    await writeFile(store.file, '{"version": 4, "rou')
    assert.equal(await store.load(), null)
    await writeFile(store.file, JSON.stringify({ version: 'four', routes: [] }))
    assert.equal(await store.load(), null)
    assert.equal(reasons.length, 2)
    assert.match(reasons[0] ?? '', /not JSON/)
    assert.match(reasons[1] ?? '', /not a config snapshot: \/version/)
    await store.save(snapshot(5))
    assert.equal(JSON.parse(await readFile(store.file, 'utf8')).version, 5)
  })
})
