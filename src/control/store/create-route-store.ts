/**
 * Picks the route store: Redis when a URL is given (production, shared by every control-plane
 * replica), otherwise the in-memory store (the embedded default: nothing to install, lost on
 * restart, one replica only). Logging which one is used is the caller's job.
 */
import { createMemoryRouteStore } from './memory-route-store.ts'
import type { Logger } from '../../shared/logger.ts'
import { createRedisRouteStore } from './redis-route-store.ts'
import type { RouteStore } from './route-store.ts'

export interface RouteStoreOptions {
  /** REDIS_URL (redis:// or rediss://). Absent or empty: the in-memory store. */
  url?: string | undefined
  /** TETHER_REDIS_PREFIX: prefix of every Redis key and of the pub/sub channel. Default 'tether:'. */
  prefix?: string | undefined
  /** Change-log entries kept (rollback reaches back this far). Default DEFAULT_CHANGE_LOG_LIMIT. */
  changeLogLimit?: number | undefined
  /** Injected for tests. Default Date.now. */
  now?: (() => number) | undefined
  logger?: Logger | undefined
  /** REDIS_SENTINELS / REDIS_SENTINEL_NAME: follow the primary the sentinels name. */
  sentinels?: ReadonlyArray<{ host: string; port: number }> | undefined
  sentinelName?: string | undefined
  /** REDIS_WAIT_REPLICAS / REDIS_WAIT_TIMEOUT_MS: replicas a route write waits for (Redis only). */
  waitReplicas?: number | undefined
  waitTimeoutMs?: number | undefined
}

export function createRouteStore(options: RouteStoreOptions = {}): RouteStore {
  const { url, prefix, changeLogLimit, now, logger, sentinels, sentinelName, waitReplicas, waitTimeoutMs } = options
  if (url !== undefined && url !== '') {
    return createRedisRouteStore({
      url,
      sentinels,
      sentinelName,
      ...(prefix !== undefined ? { prefix } : {}),
      ...(changeLogLimit !== undefined ? { changeLogLimit } : {}),
      ...(now !== undefined ? { now } : {}),
      ...(logger !== undefined ? { logger } : {}),
      ...(waitReplicas !== undefined ? { waitReplicas } : {}),
      ...(waitTimeoutMs !== undefined ? { waitTimeoutMs } : {}),
    })
  }
  return createMemoryRouteStore({
    ...(changeLogLimit !== undefined ? { changeLogLimit } : {}),
    ...(now !== undefined ? { now } : {}),
  })
}

/** Which store `createRouteStore(options)` builds, for the caller's start-up log line. */
export function routeStoreKind(options: Pick<RouteStoreOptions, 'url'>): 'redis' | 'memory' {
  return options.url !== undefined && options.url !== '' ? 'redis' : 'memory'
}
