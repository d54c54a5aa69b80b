/**
 * `tether control` settings for Swarm discovery, read from the environment beside the control
 * plane's own (config.ts). A wrong value fails at start with a message naming the variable.
 *
 *   TETHER_DISCOVERY=on|off            Swarm label discovery (default off)
 *   DOCKER_HOST                        dockerd to ask (default /var/run/docker.sock)
 *   TETHER_DISCOVERY_INTERVAL_MS       full reconcile period (default 30000)
 *   TETHER_DISCOVERY_TASKS_MS          task inventory period (default 3000)
 *   TETHER_DISCOVERY_LEASE_MS          leader lease time to live (default 6000)
 *   TETHER_SLOTS                       server slots per service on the proxies, as the proxies
 *                                      read it (default 32); more tasks than this are flagged
 */
import { ConfigError } from '../config.ts'

export interface DiscoveryConfig {
  enabled: boolean
  intervalMs: number
  taskIntervalMs: number
  leaseTtlMs: number
  proxySlots: number
}

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  const value = /^[0-9]+$/.test(raw.trim()) ? Number(raw.trim()) : Number.NaN
  if (!(value >= min && value <= max)) throw new ConfigError(`${name}: must be an integer from ${min} to ${max} (got ${JSON.stringify(raw)})`)
  return value
}

export function loadDiscoveryConfig(env: NodeJS.ProcessEnv = process.env): DiscoveryConfig {
  const flag = (env.TETHER_DISCOVERY ?? 'off').trim().toLowerCase()
  if (flag !== 'on' && flag !== 'off') throw new ConfigError(`TETHER_DISCOVERY: must be 'on' or 'off' (got ${JSON.stringify(env.TETHER_DISCOVERY)})`)
  return {
    enabled: flag === 'on',
    intervalMs: integer(env, 'TETHER_DISCOVERY_INTERVAL_MS', 30_000, 1_000, 3_600_000),
    taskIntervalMs: integer(env, 'TETHER_DISCOVERY_TASKS_MS', 3_000, 500, 600_000),
    leaseTtlMs: integer(env, 'TETHER_DISCOVERY_LEASE_MS', 6_000, 1_000, 600_000),
    proxySlots: integer(env, 'TETHER_SLOTS', 32, 1, 1024),
  }
}
