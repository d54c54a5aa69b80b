/**
 * Several Swarm nodes on one machine (the suite's multi-node part): each node is a dockerd in
 * its own network namespace, joined by veth pairs to a bridge that lives in one more namespace
 * (not the host's: dockerd sets the host's FORWARD policy to DROP), on a private /24 that
 * exists only inside these namespaces, with no default route anywhere, so nothing leaves the
 * machine. The host reaches the nodes through one more veth on that bridge.
 *
 * A daemon is started with `nsenter --net=<ns> unshare --mount --uts --propagation slave`
 * and a script that mounts a fresh sysfs (showing the namespace's own interfaces) while
 * keeping the cgroup v1 tree: `ip netns exec` would hide it and dockerd would refuse to start.
 *
 * `teardown()` undoes everything: swarm, daemons (by pidfile, command line checked),
 * namespaces, the host veth, the nodes' cgroups and data directories.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, open, readdir, readFile, rmdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { cleanupStack, log, run, waitFor } from './harness.ts'

export interface SwarmNode {
  name: string
  ip: string
  /** The node's socket, as the host sees it. */
  socket: string
  manager: boolean
  env: NodeJS.ProcessEnv
  docker(args: readonly string[], options?: { timeoutMs?: number; quiet?: boolean }): Promise<string>
}

export interface SwarmNodes {
  nodes: SwarmNode[]
  /**
   * One path that is each node's own socket inside that node's mount namespace (the node's
   * directory is bind-mounted there), so a stack can mount "the local Docker socket" on every
   * manager, as /var/run/docker.sock is on real machines. On the host it is an empty directory.
   */
  localSocket: string
  teardown(): Promise<void>
}

/** The private /24 the nodes live on (only inside the namespaces this creates). */
export const NODE_SUBNET = '192.168.213'

