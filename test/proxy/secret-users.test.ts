/**
 * Basic-auth users from Docker secrets (Docker Flow Proxy's usersSecret), end to end: a route
 * written through the DFP form or Tether's query form names the secret dfp_users_<name>; each
 * proxy reads it from its secrets directory (a temporary directory standing in for
 * /run/secrets, which Docker mounts) and lets exactly its users in, through a real HAProxy to a
 * real backend. A proxy without the secret lets nobody in and says so in /v1/status; no
 * password from a secret ever reaches the control plane.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { request } from 'undici'
import { encrypt } from 'unixcrypt'
import { backends, proxyUrl, startAgent, startControl } from './harness.ts'
import { waitFor } from '../helpers/haproxy.ts'

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

async function status(url: string, path: string, auth?: string): Promise<number> {
  const res = await request(`${url}${path}`, { headers: { connection: 'close', ...(auth === undefined ? {} : { authorization: auth }) } })
  await res.body.dump()
  return res.statusCode
}

describe('usersSecret: basic-auth users from the proxies\' Docker secrets', () => {
  it('lets in the users of the secret (plain and crypt(3) files, all users or the ones listed), nobody else; a proxy without the secret lets nobody in and reports it', async (t) => {
    const secrets = await mkdtemp(join(tmpdir(), 'tether-secrets-'))
    t.after(() => rm(secrets, { recursive: true, force: true }))
    // Docker writes secrets as files; DFP's format: 'name:password', ',' or new-line separated.
    await writeFile(join(secrets, 'dfp_users_admins'), 'alice:pw-alice\nbob:pw-bob, carol:pw-carol\nmallory\n')
    await writeFile(join(secrets, 'dfp_users_hashed'), `dave:${encrypt('pw-dave', '$6$saltsalt')}\n`)
    const [backend] = await backends(t, 1, 'secret')
    const control = await startControl(t)
    const proxy = await startAgent(t, { id: 'p1', controlUrls: [control.url], secretsDir: secrets })
    const url = proxyUrl(proxy)
    const endpoints = `endpoints=${backend!.address}`

    const writes = [
      `/v1/docker-flow-proxy/reconfigure?serviceName=all&servicePath=/all&port=80&${endpoints}&usersSecret=admins`,
      `/v1/reconfigure?serviceName=listed&servicePath=/listed&port=80&${endpoints}&usersSecret=admins&users=bob,zed:pw-zed`,
      `/v1/docker-flow-proxy/reconfigure?serviceName=hashed&servicePath=/hashed&port=80&${endpoints}&usersSecret=hashed&usersPassEncrypted=true`,
      `/v1/reconfigure?serviceName=absent&servicePath=/absent&port=80&${endpoints}&usersSecret=absent`,
    ]
    let version = 0
    for (const path of writes) {
      const res = await control.api(path.includes('docker-flow') ? 'GET' : 'PUT', path)
      assert.equal(res.status, 200, JSON.stringify(res.body))
      version = res.body.version
    }
    await proxy.agent.waitForVersion(version)

    // Every user of the secret, not the entry without a password.
    assert.equal(await status(url, '/all'), 401)
    assert.equal(await status(url, '/all/x', basic('alice', 'pw-alice')), 200)
    assert.equal(await status(url, '/all', basic('carol', 'pw-carol')), 200)
    assert.equal(await status(url, '/all', basic('alice', 'pw-bob')), 401)
    assert.equal(await status(url, '/all', basic('mallory', '')), 401)
    // users=bob (no password: from the secret) and zed (its own): only those two.
    assert.equal(await status(url, '/listed', basic('bob', 'pw-bob')), 200)
    assert.equal(await status(url, '/listed', basic('zed', 'pw-zed')), 200)
    assert.equal(await status(url, '/listed', basic('alice', 'pw-alice')), 401)
    // A file of crypt(3) hashes.
    assert.equal(await status(url, '/hashed', basic('dave', 'pw-dave')), 200)
    assert.equal(await status(url, '/hashed', basic('dave', 'wrong')), 401)
    // No secret on this proxy: closed to everybody, and said.
    assert.equal(await status(url, '/absent'), 401)
    assert.equal(await status(url, '/absent', basic('alice', 'pw-alice')), 401)
    assert.equal(backend!.requests, 5, 'exactly the five allowed requests reached the service')

    const fleet = await waitFor('the route problems in /v1/status', async () => {
      const res = await control.api('GET', '/v1/status')
      return res.body.routeProblems?.length > 0 ? res.body : undefined
    })
    const problems = fleet.routeProblems.map((p: { serviceName: string; problem: string; proxies: string[] }) => [p.serviceName, p.proxies, p.problem])
    assert.deepEqual(
      problems.map(([name, proxies]: [string, string[]]) => [name, proxies]),
      [
        ['absent', ['p1']],
        ['all', ['p1']],
      ],
    )
    assert.match(problems[0][2], /the Docker secret dfp_users_absent is not mounted in this proxy/)
    assert.match(problems[1][2], /dfp_users_admins: user mallory has no password; left out/)
    assert.equal(fleet.proxies[0].status, 'degraded')
    // The control plane never saw a password of a secret, nor a hash made from one.
    const everything = JSON.stringify([fleet, (await control.api('GET', '/v1/routes')).body, (await control.api('GET', '/v1/changes?since=0')).body])
    assert.doesNotMatch(everything, /pw-alice|pw-bob|pw-carol|pw-dave/)
    assert.match(everything, /"usersSecret":"admins"/)
  })
})
