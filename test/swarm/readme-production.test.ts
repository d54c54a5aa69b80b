/**
 * The README's production commands, run as written, on a fresh Swarm with no registry: the
 * block between `<!-- production:begin` and `<!-- production:end -->` is taken from README.md
 * and run by bash in a copy of the repository, so the text and this test cannot drift. The
 * lab has a swarm but no images at all: the block's own `scripts/build-image.sh` makes every
 * image the stack needs (Tether's, and Redis' from this host's redis-server: nothing can be
 * pulled). The block runs in a clean environment: the machine's (PATH, HOME, its CA bundle)
 * and only what is this lab's and not the README's to choose (its Docker socket and free ports,
 * since other processes on this machine hold 80 and 8080); nothing of Tether's is exported
 * beforehand. Then the test checks what the README promises: secrets made and git-ignored,
 * the control plane ready, the README's example app and docs/production.md's example stack file
 * routed and sticky, HTTPS, the HAProxy stats
 * page behind the password from secrets/stats_auth, and the dashboard linking it.
 */
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { httpsGet } from '../helpers/https.ts'
import { issue } from '../helpers/pki.ts'
import { execFile } from 'node:child_process'
import { cp, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { freePort } from '../../src/shared/free-port.ts'
import { LabUnavailableError, log, REPO_ROOT, run, startSwarmLab, waitFor, whyNotRunnable, type SwarmLab } from './harness.ts'
import { CookieJar, demoReply, request, requestFresh } from './http.ts'

const CI = process.env.CI === 'true'

/** The shell block between `<!-- NAME:begin ... -->` and `<!-- NAME:end -->` of the README. */
export function readmeBlock(readme: string, name: 'production' | 'example-app'): string {
  const m = new RegExp(`<!-- ${name}:begin[^\\n]*-->\\n\`\`\`sh\\n([\\s\\S]*?)\`\`\`\\n<!-- ${name}:end -->`).exec(readme)
  if (m?.[1] === undefined) throw new Error(`README.md has no ${name} block between <!-- ${name}:begin --> and <!-- ${name}:end -->`)
  return m[1]
}

let lab: SwarmLab | undefined
let unavailable = whyNotRunnable()
let setupError: Error | undefined
if (unavailable === null) {
  try {
    lab = await startSwarmLab({ build: false })
  } catch (error) {
    if (error instanceof LabUnavailableError) unavailable = error.message
    else setupError = error as Error
  }
}
if (unavailable !== null) log(`README production test cannot run on this machine: ${unavailable}${CI ? '' : ' (skipped; with CI=true it fails)'}`)

const work = await mkdtemp(join(tmpdir(), 'tether-readme-'))
after(async () => {
  await lab?.teardown()
  await rm(work, { recursive: true, force: true })
}, { timeout: 180_000 })

describe("README: the production commands, pasted on a swarm without a registry", { skip: unavailable !== null && !CI ? unavailable : false }, () => {
  it('build the image, make the secrets, deploy, and serve: a labelled service routed and sticky, stats behind the password, the dashboard linking them', { timeout: 900_000 }, async () => {
    if (lab === undefined) throw setupError ?? new Error(`the Swarm lab is not running: ${unavailable ?? 'unknown reason'}`)
    // fetch's timeouts are unref'd timers: while one waits on a port that holds the connection,
    // nothing else would keep the event loop (and so this test) alive.
    const keepAlive = setInterval(() => {}, 1000)
    try {
      await readmeSteps(lab)
    } finally {
      clearInterval(keepAlive)
    }
  })
})

/** The README block, run as written, then what the README promises. */
async function readmeSteps(lab: SwarmLab): Promise<void> {
  const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8')
  // Pasted one after the other into one shell, as a reader does: the example app uses the block's $TETHER_IMAGE.
  const block = `${readmeBlock(readme, 'production')}\n${readmeBlock(readme, 'example-app')}`
  // A checkout: what the block and the build use (the work tree as it is, like the Swarm suite).
  for (const entry of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'src', 'scripts', 'Dockerfile', '.dockerignore', 'docker-stack.yml']) {
    await cp(join(REPO_ROOT, entry), join(work, entry), { recursive: true })
  }
  const statsPort = await freePort()
  // The machine's environment, not the test runner's (which may hold TETHER_* or REDIS_* settings).
  const machine = ['PATH', 'HOME', 'USER', 'LANG', 'TMPDIR', 'NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY']
  const env: NodeJS.ProcessEnv = Object.fromEntries(machine.filter((name) => process.env[name] !== undefined).map((name) => [name, process.env[name]]))
  Object.assign(env, {
    DOCKER_HOST: lab.env.DOCKER_HOST,
    DOCKER_SOCKET: join(lab.dir, 'docker.sock'),
    TETHER_HTTP_PORT: String(lab.httpPort),
    TETHER_HTTPS_PORT: String(lab.httpsPort),
    TETHER_CONTROL_PORT: String(lab.controlPort),
    TETHER_STATS_PORT: String(statsPort),
  })
  log('running the README production block')
  const output = await new Promise<string>((resolve, reject) => {
    execFile('bash', ['-euo', 'pipefail', '-c', block], { cwd: work, env, timeout: 840_000, maxBuffer: 16 * 1024 * 1024, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      for (const line of `${stderr}${stdout}`.trim().split('\n')) log(`  | ${line}`)
      if (error !== null) reject(new Error(`the README block failed: ${error.message.split('\n')[0]}`))
      else resolve(stdout)
    })
  })

  // Step 4 waited for readiness; step 5 read the status with the token after "ci=".
  assert.match(output, /\{"status":"ready"\}/)
  assert.match(output, /"version":\d+,"live":\d+/)
  assert.match(output, new RegExp(`dashboard: http://\\S+:${lab.controlPort}/ui/`))

  // Secrets: made by the steps, readable by their owner only, git-ignored (as is extra-ca.pem).
  const tokens = await readFile(join(work, 'secrets/api_tokens'), 'utf8')
  assert.match(tokens, /^ci=[0-9a-f]{48}\n$/)
  for (const name of ['api_tokens', 'proxy_token', 'cookie_key', 'stats_auth', 'secret_key']) assert.equal((await stat(join(work, 'secrets', name))).mode & 0o777, 0o600, name)
  for (const path of ['secrets/api_tokens', 'extra-ca.pem']) await run('git', ['-C', REPO_ROOT, 'check-ignore', '-q', path])
  const token = tokens.trim().slice('ci='.length)
  const statsAuth = (await readFile(join(work, 'secrets/stats_auth'), 'utf8')).trim()

  // The stack's Redis runs the image step 1 made (offline: from this host's redis-server).
  assert.match(await lab.docker(['service', 'inspect', '--format', '{{.Spec.TaskTemplate.ContainerSpec.Image}}', 'tether_redis']), /^tether-redis:local/)

  // The README's example app, created by its block with labels only, is routed with no API call, and sticky.
  const shop = `http://127.0.0.1:${lab.httpPort}/shop/`
  await waitFor('the labelled service to be routed', 120_000, async () => (demoReply(await request(shop).catch(() => ({ status: 0, json: null, text: '', setCookies: [] }))) === null ? undefined : true), 1_000)
  const jar = new CookieJar()
  const first = demoReply(await request(shop, { jar }))
  const second = demoReply(await request(shop, { jar }))
  assert.ok(first !== null && second !== null)
  assert.equal(second.instance, first.instance, 'the cookie keeps the session on one task')
  assert.equal(second.count, first.count + 1)

  // docs/production.md's example stack file, deployed as it says: the app on the external network tether_tether, routed by its labels, sticky.
  const production = await readFile(join(REPO_ROOT, 'docs/production.md'), 'utf8')
  const stackFile = /<!-- example-stack:begin[^\n]*-->\n```yaml\n([\s\S]*?)```\n<!-- example-stack:end -->/.exec(production)?.[1]
  assert.ok(stackFile !== undefined, 'docs/production.md has an example stack between <!-- example-stack:begin --> and <!-- example-stack:end -->')
  await writeFile(join(work, 'cart.yml'), stackFile)
  await run('docker', ['stack', 'deploy', '-c', 'cart.yml', 'cart'], { cwd: work, env: { ...env, TETHER_IMAGE: 'tether:1.0' }, timeoutMs: 120_000 })
  const cart = `http://127.0.0.1:${lab.httpPort}/cart/`
  // Both tasks running (the stack file asks for 2), then the route answering; what it answered before is logged.
  // As a new visitor, on new connections: a keep-alive connection opened before the reload that added
  // /cart gets one last answer from the previous table (docs/proxy.md, option idle-close-on-response),
  // and this test's fetch() pool still holds some from the README's own app.
  await waitFor('both tasks of cart_app to run', 120_000, async () => (/^2\/2/.test((await lab.docker(['service', 'ls', '--filter', 'name=cart_app', '--format', '{{.Replicas}}'], { quiet: true })).trim()) ? true : undefined), 1_000)
  await waitFor('the example stack to be routed', 120_000, async () => {
    const reply = await requestFresh(cart).catch((error: Error) => ({ status: 0, json: null, text: error.message, setCookies: [] }))
    if (demoReply(reply) !== null) return true
    log(`  /cart/ answered ${reply.status} ${reply.text.slice(0, 120)}`)
    return undefined
  }, 1_000)
  const cartJar = new CookieJar()
  const cartReplies = [await requestFresh(cart, { jar: cartJar }), await requestFresh(cart, { jar: cartJar })]
  const [cartFirst, cartSecond] = cartReplies.map(demoReply)
  assert.ok(cartFirst != null && cartSecond != null, `two answers of the app: ${cartReplies.map((r) => `${r.status} ${r.text.slice(0, 200)}`).join(' | ')}`)
  assert.match(cartFirst.instance, /^cart_app\.\d+\./, 'the task answers with its name (hostname {{.Task.Name}})')
  assert.equal(cartSecond.instance, cartFirst.instance, 'the cookie keeps the session on one task')
  assert.equal(cartSecond.count, cartFirst.count + 1)
  assert.equal((await request(`http://127.0.0.1:${lab.controlPort}/v1/routes/cart_app`)).status, 200)

  // The route is visible with the token-less API and changeable with the README's token.
  const routes = await request(`http://127.0.0.1:${lab.controlPort}/v1/routes/shop`)
  assert.equal(routes.status, 200)
  assert.equal((await request(`http://127.0.0.1:${lab.controlPort}/v1/remove?serviceName=nothing`, { method: 'DELETE', token })).status, 404, 'the token is accepted (404: no such route, not 401)')

  // HTTPS: a certificate uploaded with the README's token (its key sealed with secrets/secret_key) is served by SNI.
  const leaf = await issue(lab.tls.ca, ['shop.example.com'])
  const put = await request(`http://127.0.0.1:${lab.controlPort}/v1/certificates/shop?wait=converged&timeout=30`, { method: 'PUT', token, timeoutMs: 40_000, json: { certificate: leaf.chain, key: leaf.key } })
  assert.equal(put.status, 200, put.text)
  const secure = await httpsGet({ port: lab.httpsPort, host: 'shop.example.com', path: '/shop/', ca: lab.tls.caPem })
  assert.equal(secure.status, 200)
  assert.equal(new X509Certificate(secure.peer.raw).fingerprint256, leaf.fingerprint)

  // HAProxy stats on every node's TETHER_STATS_PORT: the password from secrets/stats_auth.
  const stats = `http://127.0.0.1:${statsPort}/stats`
  assert.equal((await fetch(stats)).status, 401)
  const withPassword = await fetch(stats, { headers: { authorization: `Basic ${Buffer.from(statsAuth).toString('base64')}` } })
  assert.equal(withPassword.status, 200)
  assert.match(await withPassword.text(), /Statistics Report/)
  assert.equal((await fetch(`http://127.0.0.1:${statsPort}/metrics`)).status, 200, 'Prometheus needs no password')

  // The dashboard links each proxy's stats page on that port.
  const settings = await request(`http://127.0.0.1:${lab.controlPort}/ui/settings.json`)
  assert.equal(settings.json?.statsUrl, `http://{node}:${statsPort}/stats`)
  assert.equal((await request(`http://127.0.0.1:${lab.controlPort}/ui/`)).status, 200)
}
