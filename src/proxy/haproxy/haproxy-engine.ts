/**
 * The production Engine: HAProxy in master-worker mode, driven from a rendered configuration.
 * apply(): render → write candidate → `haproxy -c` (isolating refused routes) → atomic
 * replace → start or hitless reload (verified on the master CLI) → report.
 */
import { Resolver } from 'node:dns/promises'
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import type { ConfigSnapshot } from '../../contracts/config-snapshot.ts'
import { describeShadowed } from '../../contracts/route-planner.ts'
import type { RefusedRoute } from '../../contracts/proxy-status.ts'
import type { ApplyResult, BackendHealth, Engine } from '../engine.ts'
import { HaproxyConfigError, HaproxyRuntimeError } from './errors.ts'
import { haproxyVersion, startHaproxy, type HaproxyProcess } from './process.ts'
import { render, statePaths, type RenderedConfig } from './render.ts'
import { showStat } from './runtime.ts'
import { resolveSettings, type HaproxyEngineSettings, type ResolvedSettings } from './settings.ts'
import { checkConfigFile, type CheckResult, type ConfigError } from './validate.ts'

export type { HaproxyEngineSettings, EngineLogger } from './settings.ts'

/** Where an apply spent its time (logged with 'configuration applied'; start or reload in reloadMs). */
interface Timings {
  renderMs: number
  checkMs: number
  reloadMs: number
}

/** How many rounds of "drop the blamed routes and check again" before giving up. */
const MAX_ISOLATION_ROUNDS = 8

export interface HaproxyEngine extends Engine {
  /** Files and sockets the engine uses (for tests and diagnostics). */
  readonly paths: ReturnType<typeof statePaths>
  /** The running HAProxy, once started. */
  readonly process: HaproxyProcess | undefined
}

/**
 * Which routes a `haproxy -c` error points at: by the line it names (in the configuration or
 * the map file), else by a backend name quoted in the message.
 */
export function blame(errors: readonly ConfigError[], rendered: RenderedConfig, candidatePath: string): Map<string, string> {
  const blamed = new Map<string, string>()
  const add = (services: readonly string[] | undefined, message: string): boolean => {
    if (services === undefined || services.length === 0) return false
    for (const s of services) if (!blamed.has(s)) blamed.set(s, message)
    return true
  }
  for (const error of errors) {
    if (error.line !== null && error.file !== null) {
      if (error.file === candidatePath || basename(error.file) === basename(candidatePath)) {
        if (add(rendered.owners[error.line - 1], error.message)) continue
      }
      const file = rendered.files.find((f) => f.path === error.file)
      if (file !== undefined && add(file.owners[error.line - 1], error.message)) continue
    }
    const backend = rendered.backends.find((b) => error.message.includes(`'${b.name}'`) || error.message.includes(`${b.name}/`))
    if (backend !== undefined) add([backend.serviceName], error.message)
  }
  return blamed
}

/**
 * Creates the engine. Resolves once the HAProxy binary is known to work (its version is read);
 * HAProxy itself starts on the first apply(). Rejects with an error saying how to install
 * HAProxy when the binary is missing or unusable, and with a TypeError naming a bad setting.
 */
