/**
 * The production Engine: HAProxy in master-worker mode, driven from a rendered configuration.
 *
 * apply(snapshot), compared route by route with what is served (route-diff.ts):
 * - only fixed endpoints changed: the servers of those services change over the runtime API,
 *   nothing is rendered (the cost does not grow with the table);
 * - the tasks of every service routed through DNS are resolved by the proxy itself
 *   (task-discovery.ts) before rendering, so a new route starts with its servers;
 * - when the new configuration differs from the served one only in servers and map entries
 *   (same skeleton), the runtime API changes them and nothing is reloaded;
 * - otherwise: render → write candidate → `haproxy -c` (isolating refused routes) → atomic
 *   replace → start or hitless reload (verified on the master CLI) → report. Once HAProxy runs,
 *   `haproxy -c` checks only the backends that are new or changed (config-text.ts), and the
 *   server state is saved while the configuration is rendered and checked.
 *
 * Between applies, a change in a service's tasks (DNS, checked every dnsIntervalMs) is applied
 * over the runtime API to that service's backends only: `add server` (+ `enable dynamic-cookie backend`, or the new server gets
 * no affinity cookie in HAProxy 2.6), `enable health`, `set server state ready`; a task that is
 * gone is put in maintenance at once and deleted (`del server`) once it holds no connection
 * (HAProxy 2.6 has no `wait srv-removable`: deletion is retried every second). The configuration
 * file is rewritten with the current servers (only those backends' lines replaced), so a reload
 * or a restart of HAProxy keeps them.
 * A runtime change HAProxy refuses falls back to a reload of the same state.
 */
