/**
 * The one SwarmClient that talks to dockerd, through dockerode. dockerode's output is mapped
 * into Tether's types here and nowhere else. Every Docker call is logged (debug) before and
 * after, with ids as fields.
 *
 * Connection: DOCKER_HOST when set (unix:///path, tcp://host:port), otherwise
 * /var/run/docker.sock — dockerode's own defaults.
 */
import Docker from 'dockerode'
import type { Logger } from '../../shared/logger.ts'
import type { SwarmClient, SwarmEvent, SwarmService, SwarmTask } from './swarm-client.ts'

export interface DockerSwarmClientOptions {
  logger: Logger
  /** Default: a dockerode client built from DOCKER_HOST, else /var/run/docker.sock. */
  docker?: Docker
  /** Per-call timeout for list calls. Default 10 000 ms. */
  timeoutMs?: number
}

type Json = Record<string, unknown>
const obj = (v: unknown): Json => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {})
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : [])
const str = (v: unknown): string => (typeof v === 'string' ? v : '')

/** dockerode's Service → ours. Exported for the unit tests of the mapping. */
export function toSwarmService(raw: unknown): SwarmService {
  const service = obj(raw)
  const spec = obj(service.Spec)
  const mode = obj(spec.Mode)
  const labels: Record<string, string> = {}
  for (const [k, v] of Object.entries(obj(spec.Labels))) if (typeof v === 'string') labels[k] = v
  const replicated = 'Replicated' in mode
  const replicas = obj(mode.Replicated).Replicas
  return {
    id: str(service.ID),
    name: str(spec.Name),
    labels,
    mode: replicated ? 'replicated' : 'Global' in mode ? 'global' : 'other',
    replicas: replicated && typeof replicas === 'number' ? replicas : null,
  }
}

/** dockerode's Task → ours; `ingress` network addresses are left out. */
export function toSwarmTask(raw: unknown, serviceName: string): SwarmTask {
  const task = obj(raw)
  const addresses: string[] = []
  for (const attachment of arr(task.NetworksAttachments)) {
    const network = obj(obj(attachment).Network)
    if (obj(network.Spec).Ingress === true || obj(network.Spec).Name === 'ingress') continue
    for (const cidr of arr(obj(attachment).Addresses)) {
      const address = str(cidr).split('/')[0]
      if (address !== undefined && address !== '') addresses.push(address)
    }
  }
  return {
    id: str(task.ID),
    serviceName,
    slot: typeof task.Slot === 'number' ? task.Slot : null,
    nodeId: str(task.NodeID),
    state: str(obj(task.Status).State),
    addresses,
  }
}

async function withTimeout<T>(what: string, ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`docker: ${what} timed out after ${ms} ms`)), ms)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

export function createDockerSwarmClient(options: DockerSwarmClientOptions): SwarmClient {
  const docker = options.docker ?? new Docker()
  const { logger } = options
  const timeoutMs = options.timeoutMs ?? 10_000

  return {
    async listServices() {
      logger.debug({ call: 'listServices' }, 'docker: call')
      const raw = await withTimeout('listServices', timeoutMs, docker.listServices())
      const services = raw.map(toSwarmService)
      logger.debug({ call: 'listServices', count: services.length }, 'docker: done')
      return services
    },

    async listTasks(serviceName) {
      logger.debug({ call: 'listTasks', serviceName }, 'docker: call')
      let raw: unknown[]
      try {
        raw = await withTimeout('listTasks', timeoutMs, docker.listTasks({ filters: { service: [serviceName], 'desired-state': ['running'] } }))
      } catch (error) {
        // A routed name with no such service (an API route, or a service just removed): no tasks.
        if (obj(error).statusCode === 404) raw = []
        else throw error
      }
      const tasks = raw.map((t) => toSwarmTask(t, serviceName)).filter((t) => t.state === 'running')
      logger.debug({ call: 'listTasks', serviceName, running: tasks.length, taskIds: tasks.map((t) => t.id) }, 'docker: done')
      return tasks
    },

    async *events(signal) {
      logger.debug({ call: 'getEvents' }, 'docker: call')
      const stream = (await docker.getEvents({ filters: { type: ['service'] } })) as NodeJS.ReadableStream & { destroy?: () => void }
      logger.debug({ call: 'getEvents' }, 'docker: event stream open')
      const close = (): void => stream.destroy?.()
      signal.addEventListener('abort', close, { once: true })
      try {
        let buffered = ''
        for await (const chunk of stream as AsyncIterable<Buffer | string>) {
          buffered += chunk.toString()
          let newline: number
          while ((newline = buffered.indexOf('\n')) >= 0) {
            const line = buffered.slice(0, newline).trim()
            buffered = buffered.slice(newline + 1)
            if (line === '') continue
            let parsed: unknown
            try {
              parsed = JSON.parse(line)
            } catch {
              logger.warn({ line: line.slice(0, 200) }, 'docker: unreadable event skipped')
              continue
            }
            const event = obj(parsed)
            const actor = obj(event.Actor)
            const attributes = obj(actor.Attributes)
            const name = attributes.name
            const out: SwarmEvent = {
              action: str(event.Action),
              serviceId: str(actor.ID),
              serviceName: typeof name === 'string' ? name : null,
              time: typeof event.timeNano === 'number' ? Math.floor(event.timeNano / 1e6) : typeof event.time === 'number' ? event.time * 1000 : Date.now(),
            }
            yield out
          }
        }
      } catch (error) {
        if (!signal.aborted) throw error
      } finally {
        signal.removeEventListener('abort', close)
        close()
        logger.debug({ call: 'getEvents' }, 'docker: event stream closed')
      }
    },
  }
}
