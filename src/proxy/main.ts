/**
 * `tether proxy`: configuration → HAProxy engine → agent → signals. Owns the process: exit
 * codes, logging, graceful stop on SIGTERM/SIGINT (the agent stops polling, lets an apply in
 * progress finish and stops HAProxy).
 *
 * Readiness: HAProxy, and with it the admin listener's /healthz and /readyz, starts with the
 * first applied configuration (from the control plane or from the last known good on disk),
 * so "the admin listener answers" means "a configuration is served". The agent's only HTTP
 * server is the route metrics' on a unix socket of the state directory (route-metrics.ts), which
 * the admin listener forwards /metrics/tether to.
 *
 * Exit codes: 78 bad configuration (the message names the variable), 69 HAProxy missing or
 * unusable, 73 state directory unusable, 1 anything else.
 */
import { join } from 'node:path'
import closeWithGrace from 'close-with-grace'
import { createLogger } from '../shared/create-logger.ts'
import { createAgent } from './agent.ts'
import { loadProxyConfig, formatListen, type ProxyConfig } from './config.ts'
import { EnvError } from '../shared/env.ts'
import { createControlClient } from './control-client.ts'
import type { Engine } from './engine.ts'
import { createHaproxyEngine, type HaproxyEngine } from './haproxy/haproxy-engine.ts'
import { startRouteMetrics, type MetricsServer, type RouteMetrics } from './route-metrics.ts'
import { accessLogOutput } from './haproxy/access-log.ts'
import { startLogMetrics } from './log-metrics.ts'
import { createSecretUsers, withSecretUsers } from './secret-users.ts'
import { createStateStore, type StateStore } from './state-store.ts'

export const INSTALL_HAPROXY = 'Install HAProxy 2.6 or later: `apt-get install haproxy` (Debian/Ubuntu), `apk add haproxy` (Alpine), `brew install haproxy` (macOS); or point TETHER_HAPROXY_BIN at the binary.'

function fail(code: number, text: string): never {
  process.stderr.write(`tether proxy: ${text}\n`)
  process.exit(code)
}

export async function main(): Promise<void> {
  let config: ProxyConfig
  try {
    config = loadProxyConfig(process.env)
  } catch (error) {
    if (error instanceof EnvError) fail(78, `invalid configuration: ${error.message}`)
    throw error
  }
  const log = createLogger({ name: 'tether-proxy', level: config.logLevel }, config.logFormat).child({ proxyId: config.proxyId })

  let state: StateStore
  try {
    state = await createStateStore({ dir: config.stateDir, onInvalid: (reason) => log.warn(`ignoring the last known good snapshot: ${reason}`) })
  } catch (error) {
    fail(73, `cannot use the state directory TETHER_STATE_DIR=${config.stateDir}: ${(error as Error).message}`)
  }

  let engine: Engine
  let haproxy: HaproxyEngine
  // Per-route metrics on the admin listener's /metrics/tether; read right before every reload too.
  let routeMetrics: (RouteMetrics & MetricsServer) | undefined
  // Latency, upgrades and affinity from the JSON access log, which HAProxy also sends here (UDP on loopback).
  const logMetrics = config.accessLog.format === 'json' ? await startLogMetrics().catch((err: unknown) => void log.warn({ err: (err as Error).message }, 'latency and affinity metrics not counted')) : undefined
  try {
    engine = haproxy = await createHaproxyEngine({
      haproxyBin: config.haproxyBin,
      stateDir: join(config.stateDir, 'haproxy'),
      listen: formatListen(config.proxyListen),
      ...(config.tlsListen === null ? {} : { tlsListen: formatListen(config.tlsListen), certificateFiles: config.certificateFiles }),
      adminListen: formatListen(config.adminListen),
      resolvers: [`${config.dns.host}:${config.dns.port}`],
      dnsIntervalMs: config.dnsIntervalMs,
      spareBackends: config.spareBackends,
      hardStopAfterMs: config.drainTimeoutSeconds * 1000,
      maxOldWorkers: config.maxOldWorkers,
      clientMaxConnections: config.clientMaxConnections,
      clientMaxRequestRate: config.clientMaxRequestRate,
      maxBodySize: config.maxBodySize,
      trustedProxies: config.trustedProxies,
      proxyProtocol: config.proxyProtocol,
      ...(config.maxconn === undefined ? {} : { maxconn: config.maxconn }),
      cookieKey: config.cookieKey,
      // HAProxy writes the access log on this process's standard output itself (docker service logs).
      accessLog: { ...config.accessLog, proxyId: config.proxyId, node: config.node, ...(logMetrics === undefined ? {} : { metricsAddress: logMetrics.address }) },
      ...(config.accessLog.format === 'off' ? {} : { accessLogOutput: accessLogOutput() }),
      ...(config.statsAuth === undefined ? {} : { statsAuth: config.statsAuth }),
      logger: log.child({ component: 'haproxy' }),
    }, { beforeReload: async () => routeMetrics?.capture(), afterReload: async (replaced) => void routeMetrics?.captureReplaced(replaced) })
  } catch (error) {
    const text = (error as Error).message
    fail(69, `cannot start HAProxy (${config.haproxyBin}): ${text}${/install/i.test(text) ? ' (TETHER_HAPROXY_BIN names the binary)' : `\n${INSTALL_HAPROXY}`}`)
  }

  engine = withSecretUsers(engine, createSecretUsers({ dir: config.secretsDir }))
  const client = createControlClient({
    urls: config.controlUrls,
    token: config.proxyToken,
    livenessTimeoutMs: config.controlLivenessTimeoutMs,
    onFailover: (failures, now) => log.warn({ failures, control: now }, `control replica failed (${failures.join('; ')}): now using ${now}`),
  })
  // Health changes are reported within a second (what wait=healthy waits for), not at the next heartbeat.
  const agent = createAgent({ id: config.proxyId, node: config.node, engine, client, state, log, heartbeatMs: config.heartbeatMs, traffic: async () => (routeMetrics === undefined ? null : routeMetrics.traffic()), healthWatchMs: 1000 })
  routeMetrics = await startRouteMetrics(haproxy, () => agent.status(), logMetrics ?? undefined).catch((err: unknown) => {
    log.warn({ err: (err as Error).message }, 'route metrics not served (/metrics/tether answers 503)')
    return undefined
  })

  closeWithGrace({ delay: 15_000, logger: { error: (m: unknown) => log.error(m) } }, async ({ signal, err }) => {
    if (err !== undefined) log.error({ err }, 'stopping after an unexpected error')
    else log.info({ signal }, 'stopping')
    await agent.stop()
    await routeMetrics?.close()
    await logMetrics?.close()
  })

  for (const warning of config.deprecations) log.warn(warning)
  log.info({ control: config.controlUrls, listen: formatListen(config.proxyListen), admin: formatListen(config.adminListen), stats: config.statsAuth === undefined ? 'open (no TETHER_STATS_AUTH)' : 'password', haproxy: engine.version }, 'tether proxy starting')
  await agent.start()
}