import { chmod, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { availableParallelism } from 'node:os'
import { basename, join, resolve as absolutePath } from 'node:path'
import type { CertificateMaterial } from '../../contracts/certificate.ts'
import type { ConfigSnapshot } from '../../contracts/config-snapshot.ts'
import { describeShadowed, tcpBindings } from '../../contracts/route-planner.ts'
import type { DescriptorReport, RefusedRoute, RouteProblem } from '../../contracts/proxy-status.ts'
import type { Route } from '../../contracts/route.ts'
import { systemClock } from '../../shared/clock.ts'
import type { ApplyResult, BackendHealth, Engine } from '../engine.ts'
import { planDescriptors, parseNofileLimit, type DescriptorPlan } from './descriptors.ts'
import { HaproxyConfigError, HaproxyRuntimeError } from './errors.ts'
import { endLeftovers, haproxyVersion, startHaproxy, type HaproxyProcess } from './process.ts'
import { checkConfigOf, configTextOf, parseConfigText, withServers, type ConfigText } from './config-text.ts'
import { bindHost, render, spareKind, statePaths, type RenderedBackend, type RenderedConfig } from './render.ts'
import { compareRoutes, sameJson } from './route-diff.ts'
import { runCommands, showStat, sslCommand } from './runtime.ts'
import { readCaBundles } from './backend-tls.ts'
import { readCertificateFiles, type CertificateFileProblem, type FileCertificate } from './certificate-files.ts'
import type { ProxyListener, ProxyTlsReport } from '../../contracts/proxy-status.ts'
import { addressText, CHECK_OPTIONS, diffServers, endpointsOf, isIpAddress, serverLine, weightOf, type Endpoint } from './servers.ts'
import { resolveSettings, type HaproxyEngineSettings, type ResolvedSettings } from './settings.ts'
import { endOldWorkerSessions, endRemovedSessions, oldWorkersReport, removedRouteBackends, stopExcessOldWorkers } from './old-workers.ts'
import type { OldWorkersReport } from '../../contracts/proxy-status.ts'
import { createTaskResolver, createTaskWatcher, type TaskResolver } from './task-discovery.ts'
import { createCertificateKeeper, crtListPath, ensureDefaultCertificate, TLS_CERT_FILE } from './tls.ts'
import { checkConfigFile, type CheckResult, type CheckFinding } from './validate.ts'

export type { HaproxyEngineSettings } from './settings.ts'

/** Where an apply spent its time (logged with 'configuration applied'; start or reload in reloadMs). */
interface Timings {
  renderMs: number
  checkMs: number
  reloadMs: number
}

/** How many rounds of "drop the blamed routes and check again" before giving up. */
const MAX_ISOLATION_ROUNDS = 8
/** A server taken out is deleted once idle; after this long its sessions are cut so it can go. */
const REMOVE_GRACE_MS = 30_000
/** The hard nofile limit assumed when /proc/self/limits cannot be read. */
const DEFAULT_DESCRIPTOR_LIMIT = 1_048_576

export interface HaproxyEngine extends Engine {
  /** Files and sockets the engine uses (for tests and diagnostics). */
  readonly paths: ReturnType<typeof statePaths>
  /** The running HAProxy, once started. */
  readonly process: HaproxyProcess | undefined
  /**
   * How many configuration changes went through a reload, and how many through the runtime API
   * only; `certificateChanges`: certificates added, replaced or removed over the runtime API.
   */
  readonly counters: { reloads: number; runtimeChanges: number; certificateChanges: number }
  /** Backend name → service name of the route it serves, for what is served now (spares in use included). */
  backendServices(): ReadonlyMap<string, string>
  /** Previous workers still draining (count, age, connections); null before HAProxy starts. */
  oldWorkers(): Promise<OldWorkersReport | null>
}

/**
 * Which routes a `haproxy -c` error points at: by the line it names (in the configuration or
 * the map file), else by a backend name quoted in the message.
 */
export function blame(errors: readonly CheckFinding[], rendered: RenderedConfig, candidatePath: string): Map<string, string> {
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

/** Routes served through DNS discovery: those without fixed endpoints. */
function dnsServices(routes: readonly Route[]): string[] {
  return routes.filter((r) => r.endpoints.length === 0).map((r) => r.serviceName)
}

const routeKey = (r: Route): string => JSON.stringify(r)

interface Served {
  /** Version and the routes served (refused ones left out). */
  snapshot: ConfigSnapshot
  /** The same routes by serviceName. */
  routes: Map<string, Route>
  /** The last render; its backends' servers are kept current by runtime changes. */
  rendered: RenderedConfig
  /** Backends by serviceName (the same objects as rendered.backends). */
  backendsOf: Map<string, RenderedBackend[]>
  /** The configuration file's text as sections, server lines kept current. */
  text: ConfigText
  plan: DescriptorPlan
  /** Refused routes, with the exact route refused (a changed route is tried again). */
  refused: Array<RefusedRoute & { key: string }>
  /** The certificates rendered (a new set needs a render). */
  certificates: readonly CertificateMaterial[] | undefined
}

export interface CreateHaproxyEngineOptions {
  /** Where tasks come from. Default: DNS queries to settings.resolvers. */
  taskResolver?: TaskResolver
  /** Called right before each reload, while the running worker still answers (the route metrics read its counters). */
  beforeReload?: () => Promise<void>
  /** Called after each reload with the pids of the workers it replaced (the route metrics read their last counts). */
  afterReload?: (replaced: number[]) => Promise<void>
}

/**
 * Creates the engine. Resolves once the HAProxy binary is known to work (its version is read);
 * HAProxy itself starts on the first apply(). Rejects with an error saying how to install
 * HAProxy when the binary is missing or unusable, and with a TypeError naming a bad setting.
 */
/**
 * Writes a file of the state directory readable by its owner only (0600), also when it existed
 * with another mode: haproxy.cfg holds the dynamic-cookie key and basic-auth password hashes,
 * certificate files their keys; HAProxy runs as the agent's user and is the only other reader.
 */
async function writePrivate(path: string, text: string): Promise<void> {
  await writeFile(path, text, { mode: 0o600 })
  await chmod(path, 0o600)
}

export async function createHaproxyEngine(settings: HaproxyEngineSettings, options: CreateHaproxyEngineOptions = {}): Promise<HaproxyEngine> {
  const s: ResolvedSettings = resolveSettings(settings)
  const { logger } = s
  const paths = statePaths(s.stateDir)
  /** What `haproxy -c` reads when it checks only what changed. */
  const partialCandidate = `${paths.candidate}.partial`
  const version = await haproxyVersion(s.haproxyBin)
  await mkdir(paths.mapDir, { recursive: true })
  // A HAProxy left by an agent killed on this state directory goes before anything else: it still
  // holds the table's TCP ports (they would be probed as taken) and would answer beside ours.
  await endLeftovers(absolutePath(paths.config), paths.pidFile, logger)
  const descriptorLimit =
    s.descriptorLimit ?? (await readFile('/proc/self/limits', 'utf8').then(parseNofileLimit, () => undefined)) ?? DEFAULT_DESCRIPTOR_LIMIT

  // HTTPS: a default certificate from the first start on, and the certificates in force kept on disk.
  const keeper = s.tlsListen === undefined ? undefined : await createCertificateKeeper(paths.certificates)
  if (s.tlsListen !== undefined && (await ensureDefaultCertificate(paths.defaultCertificate))) logger.info({ path: paths.defaultCertificate }, 'generated the self-signed default certificate')

  let proc: HaproxyProcess | undefined
  let served: Served | undefined
  let queue: Promise<unknown> = Promise.resolve()
  let stopped = false
  const counters = { reloads: 0, runtimeChanges: 0, certificateChanges: 0 }
  /** Certificates from the proxy's own files (Docker secrets, TETHER_CERT_DIR), re-read on every apply and every certificateFilesIntervalMs. */
  let fileCertificates: FileCertificate[] = []
  let fileProblems: CertificateFileProblem[] = []
  let fileTimer: NodeJS.Timeout | undefined
  const readFiles = async (): Promise<boolean> => {
    if (s.tlsListen === undefined || (s.certificateFiles.secretsDir === undefined && s.certificateFiles.dir === undefined)) return false
    const read = await readCertificateFiles(s.certificateFiles)
    const key = (list: FileCertificate[], problems: CertificateFileProblem[]) => JSON.stringify([list.map((c) => [c.name, c.fingerprint, c.pem.length]), problems])
    const changed = key(read.certificates, read.problems) !== key(fileCertificates, fileProblems)
    if (changed) {
      for (const p of read.problems) if (!fileProblems.some((q) => q.file === p.file && q.error === p.error)) logger.warn({ file: p.file, problem: p.error }, `certificate file not served: ${p.error}`)
      for (const c of read.certificates) if (!fileCertificates.some((d) => d.name === c.name && d.fingerprint === c.fingerprint)) logger.info({ file: c.file, domains: c.domains, fingerprint: c.fingerprint, notAfter: c.notAfter }, 'certificate file loaded')
    }
    fileCertificates = read.certificates
    fileProblems = read.problems
    return changed
  }
  await readFiles()
  /** Servers HAProxy holds and serves with, per backend (what the runtime API was told). */
  let live = new Map<string, Map<string, Endpoint>>()
  /** Servers in maintenance waiting for deletion, per backend: name → since (ms). */
  let removing = new Map<string, Map<string, number>>()
  let reaper: NodeJS.Timeout | undefined
  /** Map files as HAProxy loaded them at the last reload, by kind: the names the runtime API knows them by. */
  let loadedMaps = new Map<string, string>()
  let lastProblem: string | null = null
  /** TCP ports found unbindable at the last apply (port → why). */
  let unbindable = new Map<number, string>()
  /** The configuration HAProxy accepted last (what a partial `haproxy -c` compares with); undefined = check everything. */
  let accepted: ConfigText | undefined

  const watcher = createTaskWatcher({
    resolver: options.taskResolver ?? createTaskResolver({ servers: s.resolvers }),
    intervalMs: s.dnsIntervalMs,
    clock: systemClock,
    onChange: (changed) => {
      for (const [serviceName, tasks] of changed) logger.debug({ serviceName, tasks: tasks.length }, 'tasks changed')
      return enqueue(() => resync('tasks changed', new Set(changed.keys()))).catch((error: unknown) => logger.error({ err: error }, 'could not apply a change of tasks'))
    },
    onError: (error) => logger.warn({ err: error }, 'task discovery round failed'),
  })

  /** Runs `job` after every job queued before it (applies, task changes and deletions never interleave). */
  function enqueue<T>(job: () => Promise<T>): Promise<T> {
    const run = queue.then(job)
    queue = run.catch(() => undefined)
    return run
  }

  async function writeFiles(rendered: RenderedConfig, target: string): Promise<void> {
    for (const file of rendered.files) {
      // Content-addressed names: an existing file already holds exactly this text.
      const tmp = `${file.path}.tmp`
      await writePrivate(tmp, file.text)
      await rename(tmp, file.path)
    }
    const tmp = `${target}.tmp`
    await writePrivate(tmp, rendered.config)
    await rename(tmp, target)
  }

  /** Renders `routes` with the current tasks, within the descriptor limit; `placement`: routes served from spare backends. */
  function renderWithin(snapshot: ConfigSnapshot, placement?: ReadonlyMap<string, string>): { rendered: RenderedConfig; plan: DescriptorPlan } {
    const tasks = (serviceName: string) => watcher.get(serviceName)
    const certificates = keeper?.current()
    const fromFiles = fileCertificates
    // CA bundles of verified TLS towards tasks (Docker secrets), read at every render like the other secrets.
    const caBundles = readCaBundles(s.certificateFiles.secretsDir, snapshot.routes)
    // Rendered with the plan served (the same, unless the number of servers moved across the
    // limit); rendered again only when the plan for this table differs.
    const guess = served?.plan
    /** A plan that held every server checks every server, whatever their number now. */
    const budgetOf = (p: DescriptorPlan | undefined): number => (p === undefined || p.problem === null ? Number.POSITIVE_INFINITY : p.checkBudget)
    const renderAs = (p: DescriptorPlan | undefined): RenderedConfig =>
      p === undefined
        ? render(snapshot, s, { tasks, certificates, fileCertificates: fromFiles, unbindable, caBundles, ...(placement === undefined ? {} : { placement }) })
        : render(snapshot, { ...s, maxconn: p.maxconn }, { tasks, certificates, fileCertificates: fromFiles, checkBudget: budgetOf(p), unbindable, caBundles, ...(placement === undefined ? {} : { placement }) })
    let rendered = renderAs(guess)
    const servers = rendered.backends.reduce((n, b) => n + b.servers.length, 0)
    const plan = planDescriptors({ maxconn: s.maxconn, maxconnFixed: s.maxconnFixed, servers, limit: descriptorLimit, threads: s.nbthread ?? availableParallelism() })
    const effective = (p: DescriptorPlan | undefined): number => Math.min(budgetOf(p), servers)
    if (plan.maxconn !== (guess?.maxconn ?? s.maxconn) || effective(plan) !== effective(guess)) rendered = renderAs(plan)
    return { rendered, plan }
  }

  /**
   * Renders and checks, dropping blamed routes until HAProxy accepts the rest (bounded). `first`
   * is the render of all of `snapshot`'s routes when the caller has it already (a table of 10,000
   * routes takes a few hundred milliseconds to render).
   */
  async function validated(snapshot: ConfigSnapshot, timings: Timings, first?: { rendered: RenderedConfig; plan: DescriptorPlan }): Promise<{ rendered: RenderedConfig; plan: DescriptorPlan; refused: Served['refused']; text?: ConfigText }> {
    const refused: Served['refused'] = []
    let routes = snapshot.routes
    let last: CheckResult | undefined
    for (let round = 0; round < MAX_ISOLATION_ROUNDS; round++) {
      let t = performance.now()
      const { rendered, plan } = round === 0 && first !== undefined ? first : renderWithin({ ...snapshot, routes })
      await writeFiles(rendered, paths.candidate)
      // What HAProxy accepted before need not be checked again: only new and changed backends.
      const text = accepted === undefined || proc === undefined ? undefined : parseConfigText(rendered.config)
      const partial = text === undefined || accepted === undefined ? undefined : checkConfigOf(text, rendered.owners, accepted)
      if (partial !== undefined) await writePrivate(partialCandidate, partial.config)
      timings.renderMs += performance.now() - t
      t = performance.now()
      const checked = partial === undefined ? paths.candidate : partialCandidate
      const result = await checkConfigFile(checked, s.haproxyBin)
      timings.checkMs += performance.now() - t
      if (result.ok) return { rendered, plan, refused, ...(text === undefined ? {} : { text }) }
      last = result
      const blamed = blame(result.errors, partial === undefined ? rendered : { ...rendered, config: partial.config, owners: partial.owners }, checked)
      if (blamed.size === 0) break
      for (const [serviceName, error] of blamed) {
        const route = routes.find((r) => r.serviceName === serviceName)
        refused.push({ serviceName, error, key: route === undefined ? '' : routeKey(route) })
      }
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

  function reportPlan(plan: DescriptorPlan): void {
    if (plan.problem !== lastProblem) {
      if (plan.problem !== null) logger.warn({ needed: plan.needed, limit: plan.limit, maxconn: plan.maxconn }, plan.problem)
      else if (lastProblem !== null) logger.info({ needed: plan.needed, limit: plan.limit }, 'file descriptors: the table fits the limit again')
      lastProblem = plan.problem
    }
  }

  /** The servers a rendered configuration holds, as `live` tracks them. */
  function liveOf(rendered: RenderedConfig): Map<string, Map<string, Endpoint>> {
    return new Map(rendered.backends.map((b) => [b.name, new Map(b.servers.map((e) => [e.name, e]))]))
  }

  /**
   * Whether `next` can be reached from what is served with the runtime API alone: the same
   * skeleton but for the names of the map files (so only servers and map entries differ), map
   * keys the runtime API can carry, and every server to add has an IP address (`add server` does
   * not resolve host names).
   */
  function runtimeReachable(next: RenderedConfig): boolean {
    const current = served?.rendered
    if (current === undefined || proc === undefined) return false
    if (mapAgnostic(next.skeleton) !== mapAgnostic(current.skeleton)) return false
    const nextMaps = mapsOf(next)
    const currentMaps = mapsOf(current)
    if (nextMaps.length !== currentMaps.length || nextMaps.some((f, i) => mapKind(f.path) !== mapKind(currentMaps[i]?.path ?? ''))) return false
    // Map keys and values travel in a `;`-separated command line.
    for (const f of nextMaps) if (f.text.includes(';')) return false
    // Certificates travel as payloads, which end at an empty line.
    for (const f of next.files) if (TLS_CERT_FILE.test(f.path) && f.text.includes('\n\n')) return false
    for (const b of next.backends) {
      const have = live.get(b.name)
      for (const e of b.servers) if (have?.get(e.name) === undefined && !isIpAddress(e.address)) return false
    }
    return true
  }

  /**
   * Brings HAProxy's maps to those of `next` over the runtime API (`del map`, `add map`, `set
   * map` on the map as HAProxy loaded it, by the path it had at the last reload); one log line
   * per path changed. Returns the number of entries changed.
   */
  async function syncMaps(next: RenderedConfig): Promise<number> {
    const current = served?.rendered
    if (current === undefined) return 0
    let changes = 0
    for (const file of mapsOf(next)) {
      const kind = mapKind(file.path)
      const before = mapsOf(current).find((f) => mapKind(f.path) === kind)
      const target = loadedMaps.get(kind)
      if (before === undefined || target === undefined || before.text === file.text) continue
      const was = mapEntries(before.text)
      const now = mapEntries(file.text)
      const commands: string[] = []
      for (const [key, value] of was) {
        if (!now.has(key)) commands.push(`del map ${target} ${key}`)
        else if (now.get(key) !== value) commands.push(`set map ${target} ${key} ${now.get(key)}`)
      }
      for (const [key, value] of now) if (!was.has(key)) commands.push(`add map ${target} ${key} ${value}`)
      await runCommands(paths.adminSocket, commands)
      if (kind === 'routes') {
        for (const [key, value] of was) if (!now.has(key)) logger.info({ path: key, backend: value }, `path ${key} removed`)
        for (const [key, value] of now) if (was.get(key) !== value) logger.info({ path: key, backend: value }, `path ${key} → ${value}`)
      }
      changes += commands.length
    }
    return changes
  }

  /**
   * The server changes that bring `b` (its servers in HAProxy: `live`, `removing`) to `servers`:
   * runtime commands, and the bookkeeping to do once HAProxy took them (commit). Servers named in
   * `unchecked` are added without a health check (descriptor budget).
   */
  function serverChange(b: RenderedBackend, servers: readonly Endpoint[], unchecked: ReadonlySet<string>) {
    const current = live.get(b.name) ?? new Map<string, Endpoint>()
    const out = removing.get(b.name) ?? new Map<string, number>()
    const diff = diffServers(current, new Set(out.keys()), servers)
    const commands: string[] = []
    for (const name of diff.restore) commands.push(`set server ${b.name}/${name} state ready`)
    for (const name of diff.remove) commands.push(`set server ${b.name}/${name} state maint`)
    for (const e of diff.add) commands.push(...addCommands(b, e, !unchecked.has(e.name)))
    // Releases: a new canary percentage (or a task more on one side) is new weights, nobody moves.
    for (const e of diff.reweight) commands.push(`set server ${b.name}/${e.name} weight ${weightOf(e)}`)
    const count = diff.add.length + diff.remove.length + diff.restore.length + diff.reweight.length
    const commit = (): void => {
      for (const name of diff.restore) {
        out.delete(name)
        logger.info({ backend: b.name, server: name }, `server ${b.name}/${name} back in service`)
      }
      for (const name of diff.remove) {
        out.set(name, Date.now())
        logger.info({ backend: b.name, server: name, address: addressText(current.get(name)!) }, `server ${b.name}/${name} removed`)
      }
      for (const e of diff.add) {
        current.set(e.name, e)
        logger.info({ backend: b.name, server: e.name, address: addressText(e) }, `server ${b.name}/${e.name} added`)
      }
      for (const e of diff.reweight) {
        current.set(e.name, e)
        logger.info({ backend: b.name, server: e.name, weight: weightOf(e) }, `server ${b.name}/${e.name} weight ${weightOf(e)}`)
      }
      live.set(b.name, current)
      if (out.size > 0) removing.set(b.name, out)
      else removing.delete(b.name)
    }
    return { commands, count, adds: diff.add, commit }
  }

  /** Same servers (names, addresses, ports) in the same order? */
  function sameServers(a: readonly Endpoint[], b: ReadonlyMap<string, Endpoint> | undefined): boolean {
    if (b === undefined || a.length !== b.size) return false
    for (const e of a) {
      const have = b.get(e.name)
      if (have === undefined || have.address !== e.address || have.port !== e.port || weightOf(have) !== weightOf(e)) return false
    }
    return true
  }

  /** Brings HAProxy's servers to those of `next` over the runtime API (one connection); one log line per server changed. */
  async function syncServers(next: RenderedConfig): Promise<number> {
    const changes = []
    for (const b of next.backends) {
      // Most backends are untouched by a change: skip them without building a diff.
      if (!removing.has(b.name) && sameServers(b.servers, live.get(b.name))) continue
      const change = serverChange(b, b.servers, new Set(b.unchecked))
      if (change.count > 0) changes.push(change)
    }
    // A spare backend whose route is gone keeps its section until the next reload: its servers go.
    const taken = new Set(next.placement.values())
    for (const name of [...next.spares.sticky, ...next.spares.plain]) {
      if (taken.has(name) || (live.get(name)?.size ?? 0) === 0) continue
      const freed: RenderedBackend = { name, serviceName: '', port: 0, dns: false, sticky: false, servers: [], unchecked: [] }
      const change = serverChange(freed, [], new Set())
      if (change.count > 0) changes.push(change)
    }
    await runCommands(paths.adminSocket, changes.flatMap((c) => c.commands))
    for (const c of changes) c.commit()
    if (removing.size > 0) startReaper()
    return changes.reduce((n, c) => n + c.count, 0)
  }

  /**
   * Brings HAProxy's certificates to those of `next` over the runtime API, without a reload
   * (HAProxy 2.6): a new one `new ssl cert` + `set ssl cert` + `commit ssl cert` + `add ssl
   * crt-list`; a replaced one `set` + `commit` (connections keep their session; new handshakes
   * get the new certificate); a removed one `del ssl crt-list` + `del ssl cert`. A refusal
   * aborts the open transaction and throws: the caller reloads instead. Returns the number of
   * certificates changed.
   */
  async function syncTls(next: RenderedConfig): Promise<number> {
    const current = served?.rendered
    if (current === undefined || s.tlsListen === undefined) return 0
    const was = certificateFilesOf(current)
    const now = certificateFilesOf(next)
    const list = crtListPath(paths.mapDir)
    let changes = 0
    for (const [path, text] of now) {
      const before = was.get(path)
      if (before === text) continue
      try {
        if (before === undefined) await sslCommand(paths.adminSocket, `new ssl cert ${path}`, /New empty certificate store/)
        await sslCommand(paths.adminSocket, `set ssl cert ${path}`, /Transaction created/, text)
        await sslCommand(paths.adminSocket, `commit ssl cert ${path}`, /Success!/)
        if (before === undefined) await sslCommand(paths.adminSocket, `add ssl crt-list ${list} ${path}`, /Success!/)
      } catch (error) {
        await sslCommand(paths.adminSocket, `abort ssl cert ${path}`, /aborted|No ongoing/).catch(() => undefined)
        throw error
      }
      logger.info({ file: basename(path) }, before === undefined ? 'certificate added without a reload' : 'certificate replaced without a reload')
      changes++
    }
    for (const path of was.keys()) {
      if (now.has(path)) continue
      await sslCommand(paths.adminSocket, `del ssl crt-list ${list} ${path}`, /deleted/)
      await sslCommand(paths.adminSocket, `del ssl cert ${path}`, /deleted/)
      logger.info({ file: basename(path) }, 'certificate removed without a reload')
      changes++
    }
    counters.certificateChanges += changes
    return changes
  }

  function addCommands(b: RenderedBackend, e: Endpoint, check: boolean): string[] {
    const commands = [`add server ${b.name}/${e.name} ${addressText(e)}${e.weight === undefined ? '' : ` weight ${e.weight}`}${check ? ` ${b.checkOptions ?? CHECK_OPTIONS}` : ''}${b.serverOptions === undefined ? '' : ` ${b.serverOptions}`}`]
    // HAProxy 2.6 gives a server added at runtime no dynamic cookie until this is run again.
    if (b.sticky) commands.push(`enable dynamic-cookie backend ${b.name}`)
    if (check) commands.push(`enable health ${b.name}/${e.name}`)
    commands.push(`set server ${b.name}/${e.name} state ready`)
    // A checked server leaves maintenance up (HAProxy counts it up until a check fails): with an
    // HTTP health check it goes down at once instead (after 'ready', which would undo it), so a
    // task gets its first request only after its check passes.
    if (check && b.startDown === true) commands.push(`set server ${b.name}/${e.name} health down`)
    return commands
  }

  /**
   * Gives the backends of `services` the servers they should have now (their fixed endpoints,
   * or the tasks DNS gave last) over the runtime API, and writes only their server lines back
   * into the configuration file: no render of the table. Returns the number of servers changed,
   * or null when that is not possible without a reload (the descriptor plan changes its maxconn,
   * a new endpoint is a host name, HAProxy refused a command): the caller takes the full path.
   */
  async function patchServers(services: Iterable<string>): Promise<number | null> {
    const current = served
    if (current === undefined || proc === undefined) return null
    const wanted: Array<[RenderedBackend, Endpoint[]]> = []
    let total = 0
    let checked = 0
    for (const b of current.rendered.backends) {
      total += b.servers.length
      checked += b.servers.length - b.unchecked.length
    }
    const names = [...services]
    // A backend shared by a release holds weighted servers of two services: a render computes them.
    if (current.rendered.backends.some((b) => b.shares !== undefined && (names.includes(b.serviceName) || b.shares.some((x) => names.includes(x.serviceName))))) return null
    for (const name of names) {
      const route = current.routes.get(name)
      if (route === undefined) continue
      for (const b of current.backendsOf.get(name) ?? []) {
        b.dns = route.endpoints.length === 0
        const servers = endpointsOf(route, b.port, b.dns ? watcher.get(name) : undefined)
        total += servers.length - b.servers.length
        checked -= b.servers.length - b.unchecked.length
        wanted.push([b, servers])
      }
    }
    const plan = planDescriptors({ maxconn: s.maxconn, maxconnFixed: s.maxconnFixed, servers: total, limit: descriptorLimit, threads: s.nbthread ?? availableParallelism() })
    if (plan.maxconn !== current.plan.maxconn) return null
    const budget = plan.problem === null ? Number.POSITIVE_INFINITY : plan.checkBudget
    const changes = []
    const uncheckedOf = new Map<string, Set<string>>()
    for (const [b, servers] of wanted) {
      // Servers kept keep their check (or lack of one); new ones get one while the plan allows.
      const was = new Set(b.unchecked)
      const known = live.get(b.name)
      const unchecked = new Set<string>()
      for (const e of servers) {
        const kept = known?.get(e.name) !== undefined
        if (kept ? was.has(e.name) : checked >= budget) unchecked.add(e.name)
        else checked++
      }
      uncheckedOf.set(b.name, unchecked)
      const change = serverChange(b, servers, unchecked)
      if (change.adds.some((e) => !isIpAddress(e.address))) return null
      if (change.count > 0) changes.push(change)
    }
    try {
      await runCommands(paths.adminSocket, changes.flatMap((c) => c.commands))
    } catch (error) {
      logger.warn({ err: error }, 'HAProxy refused a runtime change: reloading instead')
      return null
    }
    for (const c of changes) c.commit()
    for (const [b, servers] of wanted) {
      const unchecked = uncheckedOf.get(b.name) ?? new Set<string>()
      b.servers = servers
      b.unchecked = servers.filter((e) => unchecked.has(e.name)).map((e) => e.name)
      withServers(current.text, b.name, servers.map((e) => serverLine(e, !unchecked.has(e.name), b.serverOptions, b.checkOptions)))
    }
    current.plan = plan
    reportPlan(plan)
    if (removing.size > 0) startReaper()
    const count = changes.reduce((n, c) => n + c.count, 0)
    if (count > 0) {
      scheduleConfigWrite()
      counters.runtimeChanges++
    }
    return count
  }

  let writeQueued = false
  /**
   * Writes the configuration file after a runtime change, as the next job: the change is served
   * before the 2-3 MB of a 10,000-route file are joined and written, and a burst of changes
   * writes it once. Every later job (a reload too) runs after it.
   */
  function scheduleConfigWrite(): void {
    if (writeQueued) return
    writeQueued = true
    void enqueue(async () => {
      writeQueued = false
      if (served !== undefined) await writeConfig(served)
    }).catch((error: unknown) => logger.warn({ err: error }, 'could not write the configuration file'))
  }

  /** Writes the served configuration (with its current servers) as the configuration file, atomically. */
  async function writeConfig(current: Served): Promise<void> {
    const tmp = `${paths.config}.tmp`
    await writePrivate(tmp, configTextOf(current.text))
    await rename(tmp, paths.config)
  }

  /**
   * Old workers (replaced by reloads, still draining) may hold connections to a server taken out:
   * they end when its grace ends, as the current worker's do (`shutdown sessions server` above).
   */
  function endInOldWorkersLater(backend: string, server: string, since: number): void {
    const timer = setTimeout(() => {
      const running = proc
      if (running === undefined || stopped) return
      void running
        .proc()
        .then((info) => endOldWorkerSessions(paths.masterSocket, info, (b, srv) => b === backend && srv === server, logger))
        .catch(() => undefined)
    }, Math.max(0, REMOVE_GRACE_MS - (Date.now() - since)))
    timer.unref()
  }

  /** Deletes servers taken out once HAProxy lets it (no connection left); bounded by REMOVE_GRACE_MS. */
  async function reap(): Promise<void> {
    if (proc === undefined) return
    const touched = new Set<string>()
    for (const [backend, out] of removing) {
      for (const [name, since] of out) {
        const commands = Date.now() - since > REMOVE_GRACE_MS ? [`shutdown sessions server ${backend}/${name}`, `del server ${backend}/${name}`] : [`del server ${backend}/${name}`]
        try {
          await runCommands(paths.adminSocket, commands)
          out.delete(name)
          endInOldWorkersLater(backend, name, since)
          live.get(backend)?.delete(name)
          touched.add(backend)
        } catch (error) {
          logger.debug({ backend, server: name, err: error instanceof Error ? error.message : String(error) }, 'server not deletable yet')
        }
      }
      if (out.size === 0) removing.delete(backend)
    }
    // A name freed by a deletion may be wanted again (an address moved): bring those services in line.
    if (touched.size > 0) {
      const services = served?.rendered.backends.filter((b) => touched.has(b.name)).map((b) => b.serviceName) ?? []
      await resync('servers deleted', new Set(services))
    }
  }

  /** Certificate files may change without a new version (a directory, not a Docker secret): checked every certificateFilesIntervalMs. */
  function startFileWatch(): void {
    if (fileTimer !== undefined || s.tlsListen === undefined || (s.certificateFiles.secretsDir === undefined && s.certificateFiles.dir === undefined)) return
    fileTimer = setInterval(() => {
      void enqueue(async () => {
        if (stopped) return
        if (await readFiles()) await resync('certificate files changed')
      }).catch((error: unknown) => logger.warn({ err: error }, 'applying changed certificate files failed'))
    }, s.certificateFilesIntervalMs)
    fileTimer.unref()
  }

  function startReaper(): void {
    if (reaper !== undefined) return
    reaper = setInterval(() => {
      if (removing.size === 0 || stopped) {
        clearInterval(reaper)
        reaper = undefined
        return
      }
      void enqueue(reap).catch((error: unknown) => logger.warn({ err: error }, 'deleting servers failed'))
    }, 1000)
    reaper.unref()
  }

  /**
   * Brings the servers of `services` in line with their tasks over the runtime API; when that is
   * not possible, re-renders what is served with the current tasks and applies the difference
   * (runtime API, else reload).
   */
  async function resync(why: string, services?: ReadonlySet<string>): Promise<void> {
    if (served === undefined || proc === undefined || stopped) return
    if (services !== undefined && (await patchServers(services)) !== null) return
    const { rendered, plan } = renderWithin(served.snapshot, served.rendered.placement)
    if (runtimeReachable(rendered)) {
      try {
        const changes = (await syncTls(rendered)) + (await syncServers(rendered))
        served = servedOf(served.snapshot, rendered, plan, served.refused)
        await writeFiles(rendered, paths.config)
        await removeStaleFiles(rendered)
        if (changes > 0) counters.runtimeChanges++
        return
      } catch (error) {
        logger.warn({ err: error, why }, 'HAProxy refused a runtime change: reloading instead')
      }
    }
    await reloadTo({ ...served.snapshot }, served.refused, { rendered, plan })
  }

  /**
   * The placements of `current` (routes already in spares stay there) plus a free spare of the
   * right kind for each new route that can have one (render.ts spareKind; render drops a
   * placement that does not fit). Empty when the table has no spares.
   */
  function placeInSpares(current: RenderedConfig, added: readonly Route[]): Map<string, string> {
    const next = new Map(current.placement)
    if (current.spares.sticky.length + current.spares.plain.length === 0) return next
    const taken = new Set(next.values())
    for (const route of added) {
      const kind = spareKind(route)
      const free = kind === undefined ? undefined : current.spares[kind].find((name) => !taken.has(name))
      if (free === undefined) continue
      taken.add(free)
      next.set(route.serviceName, free)
    }
    return next
  }

  /** What is served after a render of `snapshot`'s routes (the refused ones left out by the caller). */
  function servedOf(snapshot: ConfigSnapshot, rendered: RenderedConfig, plan: DescriptorPlan, refused: Served['refused'], text?: ConfigText): Served {
    const backendsOf = new Map<string, RenderedBackend[]>()
    for (const b of rendered.backends) {
      const list = backendsOf.get(b.serviceName) ?? []
      list.push(b)
      backendsOf.set(b.serviceName, list)
    }
    return {
      snapshot,
      routes: new Map(snapshot.routes.map((r) => [r.serviceName, r])),
      rendered,
      backendsOf,
      text: text ?? parseConfigText(rendered.config),
      plan,
      refused,
      certificates: keeper?.current(),
    }
  }

  /**
   * Writes, checks and reloads to `snapshot` (or starts HAProxy). `prepared`: a render of the
   * routes served, checked already; `unchecked`: a render of all of `snapshot`'s routes, to check.
   */
  async function reloadTo(snapshot: ConfigSnapshot, carried: Served['refused'], prepared?: { rendered: RenderedConfig; plan: DescriptorPlan }, unchecked?: { rendered: RenderedConfig; plan: DescriptorPlan; renderMs: number }): Promise<Served> {
    const timings: Timings = { renderMs: unchecked?.renderMs ?? 0, checkMs: 0, reloadMs: 0 }
    // The server state is saved while the configuration is rendered and checked (each takes
    // about a second at 10,000 routes); a health change in between is seen by the next check.
    const running = proc
    const stateSaved = running?.saveServerState()
    let result: { rendered: RenderedConfig; plan: DescriptorPlan; refused: Served['refused']; text?: ConfigText }
    try {
      if (prepared !== undefined) {
        // Same routes as served, only servers changed: checked already when those routes were.
        await writeFiles(prepared.rendered, paths.candidate)
        result = { ...prepared, refused: carried }
      } else result = await validated(snapshot, timings, unchecked)
    } finally {
      await stateSaved
    }
    const { rendered, plan, refused } = result
    reportPlan(plan)
    const previousText = served === undefined ? undefined : configTextOf(served.text)
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
          ...(s.accessLogOutput === undefined ? {} : { stdout: s.accessLogOutput }),
          ...(options.beforeReload === undefined ? {} : { beforeReload: options.beforeReload }),
          ...(options.afterReload === undefined ? {} : { afterReload: options.afterReload }),
        })
      } else {
        const after = await proc.reload(undefined, { stateSaved: proc === running })
        // Old workers draining long-lived connections are bounded (TETHER_MAX_OLD_WORKERS): the oldest go.
        stopExcessOldWorkers(after, s.maxOldWorkers, logger)
        // Connections to a route this reload removed end now, not at the drain timeout.
        const removed = served === undefined ? [] : removedRouteBackends(served.rendered.backends, rendered.backends)
        if (removed.length > 0) await endRemovedSessions(paths.masterSocket, after, removed, logger)
      }
    } catch (err) {
      // Put the last good configuration back so a restart serves it, not the failed one; and
      // check everything next time (the partial check passed what the reload refused).
      if (previousText !== undefined) await writePrivate(paths.config, previousText)
      accepted = undefined
      throw err
    }
    counters.reloads++
    timings.reloadMs = performance.now() - t
    await startNewServersDown(served?.rendered.backends ?? [], rendered.backends)
    // A server taken out (maintenance) and wanted again by this configuration would come back in
    // maintenance from the saved server state (an aborted canary released again): ready it.
    const back = rendered.backends.flatMap((b) => b.servers.filter((e) => removing.get(b.name)?.has(e.name) === true).map((e) => `set server ${b.name}/${e.name} state ready`))
    if (back.length > 0) await runCommands(paths.adminSocket, back)
    const out = new Set(refused.map((r) => r.serviceName))
    const next = servedOf({ ...snapshot, routes: snapshot.routes.filter((r) => !out.has(r.serviceName)) }, rendered, plan, refused, result.text)
    served = next
    accepted = next.text
    live = liveOf(rendered)
    loadedMaps = new Map(mapsOf(rendered).map((f) => [mapKind(f.path), f.path]))
    removing = new Map()
    await removeStaleFiles(rendered)
    for (const s of rendered.shadowed) logger.warn(s, describeShadowed(s))
    const rounded = Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, Math.round(v)]))
    const servers = rendered.backends.reduce((n, b) => n + b.servers.length, 0)
    logger.info({ version: snapshot.version, routes: next.snapshot.routes.length, refused: refused.length, servers, ...rounded }, 'configuration applied')
    return next
  }

  /**
   * A server HAProxy loads from the configuration without a saved state counts as up until its
   * first check fails. Where the route has an HTTP health check, the servers this configuration
   * added are set down at once, so they get traffic only after their check passes (a new route
   * whose tasks do not answer yet says 503 with Retry-After instead of failing requests, and
   * wait=healthy waits for them). A failure is logged: the check corrects the state within one interval.
   */
  async function startNewServersDown(before: readonly RenderedBackend[], after: readonly RenderedBackend[]): Promise<void> {
    const had = new Map(before.map((b) => [b.name, new Set(b.servers.map((e) => e.name))]))
    // A proxy restarted with the server state of its previous run: the servers HAProxy loaded up from
    // it stay up (their tasks passed before), or every health-checked route would answer 503 until its next checks.
    if (before.length === 0) for (const [backend, server] of await upInStateFile(paths.serverState)) (had.get(backend) ?? had.set(backend, new Set()).get(backend)!).add(server)
    const commands: string[] = []
    for (const b of after) {
      if (b.startDown !== true) continue
      const unchecked = new Set(b.unchecked)
      for (const e of b.servers) if (!unchecked.has(e.name) && had.get(b.name)?.has(e.name) !== true) commands.push(`set server ${b.name}/${e.name} health down`)
    }
    if (commands.length === 0) return
    try {
      await runCommands(paths.adminSocket, commands)
    } catch (err) {
      logger.warn({ err, servers: commands.length }, 'could not set the new servers of health-checked routes down; their first check decides')
    }
  }

  /**
   * TCP listen ports of the table that HAProxy does not hold yet are tried first (bound and closed
   * at once): a port another process holds (or a privileged one) is left out of the configuration
   * and reported, instead of making HAProxy refuse the whole reload. True when the set changed.
   */
  async function probePorts(snapshot: ConfigSnapshot): Promise<boolean> {
    const held = new Set(served?.rendered.tcpPorts ?? [])
    const next = new Map<number, string>()
    const host = bindHost(s.listen)
    // The listen ports of the table (not the planner's whole plan: at 10,000 routes that would
    // cost every apply, endpoint changes included, a planning of the table).
    const ports = new Set<number>()
    for (const route of snapshot.routes) for (const b of route.tcp === undefined || route.tcp.length === 0 ? [] : tcpBindings(route)) ports.add(b.srcPort)
    for (const port of [...ports].sort((a, b) => a - b)) {
      if (held.has(port)) continue
      const problem = await tryBind(host === '*' ? undefined : host, port)
      if (problem !== null) next.set(port, problem)
    }
    const changed = JSON.stringify([...next]) !== JSON.stringify([...unbindable])
    unbindable = next
    return changed
  }

  async function applyNow(snapshot: ConfigSnapshot): Promise<ApplyResult> {
    if (stopped) throw new HaproxyRuntimeError('the engine is stopped')
    const certificateFilesChanged = await readFiles()
    // A port that became bindable (or not) changes the configuration like a changed file.
    const filesChanged = (await probePorts(snapshot)) || certificateFilesChanged
    /** The render of the whole table made to try the runtime API, reused by the reload. */
    let candidate: { rendered: RenderedConfig; plan: DescriptorPlan; renderMs: number } | undefined
    if (served !== undefined && proc !== undefined) {
      // Routes refused before, unchanged, stay out without another `haproxy -c`.
      const stillRefused = served.refused.filter((r) => snapshot.routes.some((route) => route.serviceName === r.serviceName && routeKey(route) === r.key))
      const skip = new Set(stillRefused.map((r) => r.serviceName))
      const routes = skip.size === 0 ? snapshot.routes : snapshot.routes.filter((r) => !skip.has(r.serviceName))
      const t = performance.now()
      const changes = compareRoutes(served.routes, routes)
      const sameRest = !filesChanged && sameSnapshotExtras(served.snapshot, snapshot) && served.certificates === keeper?.current()
      if (changes.endpointsOnly && sameRest) {
        // Only fixed endpoints (or nothing) changed: the servers of those services, nothing rendered.
        const before = served
        const previousRoutes = changes.changed.map((r) => before.routes.get(r.serviceName)!)
        for (const r of changes.changed) before.routes.set(r.serviceName, r)
        const flipped = changes.changed.filter((r, i) => (r.endpoints.length === 0) !== (previousRoutes[i]!.endpoints.length === 0))
        if (flipped.length > 0) {
          watcher.watch(dnsServices(routes))
          await watcher.prime(flipped.filter((r) => r.endpoints.length === 0).map((r) => r.serviceName))
        }
        const count = await patchServers(changes.changed.map((r) => r.serviceName))
        if (count !== null) {
          before.snapshot = { ...snapshot, routes }
          before.refused = stillRefused
          if (count > 0) logger.info({ version: snapshot.version, routes: routes.length, changes: count, runtimeMs: Math.round(performance.now() - t) }, 'configuration applied without a reload')
          return { refused: stillRefused.map(({ serviceName, error }) => ({ serviceName, error })), ...problemsOf(served.rendered) }
        }
        // Not possible without a reload: back to what was served, then the full path.
        previousRoutes.forEach((r) => before.routes.set(r.serviceName, r))
      }
      const services = dnsServices(snapshot.routes)
      watcher.watch(services)
      await watcher.prime(services)
      const renderStart = performance.now()
      // New routes a free spare backend can serve take one: served over the runtime API, no reload.
      // A removed route that had a backend of its own makes it a reload anyway (which gives every
      // route its own backend): then this render is the one reloaded, without placements.
      const current = served.rendered
      const placement = changes.removed.some((name) => !current.placement.has(name)) ? undefined : placeInSpares(current, changes.added)
      const { rendered, plan } = renderWithin({ ...snapshot, routes }, placement)
      const renderMs = performance.now() - renderStart
      // A reload gives every route its own backend again: a render with placements is not reused for it.
      if (skip.size === 0 && rendered.placement.size === 0) candidate = { rendered, plan, renderMs }
      if (runtimeReachable(rendered)) {
        try {
          const syncStart = performance.now()
          // Servers first, then the maps (a spare's cookie name before the paths): a path never
          // points at a backend without its servers.
          const count = (await syncTls(rendered)) + (await syncServers(rendered)) + (await syncMaps(rendered))
          const servedMs = performance.now() - t
          const syncMs = performance.now() - syncStart
          for (const [serviceName, spare] of rendered.placement) {
            if (served.rendered.placement.get(serviceName) !== spare) logger.info({ serviceName, backend: spare }, `route ${serviceName} served from spare backend ${spare} without a reload`)
          }
          served = servedOf({ ...snapshot, routes }, rendered, plan, stillRefused)
          await writeFiles(rendered, paths.config)
          // The files of the previous version are in HAProxy's memory (changed there over the
          // runtime API, named by the paths it loaded) and a restart reads these: without this, every
          // route placed in a spare or path changed left a copy of the whole table's maps until a reload.
          await removeStaleFiles(rendered)
          if (count > 0) counters.runtimeChanges++
          const ms = (x: number): number => Math.round(x)
          logger.info({ version: snapshot.version, routes: routes.length, changes: count, renderMs: ms(renderMs), syncMs: ms(syncMs), servedMs: ms(servedMs), runtimeMs: ms(performance.now() - t) }, 'configuration applied without a reload')
          return { refused: stillRefused.map(({ serviceName, error }) => ({ serviceName, error })), ...problemsOf(served.rendered) }
        } catch (error) {
          logger.warn({ err: error }, 'HAProxy refused a runtime change: reloading instead')
        }
      }
    } else {
      const services = dnsServices(snapshot.routes)
      watcher.watch(services)
      await watcher.prime(services)
    }
    const next = await reloadTo(snapshot, [], undefined, candidate)
    watcher.start()
    startFileWatch()
    return { refused: next.refused.map(({ serviceName, error }) => ({ serviceName, error })), ...problemsOf(next.rendered) }
  }

  async function health(): Promise<BackendHealth[]> {
    const current = served
    if (proc === undefined || current === undefined) return []
    let rows
    try {
      rows = await showStat(paths.adminSocket)
    } catch (err) {
      throw new HaproxyRuntimeError(err instanceof Error ? err.message : String(err))
    }
    const byBackend = new Map<string, typeof rows>()
    for (const r of rows) {
      if (r.svname === 'BACKEND' || r.svname === 'FRONTEND') continue
      const list = byBackend.get(r.pxname) ?? []
      list.push(r)
      byBackend.set(r.pxname, list)
    }
    return current.rendered.backends.map((b): BackendHealth => {
      const out = removing.get(b.name)
      const servers = (byBackend.get(b.name) ?? [])
        .filter((r) => out?.has(r.svname) !== true)
        .map((r) => ({ name: r.svname, status: serverStatus(r.status) }))
      const up = servers.filter((x) => x.status === 'up').length
      return { serviceName: b.serviceName, port: b.port, up, down: servers.length - up, servers }
    })
  }

  function descriptors(): DescriptorReport | null {
    const plan = served?.plan
    if (plan === undefined) return null
    const servers = served?.rendered.backends.reduce((n, b) => n + b.servers.length, 0) ?? 0
    return { needed: plan.needed, limit: plan.limit, maxconn: plan.maxconn, servers, checkedServers: Math.min(servers, plan.checkBudget), problem: plan.problem }
  }

  return {
    version,
    paths,
    counters,
    get process() {
      return proc
    },
    apply(snapshot) {
      return enqueue(() => applyNow(snapshot))
    },
    health,
    descriptors,
    backendServices() {
      return new Map((served?.rendered.backends ?? []).map((b) => [b.name, b.serviceName]))
    },
    async oldWorkers(): Promise<OldWorkersReport | null> {
      if (proc === undefined) return null
      return oldWorkersReport(paths.masterSocket, await proc.proc(), { maxCount: s.maxOldWorkers, drainTimeoutSeconds: Math.round(s.hardStopAfterMs / 1000) })
    },
    listeners(): ProxyListener[] {
      const port = (listen: string): number => Number(listen.slice(listen.lastIndexOf(':') + 1))
      return [
        { kind: 'http' as const, port: port(s.listen) },
        ...(s.tlsListen === undefined ? [] : [{ kind: 'https' as const, port: port(s.tlsListen) }]),
        { kind: 'admin' as const, port: port(s.adminListen) },
      ].filter((l) => Number.isInteger(l.port) && l.port > 0)
    },
    tlsReport(): ProxyTlsReport | null {
      if (keeper === undefined) return null
      const count = keeper.current().length + fileCertificates.length
      return {
        certificates: count,
        defaultOnly: count === 0,
        files: fileCertificates.map((c) => ({ name: c.name, file: c.file, domains: c.domains, notAfter: c.notAfter, fingerprint: c.fingerprint })),
        problems: fileProblems,
      }
    },
    ...(keeper === undefined
      ? {}
      : {
          certificates: {
            refs: () => keeper.refs(),
            // Served from the next apply on (the agent applies the snapshot that named them).
            set: (certificates: readonly CertificateMaterial[]) => enqueue(() => keeper.set(certificates)),
          },
        }),
    async stop() {
      stopped = true
      if (reaper !== undefined) clearInterval(reaper)
      if (fileTimer !== undefined) clearInterval(fileTimer)
      await watcher.stop()
      await queue
      await proc?.stop()
    },
  }
}

