/**
 * `tether control` settings for Swarm discovery, read from the environment beside the control
 * plane's own (config.ts). A wrong value fails at start with a message naming the variable.
 *
 *   TETHER_DISCOVERY=on|off            Swarm label discovery (default off)
 *   DOCKER_HOST                        dockerd to ask (default /var/run/docker.sock)
 *   TETHER_DISCOVERY_INTERVAL_MS       full reconcile period (default 30000)
 *   TETHER_DISCOVERY_TASKS_MS          task inventory period (default 3000)
 *   TETHER_DISCOVERY_LEASE_MS          leader lease time to live (default 6000)
 *   TETHER_SLOTS                       deprecated and ignored (proxies hold every running task)
 */
import { Type } from 'typebox'
import { loadEnv } from '../../shared/env.ts'

export const DiscoveryEnvSchema = Type.Object({
  TETHER_DISCOVERY: Type.Union([Type.Literal('on'), Type.Literal('off')], { default: 'off', description: "Swarm label discovery: 'on' or 'off'." }),
  TETHER_DISCOVERY_INTERVAL_MS: Type.Integer({ default: 30_000, minimum: 1_000, maximum: 3_600_000, description: 'Full reconcile period.' }),
  TETHER_DISCOVERY_TASKS_MS: Type.Integer({ default: 3_000, minimum: 500, maximum: 600_000, description: 'Task inventory period.' }),
  TETHER_DISCOVERY_LEASE_MS: Type.Integer({ default: 6_000, minimum: 1_000, maximum: 600_000, description: 'Leader lease time to live.' }),
  TETHER_SLOTS: Type.Optional(Type.String({ description: 'Deprecated and ignored: proxies hold every running task, there are no slots.' })),
  DOCKER_HOST: Type.Optional(
    Type.String({ minLength: 1, description: "With discovery on, the Docker daemon to ask (unix:///path or tcp://host:port), read by the Docker client as the docker CLI does. Unset: /var/run/docker.sock (mount it into a manager's container)." }),
  ),
})

export interface DiscoveryConfig {
  enabled: boolean
  intervalMs: number
  taskIntervalMs: number
  leaseTtlMs: number
  /** Warnings about deprecated settings, logged at start. */
  deprecations: string[]
}

export function loadDiscoveryConfig(env: NodeJS.ProcessEnv = process.env): DiscoveryConfig {
  const e = loadEnv(DiscoveryEnvSchema, env)
  return {
    enabled: e.TETHER_DISCOVERY === 'on',
    intervalMs: e.TETHER_DISCOVERY_INTERVAL_MS,
    taskIntervalMs: e.TETHER_DISCOVERY_TASKS_MS,
    leaseTtlMs: e.TETHER_DISCOVERY_LEASE_MS,
    deprecations: e.TETHER_SLOTS === undefined ? [] : ['TETHER_SLOTS is deprecated and ignored: proxies hold every running task of a service, with no slot limit. Remove it.'],
  }
}
