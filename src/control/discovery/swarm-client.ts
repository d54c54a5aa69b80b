/**
 * The narrow view of Docker that Swarm discovery needs, in Tether's own types. One
 * implementation talks to dockerd (docker-swarm-client.ts, dockerode); the unit tests feed the
 * watcher through the same interface. Nothing outside this folder sees a dockerode type.
 */

export interface SwarmService {
  id: string
  /** Full service name, e.g. `mystack_web`; the proxy resolves `tasks.<name>`. */
  name: string
  /** The service's own labels (Spec.Labels), not its containers' labels. */
  labels: Readonly<Record<string, string>>
  mode: 'replicated' | 'global' | 'other'
  /** Desired replicas in replicated mode, otherwise null. */
  replicas: number | null
}

export interface SwarmTask {
  id: string
  serviceName: string
  /** Replicated services number their tasks; global ones do not (null). */
  slot: number | null
  nodeId: string
  /** Docker's task state, e.g. 'running'. */
  state: string
  /** Overlay addresses of the task, without prefix length (e.g. '10.0.1.7'); ingress excluded. */
  addresses: string[]
}

/** A service was created, updated or removed. Discovery re-lists on any of them; it never patches. */
export interface SwarmEvent {
  action: string
  serviceId: string
  serviceName: string | null
  /** Docker's event time in milliseconds. */
  time: number
}

export interface SwarmClient {
  listServices(): Promise<SwarmService[]>
  /** Tasks of `serviceName` that are running now (desired and actual state). */
  listTasks(serviceName: string): Promise<SwarmTask[]>
  /**
   * Docker's service event stream, from now on. Ends (or throws) when the connection drops;
   * the caller reconnects. Aborting `signal` closes the stream and ends the iteration.
   */
  events(signal: AbortSignal): AsyncIterable<SwarmEvent>
}