export async function startSwarmNodes(baseDir: string, count: number, options: { managers?: number } = {}): Promise<SwarmNodes> {
  const managers = options.managers ?? 1
  const localDir = join(baseDir, 'local')
  await mkdir(localDir, { recursive: true })
  const id = randomBytes(2).toString('hex')
  const brNs = `tether-${id}-br`
  const { cleanups, teardown } = cleanupStack()
  const ip = (...args: string[]): Promise<unknown> => run('ip', args, { quiet: true, timeoutMs: 15_000 })
  try {
    await ip('netns', 'add', brNs)
    cleanups.push({ what: `netns ${brNs}`, fn: async () => void (await ip('netns', 'delete', brNs)) })
    await ip('-n', brNs, 'link', 'set', 'lo', 'up')
    await ip('-n', brNs, 'link', 'add', 'br0', 'type', 'bridge')
    await ip('-n', brNs, 'link', 'set', 'br0', 'up')

    // The host's way in.
    const hostVeth = `tw${id}h`
    await ip('link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', `tw${id}hb`)
    cleanups.push({ what: `link ${hostVeth}`, fn: async () => void (await ip('link', 'delete', hostVeth).catch(() => {})) })
    await ip('link', 'set', `tw${id}hb`, 'netns', brNs)
    await ip('-n', brNs, 'link', 'set', `tw${id}hb`, 'master', 'br0', 'up')
    await ip('addr', 'add', `${NODE_SUBNET}.1/24`, 'dev', hostVeth)
    await ip('link', 'set', hostVeth, 'up')

    const nodes: SwarmNode[] = []
    for (let i = 1; i <= count; i += 1) {
      const name = `tether-${id}-n${i}`
      const address = `${NODE_SUBNET}.${10 + i}`
      await ip('netns', 'add', name)
      cleanups.push({ what: `netns ${name}`, fn: async () => void (await ip('netns', 'delete', name)) })
      await ip('link', 'add', `tw${id}n${i}`, 'type', 'veth', 'peer', 'name', `tw${id}b${i}`)
      await ip('link', 'set', `tw${id}n${i}`, 'netns', name)
      await ip('link', 'set', `tw${id}b${i}`, 'netns', brNs)
      await ip('-n', brNs, 'link', 'set', `tw${id}b${i}`, 'master', 'br0', 'up')
      await ip('-n', name, 'link', 'set', 'lo', 'up')
      await ip('-n', name, 'link', 'set', `tw${id}n${i}`, 'name', 'eth0')
      await ip('-n', name, 'addr', 'add', `${address}/24`, 'dev', 'eth0')
      await ip('-n', name, 'link', 'set', 'eth0', 'up')

      const dir = join(baseDir, `n${i}`)
      await mkdir(dir, { recursive: true })
      const socket = join(dir, 'docker.sock')
      const config = {
        'data-root': join(dir, 'data'),
        'exec-root': join(dir, 'exec'),
        pidfile: join(dir, 'docker.pid'),
        hosts: [`unix://${socket}`],
        'cgroup-parent': name,
        'deprecated-key-path': join(dir, 'key.json'),
        bridge: 'none',
        'log-level': 'warn',
      }
      const configPath = join(dir, 'daemon.json')
      await writeFile(configPath, JSON.stringify(config, null, 2))
      const script = join(dir, 'start.sh')
      await writeFile(
        script,
        [
          '#!/bin/sh',
          'set -e',
          `hostname ${name}`,
          `mkdir -p ${dir}/cgroup`,
          `mount --rbind /sys/fs/cgroup ${dir}/cgroup`,
          'mount -t sysfs sysfs /sys',
          `mount --move ${dir}/cgroup /sys/fs/cgroup`,
          `mount --bind ${dir} ${localDir}`,
          `exec dockerd --config-file ${configPath}`,
          '',
        ].join('\n'),
        { mode: 0o755 },
      )
      const logFile = await open(join(dir, 'dockerd.log'), 'a')
      const daemon = spawn('nsenter', [`--net=/run/netns/${name}`, 'unshare', '--mount', '--uts', '--propagation', 'slave', script], {
        detached: true,
        stdio: ['ignore', logFile.fd, logFile.fd],
      })
      daemon.on('error', (error) => log(`${name}: ${error.message}`))
      daemon.unref()
      await logFile.close()
      // Runs in reverse: the daemon stops first, then its cgroups can go.
      cleanups.push({ what: `cgroups ${name}`, fn: () => removeCgroups(name) })
      cleanups.push({ what: `dockerd ${name}`, fn: () => stopNodeDaemon(config.pidfile, configPath) })
      const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_HOST: `unix://${socket}`, DOCKER_CLI_HINTS: 'false' }
      delete env.DOCKER_CONTEXT
      const docker = async (args: readonly string[], options: { timeoutMs?: number; quiet?: boolean } = {}): Promise<string> =>
        (await run('docker', args, { env, ...options })).stdout
      nodes.push({ name, ip: address, socket, manager: i <= managers, env, docker })
    }

    for (const node of nodes) {
      await waitFor(`${node.name}'s dockerd to answer`, 40_000, async () => ((await node.docker(['version', '--format', '{{.Server.Version}}'], { quiet: true, timeoutMs: 5_000 })).trim() || undefined), 300).catch(
        async (error: Error) => {
          const tail = (await readFile(join(baseDir, node.name.slice(-2), 'dockerd.log'), 'utf8').catch(() => '')).trim().split('\n').slice(-8).join('\n')
          throw new Error(`${error.message}\n${tail}`)
        },
      )
    }
    const [first, ...others] = nodes
    if (first === undefined) throw new Error('no nodes')
    await first.docker(['swarm', 'init', '--advertise-addr', first.ip, '--listen-addr', `${first.ip}:2377`])
    const tokens = {
      worker: (await first.docker(['swarm', 'join-token', '-q', 'worker'], { quiet: true })).trim(),
      manager: (await first.docker(['swarm', 'join-token', '-q', 'manager'], { quiet: true })).trim(),
    }
    for (const node of others) {
      const token = node.manager ? tokens.manager : tokens.worker
      await node.docker(['swarm', 'join', '--token', token, '--advertise-addr', node.ip, '--listen-addr', `${node.ip}:2377`, `${first.ip}:2377`], { timeoutMs: 60_000 })
    }
    cleanups.push({
      what: 'swarm leave on every node',
      fn: async () => {
        // Services first, so that every node's containers are gone before it leaves.
        const services = (await first.docker(['service', 'ls', '-q'], { quiet: true }).catch(() => '')).trim().split('\n').filter(Boolean)
        if (services.length > 0) await first.docker(['service', 'rm', ...services]).catch(() => {})
        for (const node of nodes) {
          await waitFor(`${node.name}'s containers to go`, 60_000, async () => ((await node.docker(['ps', '-aq'], { quiet: true })).trim() === '' ? true : undefined), 500).catch((e: Error) => log(e.message))
        }
        for (const node of [...others].reverse()) await node.docker(['swarm', 'leave', '--force'], { timeoutMs: 30_000 }).catch(() => {})
        await first.docker(['swarm', 'leave', '--force'], { timeoutMs: 30_000 }).catch(() => {})
      },
    })
    await waitFor(`${count} ready nodes`, 60_000, async () => {
      const states = (await first.docker(['node', 'ls', '--format', '{{.Status}}'], { quiet: true })).trim().split('\n')
      return states.length === count && states.every((s) => s === 'Ready') ? true : undefined
    }, 500)
    log(`${count} Swarm nodes ready on ${NODE_SUBNET}.0/24 (${managers} managers): ${nodes.map((n) => `${n.name}=${n.ip}`).join(', ')}`)
    return { nodes, localSocket: join(localDir, 'docker.sock'), teardown }
  } catch (error) {
    await teardown()
    throw error
  }
}

async function stopNodeDaemon(pidfile: string, configPath: string): Promise<void> {
  const pid = Number((await readFile(pidfile, 'utf8').catch(() => '')).trim())
  if (!Number.isInteger(pid) || pid <= 0) return
  const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0')
  if (!cmdline[0]?.endsWith('dockerd') || !cmdline.includes(configPath)) return
  process.kill(pid, 'SIGTERM')
  const gone = await waitFor('a node dockerd to exit', 30_000, async () => (existsSync(`/proc/${pid}`) ? undefined : true), 200).catch(() => false)
  if (gone !== true) process.kill(pid, 'SIGKILL')
}

/** dockerd leaves its (empty) cgroup-parent directories behind in every v1 hierarchy. */
async function removeCgroups(parent: string): Promise<void> {
  const root = '/sys/fs/cgroup'
  for (const controller of await readdir(root).catch(() => [] as string[])) {
    const dir = join(root, controller, parent)
    if (!existsSync(dir)) continue
    // Depth first: containers' cgroups below the parent.
    const children = await readdir(dir, { withFileTypes: true }).catch(() => [])
    for (const child of children) if (child.isDirectory()) await rmdir(join(dir, child.name)).catch(() => {})
    await rmdir(dir).catch(() => {})
  }
}
