/**
 * The HAProxy master process: start (master-worker, master CLI on a unix socket), supervise
 * (restart with capped backoff when it dies), reload through the master CLI and verify the new
 * worker took over, stop with no process left behind.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readdir, readFile, writeFile, rename } from 'node:fs/promises'
import { resolve as absolutePath } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { HaproxyNotInstalledError, HaproxyReloadError, HaproxyStartError } from './errors.ts'
import { requestReload, showProc, showServersState, type ProcInfo } from './runtime.ts'
import type { Logger } from '../../shared/logger.ts'
import { backoffDelay, systemClock, type Clock } from '../../shared/clock.ts'

export const INSTALL_HINT = 'install HAProxy 2.6 or newer (Debian/Ubuntu: apt-get install -y haproxy; Alpine: apk add haproxy) or set the path to the haproxy binary'

/** `haproxy -v` → "HAProxy 2.6.12-1+deb12u4". Rejects with an install hint when it cannot run. */
export function haproxyVersion(bin: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(bin, ['-v'], { timeout: 10_000 }, (err, stdout) => {
      if (err !== null) {
        const code = (err as NodeJS.ErrnoException).code
        const why = code === 'ENOENT' ? `'${bin}' was not found` : `'${bin} -v' failed: ${err.message}`
        return reject(new HaproxyNotInstalledError(why, INSTALL_HINT))
      }
      const m = /HAProxy version (\S+)/.exec(stdout)
      if (m === null) return reject(new HaproxyNotInstalledError(`'${bin} -v' did not print a HAProxy version`, INSTALL_HINT))
      resolve(`HAProxy ${m[1]}`)
    })
  })
}

export interface ProcessOptions {
  bin: string
  configPath: string
  masterSocket: string
  adminSocket: string
  pidFile: string
  serverStateFile: string
  /** Restart delay after HAProxy dies: from min, doubling with each failed restart up to max, with jitter (backoffDelay). */
  restartBackoffMs: { min: number; max: number }
  logger: Logger
  /** Time of the deadlines and polls. Default the system clock. */
  clock?: Clock
  /** The restart backoff's jitter, [0, 1). Default Math.random. */
  random?: () => number
  /** HAProxy's standard output (its access log): a file descriptor. Default: a pipe read for its messages. */
  stdout?: number
  /**
   * Called right before the master is asked to reload (the running worker still answers): the
   * route metrics read its counters there, which the new worker starts again at zero. Awaited;
   * it must bound its own time and never reject.
   */
  beforeReload?: () => Promise<void>
  /**
   * Called once a reload succeeded, with the pids of the workers it replaced (still draining,
   * their listeners closed): the route metrics read what they counted during the reload. Awaited;
   * it must bound its own time and never reject.
   */
  afterReload?: (replaced: number[]) => Promise<void>
  /** Called when HAProxy died unexpectedly (before the restart is attempted). */
  onExit?: (code: number | null, signal: string | null) => void
}

export interface HaproxyProcess {
  /** The master's pid (stable across reloads: the master re-executes itself). */
  readonly pid: number | undefined
  /** Number of times the supervisor restarted HAProxy after it died. */
  readonly restarts: number
  /**
   * Saves server state (unless `stateSaved`: the caller did it with saveServerState() while it
   * prepared the configuration), asks the master to reload the configuration file and waits
   * until a new worker serves. Rejects (old worker keeps serving) when the new one did not come up.
   */
  reload(timeoutMs?: number, options?: { stateSaved?: boolean }): Promise<ProcInfo>
  /** Writes the running worker's server state (health, maintenance) where the next worker loads it. Never rejects. */
  saveServerState(): Promise<void>
  proc(): Promise<ProcInfo>
  /** Terminates master and every worker, old ones included. Idempotent. */
  stop(): Promise<void>
}

/** A HAProxy process of ours: its command line names our configuration file (guards against pid reuse). */
async function ours(pid: number, configPath: string): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
  return namesConfig(cmdline, configPath)
}

/** `-f <configPath>` among the arguments of a NUL-separated /proc/<pid>/cmdline. */
function namesConfig(cmdline: string, configPath: string): boolean {
  const args = cmdline.split('\0')
  return args.some((a, i) => a === configPath && args[i - 1] === '-f')
}

/** The parent's pid, from /proc/<pid>/stat (after the command name in parentheses). */
async function parentOf(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ppid = Number(fields[1])
  return Number.isInteger(ppid) && ppid > 0 ? ppid : undefined
}

