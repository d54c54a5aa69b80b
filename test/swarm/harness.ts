/**
 * The Swarm lab the end-to-end suite runs in: its own dockerd (own socket, data root, exec
 * root and pidfile under a temp dir, so it never touches a system-wide daemon), a one-node
 * swarm, a base image made from this host's binaries (nothing can be pulled), Tether's image
 * built with the project's Dockerfile, and docker-compose.test.yml deployed as stack `tether`.
 *
 * `teardown()` removes all of it, also after a failure: stack, swarm, dockerd (stopped by the
 * pid in its pidfile after checking that pid's command line), mounts left behind, the
 * docker_gwbridge interface and FORWARD policy dockerd changed, and the temp dir.
 *
 * Environment knobs (all optional):
 *   TETHER_SWARM_SOURCE=head   build the image from the last commit instead of the work tree
 *   TETHER_SWARM_BASE_IMAGE    use this base image instead of making one (a machine that can pull)
 */
import { freePort } from '../../src/shared/free-port.ts'
import { randomBytes } from 'node:crypto'
import { createCa, issue, type Issuer } from '../helpers/pki.ts'
import { execFile, spawn } from 'node:child_process'
import { constants, existsSync } from 'node:fs'
import { access, cp, mkdir, mkdtemp, open, readdir, readFile, rm, rmdir, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { delimiter, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const STACK = 'tether'
export const REPO_ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)))
const LOCK_PATH = join(tmpdir(), 'tether-swarm-suite.lock')

export const log = (message: string): void => {
  process.stdout.write(`# [swarm ${new Date().toISOString().slice(11, 23)}] ${message}\n`)
}

/** This machine cannot host the lab (no dockerd can start, another suite holds it): skip locally, fail in CI. */
export class LabUnavailableError extends Error {
  override name = 'LabUnavailableError'
}

export interface RunResult {
  stdout: string
  stderr: string
}

export function run(command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string; cwd?: string; quiet?: boolean } = {}): Promise<RunResult> {
  const started = Date.now()
  const shown = `${command} ${args.join(' ')}`.slice(0, 200)
  if (options.quiet !== true) log(`$ ${shown}`)
  return new Promise((resolvePromise, reject) => {
    const child = execFile(
      command,
      args,
      { env: options.env ?? process.env, timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024, cwd: options.cwd ?? REPO_ROOT, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        if (error !== null) {
          const detail = `${stderr}`.trim().split('\n').slice(-15).join('\n')
          reject(new Error(`'${shown}' failed after ${Date.now() - started} ms: ${error.message.split('\n')[0]}\n${detail}`))
        } else {
          if (options.quiet !== true && Date.now() - started > 2_000) log(`  (${Date.now() - started} ms)`)
          resolvePromise({ stdout: `${stdout}`, stderr: `${stderr}` })
        }
      },
    )
    if (options.input !== undefined) child.stdin?.end(options.input)
  })
}

const onPath = (name: string): boolean =>
  (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, name)))

/** Why the suite cannot run on this machine, or null when it can. */
export function whyNotRunnable(): string | null {
  if (process.platform !== 'linux' || process.arch !== 'x64') return `needs Linux on x86-64 (this is ${process.platform}/${process.arch})`
  if (process.getuid?.() !== 0) return 'needs root to start its own dockerd'
  for (const tool of ['dockerd', 'docker', 'haproxy', 'redis-server', 'tini', 'busybox', 'ip']) {
    if (!onPath(tool) && !existsSync(`/usr/sbin/${tool}`) && !existsSync(`/sbin/${tool}`) && !existsSync(`/bin/${tool}`)) {
      return `'${tool}' is not installed (.ci/run installs docker.io, haproxy, redis-server, tini, busybox-static, iproute2)`
    }
  }
  return null
}