export async function createHaproxyEngine(settings: HaproxyEngineSettings): Promise<HaproxyEngine> {
  const s: ResolvedSettings = resolveSettings(settings)
  const { logger } = s
  const paths = statePaths(s.stateDir)
  const version = await haproxyVersion(s.haproxyBin)
  await mkdir(paths.mapDir, { recursive: true })

  let proc: HaproxyProcess | undefined
  let applied: RenderedConfig | undefined
  let appliedText: string | undefined
  let queue: Promise<unknown> = Promise.resolve()
  let stopped = false
  // Counts the tasks of a service whose slots are all taken, to tell "exactly full" from "more
  // tasks than slots" (HAProxy silently leaves the extra ones out). Same servers as HAProxy's.
  const taskCounter = new Resolver({ timeout: 1000, tries: 1 })
  taskCounter.setServers(s.resolvers)
  const overflowReported = new Set<string>()

  async function writeFiles(rendered: RenderedConfig): Promise<void> {
    for (const file of rendered.files) {
      // Content-addressed names: an existing file already holds exactly this text.
      const tmp = `${file.path}.tmp`
      await writeFile(tmp, file.text)
      await rename(tmp, file.path)
    }
    await writeFile(paths.candidate, rendered.config)
  }

  /** Renders and checks, dropping blamed routes until HAProxy accepts the rest (bounded). */
  async function validated(snapshot: ConfigSnapshot, timings: Timings): Promise<{ rendered: RenderedConfig; refused: RefusedRoute[] }> {
    const refused: RefusedRoute[] = []
    let routes = snapshot.routes
    let last: CheckResult | undefined
    for (let round = 0; round < MAX_ISOLATION_ROUNDS; round++) {
      let t = performance.now()
      const rendered = render({ version: snapshot.version, routes }, s)
      await writeFiles(rendered)
      timings.renderMs += performance.now() - t
      t = performance.now()
      const result = await checkConfigFile(paths.candidate, s.haproxyBin)
      timings.checkMs += performance.now() - t
      if (result.ok) return { rendered, refused }
      last = result
      const blamed = blame(result.errors, rendered, paths.candidate)
      if (blamed.size === 0) break
      for (const [serviceName, error] of blamed) refused.push({ serviceName, error })
      logger.warn({ version: snapshot.version, refused: [...blamed.keys()] }, 'HAProxy refused route(s); applying the others')
      routes = routes.filter((r) => !blamed.has(r.serviceName))
    }
    const detail = last?.errors.map((e) => e.message).join('; ') ?? 'too many refused routes'
    throw new HaproxyConfigError(detail)
  }

  async function removeStaleFiles(keep: RenderedConfig): Promise<void> {
    const wanted = new Set(keep.files.map((f) => basename(f.path)))
    for (const name of await readdir(paths.mapDir).catch(() => [] as string[])) {
      if (!wanted.has(name)) await rm(join(paths.mapDir, name), { force: true })
    }
  }

  async function applyNow(snapshot: ConfigSnapshot): Promise<ApplyResult> {
    if (stopped) throw new HaproxyRuntimeError('the engine is stopped')
    const timings: Timings = { renderMs: 0, checkMs: 0, reloadMs: 0 }
    const { rendered, refused } = await validated(snapshot, timings)
    const previousText = appliedText
    await rename(paths.candidate, paths.config)
    const t = performance.now()
    try {
      if (proc === undefined) {
        proc = await startHaproxy({
          bin: s.haproxyBin,
          configPath: paths.config,
          masterSocket: paths.masterSocket,
          adminSocket: paths.adminSocket,
          pidFile: paths.pidFile,
          serverStateFile: paths.serverState,
          restartBackoffMs: s.restartBackoffMs,
          logger,
        })
      } else {
        await proc.reload()
      }
    } catch (err) {
      // Put the last good configuration back so a restart serves it, not the failed one.
      if (previousText !== undefined) await writeFile(paths.config, previousText)
      throw err
    }
    timings.reloadMs = performance.now() - t
    applied = rendered
    appliedText = rendered.config
    await removeStaleFiles(rendered)
    for (const s of rendered.shadowed) logger.warn(s, describeShadowed(s))
    const rounded = Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, Math.round(v)]))
    logger.info({ version: snapshot.version, routes: snapshot.routes.length - refused.length, refused: refused.length, ...rounded }, 'configuration applied')
    return { refused }
  }

  async function health(): Promise<BackendHealth[]> {
    const current = applied
    if (proc === undefined || current === undefined) return []
    let rows
    try {
      rows = await showStat(paths.adminSocket)
    } catch (err) {
      throw new HaproxyRuntimeError(err instanceof Error ? err.message : String(err))
    }
    return Promise.all(
      current.backends.map(async (b): Promise<BackendHealth> => {
        const servers = rows.filter((r) => r.pxname === b.name && r.svname !== 'BACKEND' && r.svname !== 'FRONTEND')
        // Slots without an address (MAINT, resolution) are free slots, not failures.
        const up = servers.filter((r) => r.status.startsWith('UP') || r.status === 'no check').length
        const down = servers.filter((r) => r.status.startsWith('DOWN') || r.status.startsWith('NOLB')).length
        const health: BackendHealth = { serviceName: b.serviceName, up, down, slots: b.slots }
        // Only a full template can hide tasks; then ask DNS how many there are.
        if (b.dnsName !== undefined && up + down >= b.slots) {
          const tasks = await taskCounter.resolve4(b.dnsName).then((a) => a.length, () => undefined)
          if (tasks !== undefined && tasks > b.slots) {
            health.tasks = tasks
            if (!overflowReported.has(b.name)) {
              overflowReported.add(b.name)
              logger.warn({ serviceName: b.serviceName, tasks, slots: b.slots }, 'service has more tasks than proxy slots: the extra tasks get no traffic (raise TETHER_SLOTS)')
            }
          } else overflowReported.delete(b.name)
        }
        return health
      }),
    )
  }

  return {
    version,
    paths,
    get process() {
      return proc
    },
    apply(snapshot) {
      const run = queue.then(() => applyNow(snapshot))
      queue = run.catch(() => undefined)
      return run
    },
    health,
    async stop() {
      stopped = true
      await queue
      await proc?.stop()
    },
  }
}