/**
 * HAProxy processes (masters and workers) that run our configuration file but are not ours: an
 * agent killed with SIGKILL (or crashed) leaves its HAProxy serving, and SO_REUSEPORT lets a second
 * one bind the same ports, so both would answer, the old one with the old routes. Found by the pid
 * file HAProxy writes (`-p`: the master's pid in master-worker mode) and by a walk of /proc (a pid
 * file lost or overwritten by a start that failed). A pid is taken only when its command line names
 * this configuration file after `-f`: a process that reused the pid is never signalled.
 */
export async function findLeftovers(configPath: string, pidFile: string): Promise<number[]> {
  const found = new Set<number>()
  const recorded = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim())
  if (Number.isInteger(recorded) && recorded > 0 && (await ours(recorded, configPath))) found.add(recorded)
  const entries = await readdir('/proc').catch(() => [] as string[])
  for (const entry of entries) {
    if (!/^[0-9]+$/.test(entry)) continue
    const pid = Number(entry)
    if (pid === process.pid || found.has(pid)) continue
    if (await ours(pid, configPath)) found.add(pid)
  }
  return [...found].sort((a, b) => a - b)
}

/**
 * Ends the HAProxy a previous agent left on this configuration (see findLeftovers) before ours
 * starts: never two masters on one port. Its masters get SIGUSR1 (soft stop: the listeners are
 * released at once, requests in flight finish) for up to `graceMs`, then SIGTERM (workers
 * hard-stopped), then SIGKILL for whatever remains. Adopting it instead is not possible for a new
 * agent: HAProxy's output (the ALERT lines a refused reload is explained with) went to the dead
 * agent's pipe, and its exit could not be waited for. Resolves with the pids ended.
 */
