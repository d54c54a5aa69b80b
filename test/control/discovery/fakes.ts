/**
 * Test doubles for the watcher's unit tests: a manual clock and a SwarmClient fed by the test.
 * The dockerode implementation itself is exercised against a real dockerd by test/swarm/.
 */
import { createFakeClock, type FakeClock } from '../../helpers/fake-clock.ts'
import type { SwarmClient, SwarmEvent, SwarmService, SwarmTask } from '../../../src/control/discovery/swarm-client.ts'

/** Lets every promise chain that is ready run to its next real wait. */
export async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i += 1) await new Promise<void>((resolve) => setImmediate(resolve))
}

/** Discovery's tests use the shared fake clock (test/helpers/fake-clock.ts). */
export type ManualClock = FakeClock
export const manualClock = (): FakeClock => createFakeClock()

/** A swarm the test edits by hand; `emit` sends a service event, `dropEvents` breaks the stream. */
export class FakeSwarm implements SwarmClient {
  services: SwarmService[] = []
  tasks = new Map<string, SwarmTask[]>()
  listServicesFailures = 0
  /** When > 0, that many next connections to the event stream fail at once. */
  eventConnectFailures = 0
  eventConnects = 0
  private listeners = new Set<(e: SwarmEvent | Error) => void>()

  async listServices(): Promise<SwarmService[]> {
    if (this.listServicesFailures > 0) {
      this.listServicesFailures -= 1
      throw new Error('connect ECONNREFUSED /var/run/docker.sock')
    }
    return this.services.map((s) => ({ ...s, labels: { ...s.labels } }))
  }

  async listTasks(serviceName: string): Promise<SwarmTask[]> {
    return (this.tasks.get(serviceName) ?? []).map((t) => ({ ...t }))
  }

  events(signal: AbortSignal): AsyncIterable<SwarmEvent> {
    this.eventConnects += 1
    if (this.eventConnectFailures > 0) {
      this.eventConnectFailures -= 1
      return {
        [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(new Error('connect ECONNREFUSED /var/run/docker.sock')) }),
      }
    }
    const queue: Array<SwarmEvent | Error> = []
    let wake: (() => void) | null = null
    const listener = (e: SwarmEvent | Error): void => {
      queue.push(e)
      wake?.()
    }
    this.listeners.add(listener)
    const listeners = this.listeners
    return (async function* () {
      try {
        while (!signal.aborted) {
          const item = queue.shift()
          if (item === undefined) {
            await new Promise<void>((resolve) => {
              wake = resolve
              signal.addEventListener('abort', () => resolve(), { once: true })
            })
            wake = null
            continue
          }
          if (item instanceof Error) throw item
          yield item
        }
      } finally {
        listeners.delete(listener)
      }
    })()
  }

  emit(action: string, serviceName: string): void {
    for (const l of this.listeners) l({ action, serviceId: `id-${serviceName}`, serviceName, time: Date.now() })
  }

  dropEvents(): void {
    for (const l of this.listeners) l(new Error('unexpected EOF'))
  }

  get connected(): number {
    return this.listeners.size
  }
}

export const labelled = (name: string, path: string, port = 8080, extra: Record<string, string> = {}): SwarmService => ({
  id: `id-${name}`,
  name,
  labels: { 'com.df.notify': 'true', 'com.df.servicePath': path, 'com.df.port': String(port), ...extra },
  mode: 'replicated',
  replicas: 1,
})

export const task = (serviceName: string, slot: number, address: string): SwarmTask => ({
  id: `${serviceName}-task-${slot}`,
  serviceName,
  slot,
  nodeId: 'node-1',
  state: 'running',
  addresses: [address],
})

/** Collects log lines so tests can show them on failure and check that problems are logged. */
export function memoryLogger(): { lines: Array<{ level: string; obj: object; msg?: string }>; debug: L; info: L; warn: L; error: L } {
  const lines: Array<{ level: string; obj: object; msg?: string }> = []
  const at = (level: string): L => (obj, msg) => {
    lines.push(msg === undefined ? { level, obj } : { level, obj, msg })
  }
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
}
type L = (obj: object, msg?: string) => void
