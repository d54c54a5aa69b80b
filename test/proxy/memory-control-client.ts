/**
 * For the agent's unit tests only: a ControlClient that answers from a route store in this
 * process, with the long-poll semantics of GET /v1/config (answer at once when the version
 * differs from `since`... or, with `answerBackwardsAtOnce: false`, only when it is newer —
 * the stricter server — and 304 with the current version's ETag at the deadline). The wait
 * runs on the injected clock. The real HTTP path is covered by the functional tests.
 */
import type { ProxyHeartbeat } from '../../src/contracts/proxy-status.ts'
import type { RouteStore } from '../../src/control/store/route-store.ts'
import type { Clock } from '../../src/proxy/clock.ts'
import { ControlUnavailableError, type ConfigPollResult, type ControlClient } from '../../src/proxy/control-client.ts'

export interface MemoryControlClient extends ControlClient {
  store: RouteStore
  /** While true, every call fails as if no control replica answered. */
  down: boolean
  readonly heartbeats: ProxyHeartbeat[]
  readonly polls: Array<number | null>
}

export function createMemoryControlClient(options: { store: RouteStore; clock: Clock; answerBackwardsAtOnce?: boolean }): MemoryControlClient {
  const heartbeats: ProxyHeartbeat[] = []
  const polls: Array<number | null> = []
  const atOnce = options.answerBackwardsAtOnce ?? true
  const client: MemoryControlClient = {
    store: options.store,
    down: false,
    heartbeats,
    polls,
    lastTarget: 'memory',
    async fetchConfig({ since, waitSeconds, signal }): Promise<ConfigPollResult> {
      polls.push(since)
      if (client.down) throw new ControlUnavailableError(['memory: down'])
      const store = client.store
      const answers = (v: number): boolean => since === null || v > since || (atOnce && v !== since)
      if (answers(await store.version())) return { changed: true, snapshot: await store.snapshot() }
      const waker = new AbortController()
      const unsubscribe = store.subscribe((v) => {
        if (answers(v)) waker.abort()
      })
      try {
        await options.clock.sleep(waitSeconds * 1000, signal === undefined ? waker.signal : AbortSignal.any([signal, waker.signal]))
      } catch (error) {
        if (signal?.aborted === true) throw error
      } finally {
        unsubscribe()
      }
      if (client.down) throw new ControlUnavailableError(['memory: down'])
      const version = await client.store.version()
      return answers(version) ? { changed: true, snapshot: await client.store.snapshot() } : { changed: false, version }
    },
    async heartbeat(_id, heartbeat) {
      if (client.down) throw new ControlUnavailableError(['memory: down'])
      heartbeats.push(structuredClone(heartbeat))
    },
    async close() {},
  }
  return client
}
