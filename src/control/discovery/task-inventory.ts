/**
 * Docker sends no task events, so the running tasks of every routed service are listed every
 * few seconds and kept here for the API: how many run, at which overlay addresses, and whether
 * there are more of them than the proxy has server slots for (tasks beyond the slots get no
 * traffic). Every control replica keeps its own inventory; it only reads from Docker.
 */
import type { DiscoveryProblem } from './swarm-labels.ts'
import type { SwarmClient } from './swarm-client.ts'

export interface InventoryTask {
  id: string
  slot: number | null
  nodeId: string
  addresses: string[]
}

export interface ServiceTasks {
  serviceName: string
  /** Running tasks at the last successful listing. */
  running: number
  tasks: InventoryTask[]
  /** Every task's overlay addresses, sorted. */
  addresses: string[]
  /** ISO time of the last successful listing. */
  checkedAt: string
  /** Set while the last listing failed; the counts are then those of the last success. */
  error?: string
}

export interface TaskInventory {
  /** `null` when the service is not routed or has not been listed yet. */
  tasksOf(serviceName: string): ServiceTasks | null
  all(): ServiceTasks[]
  problems(): DiscoveryProblem[]
}

export interface MutableTaskInventory extends TaskInventory {
  /** Lists the tasks of `serviceNames` (the routed services) and forgets every other service. */
  refresh(serviceNames: readonly string[]): Promise<void>
}

export function createTaskInventory(options: { client: SwarmClient; now: () => number }): MutableTaskInventory {
  const byService = new Map<string, ServiceTasks>()
  return {
    tasksOf: (serviceName) => byService.get(serviceName) ?? null,
    all: () => [...byService.values()].sort((a, b) => (a.serviceName < b.serviceName ? -1 : 1)),
    problems() {
      const problems: DiscoveryProblem[] = []
      for (const s of byService.values()) {
        if (s.error !== undefined) problems.push({ serviceName: s.serviceName, message: `listing its tasks failed: ${s.error}` })
      }
      return problems.sort((a, b) => (a.serviceName < b.serviceName ? -1 : 1))
    },
    async refresh(serviceNames) {
      const wanted = new Set(serviceNames)
      for (const name of byService.keys()) if (!wanted.has(name)) byService.delete(name)
      await Promise.all(
        [...wanted].map(async (serviceName) => {
          try {
            const tasks = (await options.client.listTasks(serviceName))
              .filter((t) => t.state === 'running')
              .map((t) => ({ id: t.id, slot: t.slot, nodeId: t.nodeId, addresses: [...t.addresses].sort() }))
              .sort((a, b) => (a.slot ?? 0) - (b.slot ?? 0) || (a.id < b.id ? -1 : 1))
            byService.set(serviceName, {
              serviceName,
              running: tasks.length,
              tasks,
              addresses: tasks.flatMap((t) => t.addresses).sort(),
              checkedAt: new Date(options.now()).toISOString(),
            })
          } catch (error) {
            const message = error instanceof Error ? error.message : String(error)
            const last = byService.get(serviceName)
            byService.set(serviceName, {
              ...(last ?? { serviceName, running: 0, tasks: [], addresses: [], checkedAt: new Date(options.now()).toISOString() }),
              error: message,
            })
          }
        }),
      )
    },
  }
}