/** The map files of a configuration (the certificate files and the crt-list are not maps). */
function mapsOf(rendered: RenderedConfig): RenderedConfig['files'] {
  return rendered.files.filter((f) => f.path.endsWith('.map'))
}

/** Certificate file path → content (chain + key). */
function certificateFilesOf(rendered: RenderedConfig): Map<string, string> {
  return new Map(rendered.files.filter((f) => TLS_CERT_FILE.test(f.path)).map((f) => [f.path, f.text]))
}

/** Whether two snapshots agree on everything but their version and routes (certificates, ACME answers). */
function sameSnapshotExtras(a: ConfigSnapshot, b: ConfigSnapshot): boolean {
  return sameJson({ ...a, version: 0, routes: [] }, { ...b, version: 0, routes: [] })
}

/** The listener problems of a rendered configuration, as ApplyResult.problems (left out when none). */
function problemsOf(rendered: RenderedConfig | undefined): { problems?: RouteProblem[] } {
  return rendered === undefined || rendered.problems.length === 0 ? {} : { problems: rendered.problems }
}

/** null when `port` can be bound on `host` (then released at once), else why not (e.g. 'EADDRINUSE: address already in use'). */
function tryBind(host: string | undefined, port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', (err: NodeJS.ErrnoException) => resolve(`${err.code ?? 'error'}: ${err.code === 'EADDRINUSE' ? 'address already in use by another process' : err.code === 'EACCES' ? 'permission denied (a port below 1024 needs CAP_NET_BIND_SERVICE)' : err.message}`))
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(null)))
  })
}

