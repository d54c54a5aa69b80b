/**
 * `tether control`: reads the configuration, builds the store and the app, listens on
 * HOST:PORT, and closes gracefully on SIGINT/SIGTERM (long polls answered 304, in-flight
 * requests finished, store closed).
 */
import { hostname } from 'node:os'
import closeWithGrace from 'close-with-grace'
import { createLogger } from '../shared/create-logger.ts'
import { startAcme, type Acme } from './acme.ts'
import { startDrainReaper } from './services/drain-reaper.ts'
import { buildApp } from './app.ts'
import { loadConfig, type ControlConfig } from './config.ts'
import { EnvError } from '../shared/env.ts'
import { createEphemeralSecretBox, createSecretBox } from './secret-box.ts'
import { createRouteStore } from './store/create-route-store.ts'
import { loadDiscoveryConfig, type DiscoveryConfig } from './discovery/discovery-config.ts'
import { createDockerSwarmClient, startSwarmDiscovery } from './discovery/index.ts'

export async function main(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  let config: ControlConfig
  let discoveryConfig: DiscoveryConfig
  try {
    config = loadConfig(env)
    discoveryConfig = loadDiscoveryConfig(env)
  } catch (err) {
    if (err instanceof EnvError) {
      process.stderr.write(`tether control: bad configuration: ${err.message}\n`)
      process.exit(78)
    }
    throw err
  }
  const logger = createLogger({ level: config.logLevel, base: { role: 'control' } }, config.logFormat)
  for (const deprecation of [...config.deprecations, ...discoveryConfig.deprecations]) logger.warn(deprecation)
  // Redis when REDIS_URL is set, else the embedded in-memory store.
  const store = createRouteStore({ url: config.redisUrl, prefix: config.redisPrefix, logger, sentinels: config.redisSentinels, sentinelName: config.redisSentinelName, waitReplicas: config.redisWaitReplicas, waitTimeoutMs: config.redisWaitTimeoutMs })
  // Swarm label discovery (TETHER_DISCOVERY=on): labelled services → routes; see discovery/.
  const discoveryLogger = logger.child({ component: 'discovery' })
  const discovery = discoveryConfig.enabled
    ? startSwarmDiscovery({ store, client: createDockerSwarmClient({ logger: discoveryLogger }), logger: discoveryLogger, ...discoveryConfig })
    : undefined

  // The orderer needs the app's certificate service; the app's status shows the orderer.
  let orderer: Acme | undefined
  const secretBox = config.secretKey !== undefined ? createSecretBox(config.secretKey) : config.redisUrl === undefined ? createEphemeralSecretBox() : null
  const app = await buildApp({
    store,
    auth: { apiTokens: config.apiTokens, proxyToken: config.proxyToken },
    logger,
    proxyTtlMs: config.proxyTtlMs,
    longPollMaxSeconds: config.longPollMaxSeconds,
    discovery,
    statsUrl: config.statsUrl,
    // Keys are sealed with TETHER_SECRET_KEY_FILE; the embedded store (one process, gone on
    // restart) may use a random key; a shared store without a key stores no certificate.
    secretBox,
    acme: secretBox === null ? undefined : { directoryUrl: config.acme.directoryUrl, everyDomain: config.acme.everyDomain, isLeader: () => orderer?.isLeader() ?? false },
  })
  // ACME: every replica runs the orderer; the store lease lets one order at a time.
  const acme =
    secretBox === null
      ? undefined
      : startAcme({
          store,
          certificates: app.certificates,
          box: secretBox,
          directoryUrl: config.acme.directoryUrl,
          email: config.acme.email,
          everyDomain: config.acme.everyDomain,
          intervalMs: config.acme.intervalMs,
          requestTimeoutMs: config.acme.requestTimeoutMs,
          orderTimeoutMs: config.acme.orderTimeoutMs,
          onOrder: (result) => app.metrics.acmeOrders.inc({ result }),
          caPem: config.acme.caPem,
          holder: `${hostname()}-${process.pid}`,
          log: logger.child({ component: 'acme' }),
          waitForProxies: async (version) => void (await app.fleet.waitForConvergence(version, 60_000)),
        })
  orderer = acme
  // Drains (takeover=true&drain=S): every replica ends those that are over, once (a guarded write).
  const drains = startDrainReaper({ store, logger: logger.child({ component: 'drains' }) })

  closeWithGrace({ delay: 10_000, logger }, async ({ signal, err }) => {
    if (err !== undefined) logger.error({ err }, 'closing after an error')
    else logger.info({ signal }, 'closing')
    await discovery?.stop()
    await acme?.stop()
    await drains.stop()
    await app.close()
    await store.close()
  })

  await app.listen({ host: config.host, port: config.port })
  const shownHost = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host.includes(':') ? `[${config.host}]` : config.host
  const base = `http://${shownHost}:${config.port}`
  const lines = [
    '',
    `Tether control plane listening on ${config.host}:${config.port} (${config.redisUrl === undefined ? 'embedded in-memory store: routes are lost on restart; set REDIS_URL for Redis' : `Redis store, key prefix ${config.redisPrefix}`})`,
    `  Dashboard:   ${base}/ui/`,
    `  Swagger UI:  ${base}/docs`,
    `  OpenAPI:     ${base}/openapi.json`,
  ]
  if (config.generated.apiToken !== undefined) {
    lines.push(
      `  API token (generated; printed once; set TETHER_API_TOKENS to choose your own):`,
      `      ${config.generated.apiToken}`,
      `  try:  curl -X PUT -H "Authorization: Bearer ${config.generated.apiToken}" "${base}/v1/reconfigure?serviceName=go-demo&servicePath=/demo&port=8080&sticky=true"`,
    )
  }
  if (config.generated.proxyToken !== undefined) {
    lines.push(`  Proxy token (generated; printed once; set TETHER_PROXY_TOKEN for proxies):`, `      ${config.generated.proxyToken}`)
  }
  if (config.apiTokens === 'off') lines.push('  WARNING: authentication is off (TETHER_AUTH=off): anyone who can reach this port can change every route.')
  process.stdout.write(`${lines.join('\n')}\n\n`)
}
