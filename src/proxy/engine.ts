/**
 * The forwarding engine the agent drives. HAProxy in production (haproxy/haproxy-engine.ts);
 * the propagation benchmark uses an engine that only records the version, to run 100 agents
 * on one machine.
 */
import type { CertificateMaterial, CertificateRef } from '../contracts/certificate.ts'
import type { ConfigSnapshot } from '../contracts/config-snapshot.ts'
import type { BackendHealthSchema, DescriptorReport, ProxyListener, ProxyTlsReport, RefusedRoute, RouteProblem } from '../contracts/proxy-status.ts'
import type { OldWorkersReport } from '../contracts/proxy-status.ts'
import type { Static } from 'typebox'

export type BackendHealth = Static<typeof BackendHealthSchema>

export interface ApplyResult {
  /** Routes left out because the engine refused the configuration with them in it. */
  refused: RefusedRoute[]
  /** Routes served with something missing (a secret the proxy does not have, ...). */
  problems?: RouteProblem[]
}

export interface Engine {
  /** e.g. "HAProxy 2.6.12". Known once started. */
  readonly version: string
  /**
   * Makes the engine serve `snapshot` (starting it on first call): render, validate, write,
   * reload hitlessly. Routes the engine refuses are isolated and reported in the result; the
   * rest is served. Rejects only when nothing of the snapshot could be applied, in which case
   * the previous configuration keeps serving. Calls are serialised by the caller.
   */
  apply(snapshot: ConfigSnapshot): Promise<ApplyResult>
  /** Servers up/down per backend, for heartbeats. */
  health(): Promise<BackendHealth[]>
  /** File descriptors needed and available for what is served; null before the first apply or when the engine has no limit. */
  descriptors?(): DescriptorReport | null
  /**
   * TLS certificates, when the engine terminates HTTPS: the ones in force (name, fingerprint)
   * and how to replace them (chains and keys); served from the next apply on.
   */
  certificates?: {
    refs(): CertificateRef[]
    set(certificates: readonly CertificateMaterial[]): Promise<void>
  }
  /** The HTTPS listener's certificates as served (heartbeats); null or absent without HTTPS. */
  tlsReport?(): ProxyTlsReport | null
  /** The ports of the engine's own listeners (HTTP, HTTPS, admin), which TCP routes cannot use. */
  listeners?(): ProxyListener[]
  /** HAProxy's previous workers still draining connections (heartbeats); null when none is known (not started). */
  oldWorkers?(): Promise<OldWorkersReport | null>
  /** Stops the engine and everything it started. Idempotent. */
  stop(): Promise<void>
}