/** `routes` for `.../maps/routes-<hash>.map`. */
function mapKind(path: string): string {
  return basename(path).replace(/-[0-9a-f]+\.map$/, '')
}

/** A skeleton with map file names reduced to their kind: maps differ only in entries, which the runtime API changes. */
function mapAgnostic(skeleton: string): string {
  return skeleton.replace(/\/maps\/([a-z]+)-[0-9a-f]+\.map/g, '/maps/$1.map')
}

/** `key value` lines → key → value. */
function mapEntries(text: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const line of text.split('\n')) {
    const space = line.indexOf(' ')
    if (space > 0) out.set(line.slice(0, space), line.slice(space + 1))
  }
  return out
}

/**
 * The servers (backend, server name) a `show servers state` file holds as running (srv_op_state 2);
 * none without a file. Its lines (format 1): be_id be_name srv_id srv_name srv_addr srv_op_state ...
 */
async function upInStateFile(file: string): Promise<Array<[string, string]>> {
  const text = await readFile(file, 'utf8').catch(() => '')
  const out: Array<[string, string]> = []
  for (const line of text.split('\n')) {
    const f = line.split(' ')
    if (line.startsWith('#') || f.length < 6 || f[5] !== '2' || f[1] === undefined || f[3] === undefined) continue
    out.push([f[1], f[3]])
  }
  return out
}

/** HAProxy's server status (`UP`, `UP 1/2`, `DOWN`, `NOLB`, `MAINT`, `no check`, ...) → up, down or maint. */
function serverStatus(status: string): 'up' | 'down' | 'maint' {
  if (status.startsWith('UP') || status === 'no check' || status.startsWith('DRAIN')) return 'up'
  if (status.startsWith('MAINT')) return 'maint'
  return 'down'
}