export async function endLeftovers(configPath: string, pidFile: string, logger: Logger, graceMs = 2_000): Promise<number[]> {
  const pids = await findLeftovers(configPath, pidFile)
  if (pids.length === 0) return []
  const set = new Set(pids)
  const masters: number[] = []
  for (const pid of pids) if (!set.has((await parentOf(pid)) ?? 0)) masters.push(pid)
  logger.warn({ masters, pids }, `ending the HAProxy a previous agent left running on this state directory (master ${masters.join(', ')}), before starting ours`)
  const signal = async (which: NodeJS.Signals, targets: number[]): Promise<void> => {
    for (const pid of targets) {
      // Checked again right before each signal: the pid may have ended and been reused since.
      if (!alive(pid) || !(await ours(pid, configPath))) continue
      try {
        process.kill(pid, which)
      } catch {
        /* gone meanwhile */
      }
    }
  }
  const gone = async (ms: number): Promise<boolean> => {
    const deadline = systemClock.now() + ms
    for (;;) {
      const left: number[] = []
      for (const pid of pids) if (alive(pid) && (await ours(pid, configPath))) left.push(pid)
      if (left.length === 0) return true
      if (systemClock.now() > deadline) return false
      await systemClock.sleep(20)
    }
  }
  await signal('SIGUSR1', masters)
  if (!(await gone(graceMs))) {
    await signal('SIGTERM', masters)
    if (!(await gone(3_000))) {
      logger.warn({ pids }, 'killing the HAProxy processes left behind (SIGKILL)')
      await signal('SIGKILL', pids)
      await gone(3_000)
    }
  }
  return pids
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Starts HAProxy and resolves once a worker serves; rejects with HAProxy's own words when it cannot start. */
export async function startHaproxy(options: ProcessOptions): Promise<HaproxyProcess> {
  const { logger } = options
  // Absolute, so that the command line names this configuration whatever the working directory
  // (what findLeftovers and stop() recognise our processes by).
  const configPath = absolutePath(options.configPath)
  let child: ChildProcess | undefined
  let stopping = false
  let restarts = 0
  /** Restarts in a row that did not stay up: the backoff's attempt number. */
  let failedRestarts = 0
  const clock = options.clock ?? systemClock
  const random = options.random ?? Math.random
  let restartTimer: NodeJS.Timeout | undefined
  let knownPids = new Set<number>()
  let stopped: Promise<void> | undefined
  /** HAProxy's ALERT lines, newest last (bounded): what a failed reload is explained with. */
  const alerts: string[] = []
  let alertCount = 0

  async function launch(): Promise<void> {
    // Never two masters on one port: a HAProxy left by an agent that was killed goes first.
    await endLeftovers(configPath, options.pidFile, logger)
    const args = ['-W', '-S', `${options.masterSocket},mode,600`, '-f', configPath, '-p', options.pidFile]
    logger.info({ bin: options.bin, args }, 'starting HAProxy')
    const proc = spawn(options.bin, args, { stdio: ['ignore', options.stdout ?? 'pipe', 'pipe'] })
    child = proc
    let output = ''
    const collect = (chunk: Buffer): void => {
      const text = chunk.toString('utf8')
      if (output.length < 64 * 1024) output += text
      for (const line of text.split('\n')) {
        if (line.trim() === '') continue
        // The master reports its workers ending after our own stop() as an ALERT: expected then.
        if (stopping && /Current worker \(?\d+\)? exited with code/.test(line)) logger.info({ haproxy: line }, 'haproxy')
        else if (/\[(ALERT|EMERG)\]/.test(line)) {
          logger.error({ haproxy: line }, 'haproxy')
          alerts.push(line.replace(/^\[(?:ALERT|EMERG)\]\s*\(\d+\)\s*:\s*/, '').trim())
          alertCount++
          if (alerts.length > 50) alerts.shift()
        }
        else if (/\[WARNING\]/.test(line)) logger.warn({ haproxy: line }, 'haproxy')
        else logger.debug({ haproxy: line }, 'haproxy')
      }
    }
    proc.stdout?.on('data', collect)
    proc.stderr?.on('data', collect)
    const spawnError = once(proc, 'spawn').then(
      () => undefined,
      (err: NodeJS.ErrnoException) => err,
    )
    const early = (await spawnError) ?? undefined
    if (early !== undefined) {
      child = undefined
      if (early.code === 'ENOENT') throw new HaproxyNotInstalledError(`'${options.bin}' was not found`, INSTALL_HINT)
      throw new HaproxyStartError(early.message)
    }
    let exited = false
    proc.on('exit', (code, signal) => {
      exited = true
      if (child === proc) child = undefined
      if (stopping) return
      logger.error({ code, signal }, 'HAProxy exited unexpectedly')
      options.onExit?.(code, signal)
      scheduleRestart()
    })

    // Up = the master CLI answers and lists a current worker. Bounded: 15 s.
    const deadline = clock.now() + 15_000
    for (;;) {
      if (exited) throw new HaproxyStartError(output.trim() || 'haproxy exited during start')
      const info = await showProc(options.masterSocket).catch(() => undefined)
      if (info !== undefined && info.workers.length > 0) {
        remember(info)
        logger.info({ pid: info.master.pid, worker: info.workers[0]?.pid }, 'HAProxy started')
        return
      }
      if (clock.now() > deadline) {
        proc.kill('SIGKILL')
        throw new HaproxyStartError(`no worker after 15 s: ${output.trim()}`)
      }
      await clock.sleep(25)
    }
  }

  function remember(info: ProcInfo): void {
    knownPids = new Set([info.master.pid, ...info.workers.map((w) => w.pid), ...info.oldWorkers.map((w) => w.pid), ...knownPids])
  }

  function scheduleRestart(): void {
    if (stopping || restartTimer !== undefined) return
    failedRestarts++
    const delay = backoffDelay(failedRestarts, { baseMs: options.restartBackoffMs.min, maxMs: options.restartBackoffMs.max }, random)
    logger.warn({ delayMs: delay }, 'restarting HAProxy')
    restartTimer = setTimeout(() => {
      restartTimer = undefined
      if (stopping) return
      restarts++
      launch().then(
        () => {
          // Stay up a while before forgetting past failures.
          const reset = setTimeout(() => {
            if (child !== undefined) failedRestarts = 0
          }, 30_000)
          reset.unref()
        },
        (err: unknown) => {
          logger.error({ err }, 'HAProxy restart failed')
          scheduleRestart()
        },
      )
    }, delay)
    restartTimer.unref()
  }

  await launch()

  async function saveServerState(): Promise<void> {
    try {
      const state = await showServersState(options.adminSocket)
      const tmp = `${options.serverStateFile}.tmp`
      await writeFile(tmp, state, { mode: 0o600 }) // owner only, as every file of the state directory
      await rename(tmp, options.serverStateFile)
    } catch (err) {
      // Without it the new worker starts from DNS again (up to a second): worth a warning, not a failed reload.
      logger.warn({ err }, 'could not save HAProxy server state before reload')
    }
  }

  /**
   * `show proc` on the master CLI. The master re-executes itself on every reload, and again
   * into wait mode after a refused one: for that moment its socket refuses connections, so a
   * refusal is retried, for up to 10 s (a re-exec on a loaded node took more than 2 s).
   */
  async function masterProc(): Promise<ProcInfo> {
    const deadline = clock.now() + 10_000
    for (;;) {
      try {
        return await showProc(options.masterSocket)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if ((code !== 'ECONNREFUSED' && code !== 'ENOENT') || clock.now() > deadline || child === undefined) throw err
        await clock.sleep(50)
      }
    }
  }

  async function reload(timeoutMs = 30_000, reloadOptions: { stateSaved?: boolean } = {}): Promise<ProcInfo> {
    if (child === undefined) throw new HaproxyReloadError('HAProxy is not running')
    const before = await masterProc()
    remember(before)
    const oldWorkers = new Set(before.workers.map((w) => w.pid))
    const alertsBefore = alertCount
    /** HAProxy's own words about this reload (its ALERT lines since the request). */
    const said = (): string => {
      const fresh = Math.min(alertCount - alertsBefore, alerts.length)
      return alerts
        .slice(alerts.length - fresh)
        .filter((l) => !/^(?:Failed to load|Fatal errors|Error\(s\) found|Reexecuting Master|Current worker)/i.test(l))
        .join('; ')
    }
    if (reloadOptions.stateSaved !== true) await saveServerState()
    await options.beforeReload?.()
    await requestReload(options.masterSocket)
    const deadline = clock.now() + timeoutMs
    for (;;) {
      await clock.sleep(20)
      const after = await showProc(options.masterSocket).catch(() => undefined)
      if (after !== undefined) {
        remember(after)
        if (after.master.failedReloads > before.master.failedReloads) {
          // The ALERT lines reach our pipe a moment after `show proc` counts the failure.
          const wait = clock.now() + 500
          while (said() === '' && clock.now() < wait) await clock.sleep(20)
          const words = said()
          throw new HaproxyReloadError(`${words === '' ? 'the master refused the new configuration' : words} (the previous worker keeps serving)`)
        }
        const fresh = after.workers.filter((w) => !oldWorkers.has(w.pid))
        if (after.master.reloads > before.master.reloads && fresh.length > 0) {
          logger.info({ worker: fresh[0]?.pid, reloads: after.master.reloads, draining: after.oldWorkers.length }, 'HAProxy reloaded')
          await options.afterReload?.([...oldWorkers])
          return after
        }
      }
      if (clock.now() > deadline) throw new HaproxyReloadError(`no new worker within ${timeoutMs} ms`)
    }
  }

  async function stop(): Promise<void> {
    stopped ??= (async () => {
      stopping = true
      if (restartTimer !== undefined) clearTimeout(restartTimer)
      const proc = child
      const info = await showProc(options.masterSocket).catch(() => undefined)
      if (info !== undefined) remember(info)
      if (proc !== undefined && proc.exitCode === null && proc.signalCode === null) {
        const exited = once(proc, 'exit')
        // SIGTERM to the master: it hard-stops every worker, old ones included, then exits.
        proc.kill('SIGTERM')
        const cancel = new AbortController()
        const timeout = sleep(5_000, 'timeout', { signal: cancel.signal }).catch(() => 'cancelled')
        const first = await Promise.race([exited, timeout])
        cancel.abort()
        if (first === 'timeout') {
          proc.kill('SIGKILL')
          await exited
        }
      }
      // Nothing may outlive the engine: kill any worker the master left behind.
      const leftovers: number[] = []
      for (const pid of knownPids) if (alive(pid) && (await ours(pid, configPath))) leftovers.push(pid)
      const deadline = clock.now() + 5_000
      while (leftovers.some(alive) && clock.now() < deadline) await clock.sleep(20)
      for (const pid of leftovers.filter(alive)) {
        logger.warn({ pid }, 'killing a HAProxy process left behind')
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          /* already gone */
        }
      }
      child = undefined
    })()
    return stopped
  }

  return {
    get pid() {
      return child?.pid
    },
    get restarts() {
      return restarts
    },
    reload,
    saveServerState,
    proc: masterProc,
    stop,
  }
}
