/**
 * For the agent's unit tests only: a ControlClient that answers from a route store in this
 * process, with the semantics of GET /v1/config (src/control/routes/v1/config.ts): without
 * `since`, the snapshot at once (or "unchanged" when If-None-Match names the current version);
 * with `since`, a long poll that answers only a *newer* version and ends "unchanged", without
 * saying the current version, at the deadline. `answerBackwardsAtOnce` makes it answer any
 * other version at once instead. The wait runs on the injected clock. The real HTTP path is
 * covered by the functional tests.
 */
import type { ProxyHeartbeat } from '../../src/contracts/proxy-status.ts'
import type { RouteStore } from '../../src/control/store/route-store.ts'
import type { Clock } from '../../src/shared/clock.ts'
import { ControlUnavailableError, type ConfigPollResult, type ControlClient } from '../../src/proxy/control-client.ts'

export interface MemoryControlClient extends ControlClient {
  store: RouteStore
  /** While true, every call fails as if no control replica answered. */
  down: boolean
  readonly heartbeats: ProxyHeartbeat[]
  /** Each request: 'full', 'check:V' or 'poll:V'. */
  readonly requests: string[]
}

export function createMemoryControlClient(options: { store: RouteStore; clock: Clock; answerBackwardsAtOnce?: boolean }): MemoryControlClient {
  const heartbeats: ProxyHeartbeat[] = []
  const requests: string[] = []
  const atOnce = options.answerBackwardsAtOnce ?? false
  const client: MemoryControlClient = {
    store: options.store,
    down: false,
    heartbeats,
    requests,
    lastTarget: 'memory',
    async fetchConfig({ since, waitSeconds, ifNoneMatch, signal }): Promise<ConfigPollResult> {
      requests.push(since !== null ? `poll:${since}` : ifNoneMatch !== undefined ? `check:${ifNoneMatch}` : 'full')
      if (client.down) throw new ControlUnavailableError(['memory: down'])
      const store = client.store
      if (since === null) {
        const version = await store.version()
        return ifNoneMatch === version ? { changed: false, version } : { changed: true, snapshot: await store.snapshot() }
      }
      const answers = (v: number): boolean => v > since || (atOnce && v !== since)
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
      return answers(version) ? { changed: true, snapshot: await client.store.snapshot() } : { changed: false, version: null }
    },
    async heartbeat(_id, heartbeat) {
      if (client.down) throw new ControlUnavailableError(['memory: down'])
      heartbeats.push(structuredClone(heartbeat))
    },
    async close() {},
  }
  return client
}
