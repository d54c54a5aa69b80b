/**
 * An engine that forwards nothing and only records which versions it was asked to serve.
 * It is what lets the propagation benchmark run 100 agents in one process (the 100 agents
 * exercise the control plane, the long poll and the heartbeats exactly as real proxies do;
 * only HAProxy is left out), and what the agent's unit tests drive.
 */
import type { ConfigSnapshot } from '../contracts/config-snapshot.ts'
import type { RefusedRoute } from '../contracts/proxy-status.ts'
import type { ApplyResult, BackendHealth, Engine } from './engine.ts'

export interface RecordingEngineOptions {
  /**
   * Decides, per apply, what to refuse or whether to fail. Default: accept everything.
   * Throwing makes `apply` reject (nothing applied).
   */
  decide?: (snapshot: ConfigSnapshot) => RefusedRoute[] | Promise<RefusedRoute[]>
  /** Called after each successful apply, with the version now "served". */
  onApplied?: (snapshot: ConfigSnapshot) => void
}

export interface RecordingEngine extends Engine {
  /** Every version applied successfully, in order. */
  readonly applied: readonly number[]
  /** The snapshot currently "served", or null before the first apply. */
  readonly current: ConfigSnapshot | null
  readonly stopped: boolean
}

export function createRecordingEngine(options: RecordingEngineOptions = {}): RecordingEngine {
  const applied: number[] = []
  let current: ConfigSnapshot | null = null
  let stopped = false
  return {
    version: 'recording engine (no data plane)',
    get applied() {
      return applied
    },
    get current() {
      return current
    },
    get stopped() {
      return stopped
    },
    async apply(snapshot): Promise<ApplyResult> {
      if (stopped) throw new Error('engine stopped')
      const refused = (await options.decide?.(snapshot)) ?? []
      const refusedNames = new Set(refused.map((r) => r.serviceName))
      current = { version: snapshot.version, routes: snapshot.routes.filter((r) => !refusedNames.has(r.serviceName)) }
      applied.push(snapshot.version)
      options.onApplied?.(snapshot)
      return { refused }
    },
    async health(): Promise<BackendHealth[]> {
      return []
    },
    async stop() {
      stopped = true
    },
  }
}
