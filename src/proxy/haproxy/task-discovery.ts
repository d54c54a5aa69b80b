/**
 * The proxy's own endpoint discovery (as Traefik's providers and Envoy's EDS do): it asks
 * Docker's embedded DNS for `tasks.<service>` of every routed service on a short interval, and
 * names each task address with a PTR query (Docker answers `<service>.<slot>.<task id>...`).
 * HAProxy is then told about real changes only, over its runtime API, instead of resolving
 * fixed slots itself.
 *
 * Semantics of an answer:
 * - addresses → the tasks;
 * - NXDOMAIN / no data → no task (the service is scaled to 0 or not deployed yet);
 * - timeout, refusal, server failure → unknown: the last answer is kept, so a DNS hiccup never
 *   empties a backend (HAProxy's health checks still take dead tasks out of rotation).
 */
import { Resolver } from 'node:dns/promises'
import type { Clock } from '../../shared/clock.ts'
import type { Task } from './servers.ts'

export interface TaskResolver {
  /** Tasks of `tasks.<service>`, or null when DNS did not give an answer (keep the last one). */
  tasks(serviceName: string): Promise<Task[] | null>
}

const NAME_TTL_MS = 60_000
const NO_NAME_TTL_MS = 10_000
const MAX_NAMES = 200_000

/** `host:port` of the DNS servers (Docker's embedded DNS: 127.0.0.11:53). */
export function createTaskResolver(options: { servers: readonly string[]; timeoutMs?: number; now?: () => number }): TaskResolver {
  const resolver = new Resolver({ timeout: options.timeoutMs ?? 1000, tries: 1 })
  resolver.setServers([...options.servers])
  const now = options.now ?? Date.now
  /**
   * Names by address. A name is asked again after NAME_TTL_MS (an address freed by a task can be
   * given to a new one), "no name" after NO_NAME_TTL_MS (Docker may answer once the task is up).
   */
  const names = new Map<string, { name: string | undefined; until: number }>()

  async function nameOf(address: string): Promise<string | undefined> {
    const cached = names.get(address)
    if (cached !== undefined && cached.until > now()) return cached.name
    const answer = await resolver.reverse(address).then(
      (hosts) => hosts[0]?.replace(/\.$/, ''),
      () => undefined,
    )
    if (names.size >= MAX_NAMES) names.clear()
    names.set(address, { name: answer, until: now() + (answer === undefined ? NO_NAME_TTL_MS : NAME_TTL_MS) })
    return answer
  }

  return {
    async tasks(serviceName) {
      let addresses: string[]
      try {
        addresses = await resolver.resolve4(`tasks.${serviceName}`)
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code
        if (code === 'ENOTFOUND' || code === 'ENODATA') return []
        return null
      }
      addresses.sort()
      return Promise.all(
        addresses.map(async (address): Promise<Task> => {
          const name = await nameOf(address)
          return name === undefined ? { address } : { address, name }
        }),
      )
    },
  }
}

/** Same tasks (same addresses and names, in any order)? */
export function sameTasks(a: readonly Task[] | undefined, b: readonly Task[] | undefined): boolean {
  if (a === undefined || b === undefined) return a === b
  if (a.length !== b.length) return false
  const key = (t: Task): string => `${t.address} ${t.name ?? ''}`
  const left = a.map(key).sort()
  const right = b.map(key).sort()
  return left.every((k, i) => k === right[i])
}

export interface TaskWatcherOptions {
  resolver: TaskResolver
  /** Pause between two rounds over every service. Default 1000 ms. */
  intervalMs?: number
  /** DNS queries in flight at once. Default 64. */
  concurrency?: number
  clock: Clock
  /** Called after a round in which some service's tasks changed, with those services only. */
  onChange: (changed: ReadonlyMap<string, Task[]>) => Promise<void> | void
  onError?: (error: unknown) => void
}

export interface TaskWatcher {
  /** The services to watch (those routed through DNS). Takes effect in the next round. */
  watch(serviceNames: Iterable<string>): void
  /** Last known tasks of a service; undefined when never resolved. */
  get(serviceName: string): Task[] | undefined
  /** Resolves these services now (those never resolved), so a new route starts with its tasks. */
  prime(serviceNames: Iterable<string>): Promise<void>
  start(): void
  stop(): Promise<void>
}

/** Runs `fn` over `items`, at most `limit` at once. */
async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++] as T
      await fn(item)
    }
  })
  await Promise.all(workers)
}

export function createTaskWatcher(options: TaskWatcherOptions): TaskWatcher {
  const intervalMs = options.intervalMs ?? 1000
  const concurrency = options.concurrency ?? 64
  const known = new Map<string, Task[]>()
  let services: string[] = []
  const stopping = new AbortController()
  let loop: Promise<void> | null = null

  async function resolveAll(names: readonly string[]): Promise<Map<string, Task[]>> {
    const changed = new Map<string, Task[]>()
    await eachLimited(names, concurrency, async (name) => {
      const tasks = await options.resolver.tasks(name)
      if (tasks === null) return
      if (!sameTasks(known.get(name), tasks) || !known.has(name)) {
        known.set(name, tasks)
        changed.set(name, tasks)
      }
    })
    return changed
  }

  async function run(): Promise<void> {
    while (!stopping.signal.aborted) {
      try {
        const changed = await resolveAll(services)
        if (changed.size > 0 && !stopping.signal.aborted) await options.onChange(changed)
      } catch (error) {
        options.onError?.(error)
      }
      try {
        await options.clock.sleep(intervalMs, stopping.signal)
      } catch {
        return
      }
    }
  }

  return {
    watch(names) {
      services = [...new Set(names)].sort()
      const wanted = new Set(services)
      for (const name of known.keys()) if (!wanted.has(name)) known.delete(name)
    },
    get: (name) => known.get(name),
    async prime(names) {
      await resolveAll([...names].filter((n) => !known.has(n)))
    },
    start() {
      loop ??= run()
    },
    async stop() {
      stopping.abort()
      await loop
    },
  }
}