export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Polls `check` until it returns a value other than undefined, at most `timeoutMs`. */
export async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (let attempt = 0; attempt < 100_000; attempt += 1) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (error) {
      last = error
    }
    if (Date.now() >= deadline) break
    await sleep(everyMs)
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`)
}

/** One suite at a time on a machine: swarm ports (2377, 7946, 4789) are machine-wide. */
async function takeLock(): Promise<(() => Promise<void>) | string> {
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      const handle = await open(LOCK_PATH, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY)
      await handle.writeFile(String(process.pid))
      await handle.close()
      return async () => {
        await unlink(LOCK_PATH).catch(() => {})
      }
    } catch {
      const pid = Number((await readFile(LOCK_PATH, 'utf8').catch(() => '')).trim())
      const alive = Number.isInteger(pid) && pid > 0 && existsSync(`/proc/${pid}`)
      if (alive) return `another Swarm suite (pid ${pid}) holds ${LOCK_PATH}`
      await unlink(LOCK_PATH).catch(() => {})
    }
  }
  return `cannot take ${LOCK_PATH}`
}

export interface SwarmLab {
  dir: string
  dockerHost: string
  env: NodeJS.ProcessEnv
  image: string
  httpPort: number
  /** The proxies' HTTPS port (host mode). */
  httpsPort: number
  /** The proxies' port 7000 (host mode): the TCP route of the stack's `echo` service. */
  tcpPort: number
  controlPort: number
  apiToken: string
  /** The CA (PEM) of the test certificates; the Docker secret cert-swarm names secret.swarm.test. */
  tls: { caPem: string; secretFingerprint: string; ca: Issuer }
  /** The stack's variables (docker-compose.test.yml); a suite may add some before deploy(). */
  stackEnv: NodeJS.ProcessEnv
  /** Where the lab's secrets files are (the suite may replace acme_ca.pem before deploy()). */
  secretsDir: string
  /** `docker ...` against the lab's daemon. */
  docker(args: readonly string[], options?: { timeoutMs?: number; quiet?: boolean }): Promise<string>
  baseImage: string
  /**
   * Deploys docker-compose.test.yml (or `composeFile`, e.g. an edited copy: a stack changed the
   * way an operator changes it) as stack `tether`, by default on the lab's own daemon.
   */
  deploy(target?: { env: NodeJS.ProcessEnv; dockerSocket: string }, composeFile?: string): Promise<void>
  teardown(): Promise<void>
}

interface Cleanup {
  what: string
  fn: () => Promise<void>
}

/** A stack of undo steps: `teardown()` runs them newest first, logging (not throwing) failures. */
export function cleanupStack(): { cleanups: Cleanup[]; teardown: () => Promise<void> } {
  const cleanups: Cleanup[] = []
  const teardown = async (): Promise<void> => {
    for (const { what, fn } of cleanups.splice(0).reverse()) {
      try {
        await fn()
      } catch (error) {
        log(`cleanup '${what}' failed: ${(error as Error).message}`)
      }
    }
  }
  return { cleanups, teardown }
}

/** `build: false`: no base image and no Tether image (the caller builds them, e.g. with the README's commands). */
export async function startSwarmLab(options: { build?: boolean } = {}): Promise<SwarmLab> {
  const { cleanups, teardown } = cleanupStack()
  try {
    const lock = await takeLock()
    if (typeof lock === 'string') throw new LabUnavailableError(lock)
    cleanups.push({ what: 'lock', fn: lock })

    await reapLeftovers()
    const dir = await mkdtemp(join(tmpdir(), 'tether-swarm-'))
    cleanups.push({ what: `remove ${dir}`, fn: () => removeLabDir(dir) })
    const socket = join(dir, 'docker.sock')
    const dockerHost = `unix://${socket}`
    const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_HOST: dockerHost, DOCKER_BUILDKIT: '0', DOCKER_CLI_HINTS: 'false' }
    delete env.DOCKER_CONTEXT
    const docker = async (args: readonly string[], options: { timeoutMs?: number; quiet?: boolean } = {}): Promise<string> =>
      (await run('docker', args, { env, ...options })).stdout

    // --- dockerd ---
    const hadGwBridge = existsSync('/sys/class/net/docker_gwbridge')
    const forwardPolicy = await iptablesForwardPolicy()
    // Written down, so that a later run can undo them if this one is killed before its teardown.
    if (!hadGwBridge) await writeFile(join(dir, 'gwbridge-is-ours'), '')
    if (forwardPolicy !== null) await writeFile(join(dir, 'forward-policy'), forwardPolicy)
    const config = {
      'data-root': join(dir, 'data'),
      'exec-root': join(dir, 'exec'),
      pidfile: join(dir, 'docker.pid'),
      hosts: [dockerHost],
      // No docker0: builds use the host network, services the swarm overlay.
      bridge: 'none',
      'log-level': 'warn',
    }
    await writeFile(join(dir, 'daemon.json'), JSON.stringify(config, null, 2))
    const logFile = await open(join(dir, 'dockerd.log'), 'a')
    const daemon = spawn('dockerd', ['--config-file', join(dir, 'daemon.json')], { detached: true, stdio: ['ignore', logFile.fd, logFile.fd] })
    daemon.on('error', (error) => log(`dockerd: ${error.message}`))
    daemon.unref()
    await logFile.close()
    log(`dockerd started (pid ${daemon.pid}), socket ${socket}`)
    cleanups.push({
      what: 'stop dockerd',
      fn: async () => {
        await stopDockerd(config.pidfile, join(dir, 'daemon.json'), daemon.pid)
        if (!hadGwBridge && existsSync('/sys/class/net/docker_gwbridge')) await run('ip', ['link', 'delete', 'docker_gwbridge']).catch(() => {})
        if (forwardPolicy !== null) await run('iptables', ['-P', 'FORWARD', forwardPolicy], { quiet: true }).catch(() => {})
      },
    })
    try {
      await waitFor('dockerd to answer', 30_000, async () => ((await docker(['version', '--format', '{{.Server.Version}}'], { quiet: true, timeoutMs: 5_000 })).trim() || undefined), 300)
    } catch (error) {
      const tail = (await readFile(join(dir, 'dockerd.log'), 'utf8').catch(() => '')).trim().split('\n').slice(-10).join('\n')
      throw new LabUnavailableError(`dockerd did not start: ${(error as Error).message}\n${tail}`)
    }

    // --- swarm ---
    try {
      await docker(['swarm', 'init', '--advertise-addr', '127.0.0.1'])
    } catch (error) {
      throw new LabUnavailableError(`docker swarm init failed: ${(error as Error).message}`)
    }
    cleanups.push({ what: 'swarm leave', fn: async () => void (await docker(['swarm', 'leave', '--force'], { timeoutMs: 30_000 })) })

    // --- images ---
    let base = process.env.TETHER_SWARM_BASE_IMAGE
    const build = options.build !== false
    if (build && (base === undefined || base === '')) {
      base = 'tether-swarm-base:test'
      await run(join(REPO_ROOT, 'scripts/swarm/make-base-image.sh'), [base], { env, timeoutMs: 120_000 })
    }
    const image = 'tether:swarm-test'
    const context = join(dir, 'context')
    if (build) await makeBuildContext(context)
    if (build) await run('docker', ['build', '--quiet', '--network', 'host', '--build-arg', `BASE_IMAGE=${base}`, '-t', image, context], { env, timeoutMs: 480_000 })

    // --- secrets, ports ---
    const secrets = join(dir, 'secrets')
    await mkdir(secrets, { mode: 0o700 })
    const apiToken = `ci-token-${Math.random().toString(36).slice(2)}-0123456789`
    await writeFile(join(secrets, 'api_tokens'), `ci=${apiToken}\n`)
    await writeFile(join(secrets, 'proxy_token'), `proxy-token-${Math.random().toString(36).slice(2)}-0123456789\n`)
    await writeFile(join(secrets, 'cookie_key'), `cookie-key-${Math.random().toString(36).slice(2)}\n`)
    await writeFile(join(secrets, 'secret_key'), `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 })
    const ca = await createCa('Tether Swarm Test CA')
    const secretCert = await issue(ca, ['secret.swarm.test'])
    await writeFile(join(secrets, 'cert-swarm.pem'), secretCert.combined, { mode: 0o600 })
    // Replaced by a suite that runs an ACME server; any valid PEM until then.
    await writeFile(join(secrets, 'acme_ca.pem'), ca.pem)
    const httpPort = await freePort()
    const httpsPort = await freePort()
    const tcpPort = await freePort()
    const controlPort = await freePort()
    const stackEnv: NodeJS.ProcessEnv = {
      ...env,
      TETHER_IMAGE: image,
      REDIS_IMAGE: base,
      DOCKER_SOCKET: socket,
      TETHER_HTTP_PORT: String(httpPort),
      TETHER_HTTPS_PORT: String(httpsPort),
      TETHER_TCP_PORT: String(tcpPort),
      TETHER_CONTROL_PORT: String(controlPort),
      TETHER_SECRETS_DIR: secrets,
    }
    const deploy = async (target?: { env: NodeJS.ProcessEnv; dockerSocket: string }, composeFile = join(REPO_ROOT, 'docker-compose.test.yml')): Promise<void> => {
      const deployEnv = target === undefined ? stackEnv : { ...stackEnv, DOCKER_HOST: target.env.DOCKER_HOST, DOCKER_SOCKET: target.dockerSocket }
      await run('docker', ['stack', 'deploy', '--resolve-image', 'never', '-c', composeFile, STACK], { env: deployEnv, timeoutMs: 60_000 })
    }
    cleanups.push({
      what: 'stack rm',
      fn: async () => {
        await docker(['stack', 'rm', STACK], { timeoutMs: 60_000 })
        await waitFor('the stack containers to go', 60_000, async () => ((await docker(['ps', '-aq'], { quiet: true })).trim() === '' ? true : undefined), 500).catch((e: Error) =>
          log(e.message),
        )
      },
    })
    return { dir, dockerHost, env, image, baseImage: base ?? '', httpPort, httpsPort, tcpPort, controlPort, apiToken, stackEnv, secretsDir: secrets, tls: { caPem: ca.pem, secretFingerprint: secretCert.fingerprint, ca }, docker, deploy, teardown }
  } catch (error) {
    await teardown()
    throw error
  }
}

/**
 * What an earlier run killed before its teardown left behind (we hold the lock, so no other
 * suite is running): its daemons (stopped by pidfile, command line checked), its temp dir,
 * the network namespaces and host veth of its nodes.
 */
async function reapLeftovers(): Promise<void> {
  for (const entry of await readdir(tmpdir()).catch(() => [] as string[])) {
    if (!/^tether-swarm-[A-Za-z0-9]{6}$/.test(entry)) continue
    const dir = join(tmpdir(), entry)
    log(`removing what an earlier run left: ${dir}`)
    for (const sub of ['nodes/n1', 'nodes/n2', 'nodes/n3', '']) {
      await stopDockerd(join(dir, sub, 'docker.pid'), join(dir, sub, 'daemon.json'), undefined).catch(() => {})
    }
    if (existsSync(join(dir, 'gwbridge-is-ours')) && existsSync('/sys/class/net/docker_gwbridge')) await run('ip', ['link', 'delete', 'docker_gwbridge'], { quiet: true }).catch(() => {})
    const policy = (await readFile(join(dir, 'forward-policy'), 'utf8').catch(() => '')).trim()
    if (/^(ACCEPT|DROP)$/.test(policy)) await run('iptables', ['-P', 'FORWARD', policy], { quiet: true }).catch(() => {})
    await removeLabDir(dir).catch(() => {})
  }
  const namespaces = await run('ip', ['netns', 'list'], { quiet: true }).then((r) => r.stdout, () => '')
  for (const line of namespaces.split('\n')) {
    const name = line.split(' ')[0] ?? ''
    if (/^tether-[0-9a-f]{4}-(?:br|n[0-9]+)$/.test(name)) await run('ip', ['netns', 'delete', name], { quiet: true }).catch(() => {})
  }
  for (const link of await readdir('/sys/class/net').catch(() => [] as string[])) {
    if (/^tw[0-9a-f]{4}h$/.test(link)) await run('ip', ['link', 'delete', link], { quiet: true }).catch(() => {})
  }
  // The nodes' cgroup parents (cgroup v1: one per controller), deepest first; rmdir only removes empty ones.
  for (const controller of await readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
    for (const parent of await readdir(join('/sys/fs/cgroup', controller)).catch(() => [] as string[])) {
      if (!/^tether-[0-9a-f]{4}-n[0-9]+$/.test(parent)) continue
      const dir = join('/sys/fs/cgroup', controller, parent)
      for (const child of await readdir(dir, { withFileTypes: true }).catch(() => [])) if (child.isDirectory()) await rmdir(join(dir, child.name)).catch(() => {})
      await rmdir(dir).catch(() => {})
    }
  }
}

/** The build context: only what the Dockerfile copies, plus this host's CA bundle (see Dockerfile). */
async function makeBuildContext(context: string): Promise<void> {
  await mkdir(context, { recursive: true })
  if (process.env.TETHER_SWARM_SOURCE === 'head') {
    const archive = join(context, '..', 'head.tar')
    await run('git', ['archive', '--format=tar', '-o', archive, 'HEAD'])
    await run('tar', ['-x', '-f', archive, '-C', context], { quiet: true })
  } else {
    for (const entry of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'src', 'Dockerfile', '.dockerignore', 'scripts/swarm']) {
      await cp(join(REPO_ROOT, entry), join(context, entry), { recursive: true })
    }
  }
  for (const bundle of [process.env.NODE_EXTRA_CA_CERTS, '/etc/ssl/certs/ca-certificates.crt']) {
    if (bundle !== undefined && bundle !== '' && existsSync(bundle)) {
      await cp(bundle, join(context, 'extra-ca.pem'))
      break
    }
  }
}

async function iptablesForwardPolicy(): Promise<string | null> {
  try {
    const { stdout } = await run('iptables', ['-S', 'FORWARD'], { quiet: true, timeoutMs: 10_000 })
    return /^-P FORWARD (\w+)/m.exec(stdout)?.[1] ?? null
  } catch {
    return null
  }
}

/** Stops our dockerd by its pidfile, only if that pid's command line is our dockerd. */
async function stopDockerd(pidfile: string, configPath: string, spawnedPid: number | undefined): Promise<void> {
  const fromFile = Number((await readFile(pidfile, 'utf8').catch(() => '')).trim())
  const pid = Number.isInteger(fromFile) && fromFile > 0 ? fromFile : spawnedPid
  if (pid === undefined) return
  const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0')
  if (!cmdline[0]?.endsWith('dockerd') || !cmdline.includes(configPath)) {
    if (cmdline.length > 1) log(`not stopping pid ${pid}: its command line is not our dockerd (${cmdline.join(' ').slice(0, 120)})`)
    return
  }
  process.kill(pid, 'SIGTERM')
  const gone = await waitFor('dockerd to exit', 30_000, async () => (existsSync(`/proc/${pid}`) ? undefined : true), 200).catch(() => false)
  if (gone !== true) {
    log(`dockerd ${pid} did not exit on SIGTERM; killing it`)
    process.kill(pid, 'SIGKILL')
  }
  log('dockerd stopped')
}

/**
 * containerd shims outlive their daemon by design; any left whose containerd socket lives in
 * `dir` (a container that was running when its dockerd was stopped or killed) is ours.
 */
async function killShims(dir: string): Promise<void> {
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^[0-9]+$/.test(entry)) continue
    const cmdline = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0')
    if (!cmdline[0]?.includes('containerd-shim')) continue
    const address = cmdline[cmdline.indexOf('-address') + 1] ?? ''
    if (cmdline.includes('-address') && address.startsWith(`${dir}/`)) {
      log(`stopping a containerd shim left behind (pid ${entry})`)
      try {
        process.kill(Number(entry), 'SIGKILL')
      } catch {
        // already gone
      }
    }
  }
}

/** Unmounts whatever dockerd left mounted under `dir`, then removes it. */
async function removeLabDir(dir: string): Promise<void> {
  await killShims(dir)
  const mounts = (await readFile('/proc/mounts', 'utf8').catch(() => ''))
    .split('\n')
    .map((line) => line.split(' ')[1] ?? '')
    .map((p) => p.replace(/\\040/g, ' '))
    .filter((p) => p === dir || p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length)
  for (const mount of mounts) await run('umount', ['-l', mount], { quiet: true }).catch(() => {})
  await rm(dir, { recursive: true, force: true, maxRetries: 3 })
  try {
    await access(dir)
    log(`could not remove ${dir}`)
  } catch {
    log(`removed ${dir}`)
  }
}

export { freePort }
