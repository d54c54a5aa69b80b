/**
 * The files a real HAProxy engine writes in its state directory (haproxy.cfg with the cookie key
 * and the basic-auth password hashes, the check candidates, the maps) are readable by their owner
 * only, also a haproxy.cfg left with 0644 by an older version.
 */
import assert from 'node:assert/strict'
import { chmod, readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { request } from 'undici'
import { normalizeRoute } from '../../../src/contracts/route.ts'
import { createTestProxy, TEST_COOKIE_KEY, waitFor } from '../../helpers/haproxy.ts'

// `mkpasswd -m sha-512 s3cret tethersalt`
const S3CRET_HASH = '$6$tethersalt$igDKEU2kQB0/sdrV3JlyBanTfVltpwmxDdT780GrialRN11kHhMXKN0Sp1sPnRq95/CzpK0fl8.FOSqDXQgNN.'

/** Every regular file under `dir`, with its permission bits. */
async function modes(dir: string): Promise<Array<{ file: string; mode: number }>> {
  const out: Array<{ file: string; mode: number }> = []
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue
    const file = join(entry.parentPath, entry.name)
    out.push({ file: file.slice(dir.length + 1), mode: (await stat(file)).mode & 0o777 })
  }
  return out
}

describe('state directory file modes', () => {
  it('haproxy.cfg (cookie key, password hashes) and every other file are 0600, after a start, a reload and a config left 0644', async (t) => {
    const proxy = await createTestProxy(t)
    const route = (users: string[]) =>
      normalizeRoute({ serviceName: 'private', destinations: [{ servicePath: ['/private'], port: 80 }], endpoints: ['127.0.0.1:9'], auth: { users: users.map((name) => ({ name, passwordHash: S3CRET_HASH })) } })
    await proxy.engine.apply({ version: 1, routes: [route(['admin'])] })
    const config = join(proxy.stateDir, 'haproxy.cfg')
    // What the file must hold is there, and HAProxy serves it (asks for the password).
    const text = await readFile(config, 'utf8')
    assert.ok(text.includes(S3CRET_HASH) && text.includes(TEST_COOKIE_KEY), 'the configuration holds the hash and the cookie key')
    const asked = await request(`${proxy.url}/private`, { headersTimeout: 5000 })
    await asked.body.dump()
    assert.equal(asked.statusCode, 401)

    const check = async (when: string): Promise<void> => {
      const files = await modes(proxy.stateDir)
      assert.ok(files.some((f) => f.file === 'haproxy.cfg'), `${when}: ${JSON.stringify(files)}`)
      assert.ok(files.some((f) => f.file.endsWith('.map')), `${when}: the maps are there: ${JSON.stringify(files)}`)
      // haproxy.pid is HAProxy's own (a process id, world-readable by convention).
      const open = files.filter((f) => f.file !== 'haproxy.pid' && (f.mode & 0o077) !== 0).map((f) => `${f.file} ${f.mode.toString(8)}`)
      assert.deepEqual(open, [], `${when}: files readable by others`)
    }
    await check('after the first start')

    // An older version left it 0644: the next write makes it 0600 again.
    await chmod(config, 0o644)
    await proxy.engine.apply({ version: 2, routes: [route(['admin', 'bob'])] })
    await waitFor('version 2 written to haproxy.cfg', async () => ((await readFile(config, 'utf8')).includes('user bob ') ? true : undefined))
    await check('after a change')
  })
})
