/**
 * The Redis store's two connections and how they fail. Commands fail fast when Redis is not
 * there (no offline queue, no resend of in-flight commands, a per-command timeout) with
 * StoreUnavailableError; the client reconnects by itself with a capped backoff. The subscriber
 * queues its SUBSCRIBE and resubscribes after a reconnect.
 *
 * Only a primary is written to. After every (re)connect, ROLE is asked before the first command
 * (a replica, even a writable one, or a primary demoted while we were away, is refused with
 * StoreUnavailableError). With Sentinel, a failover of our primary fences writes from the moment
 * any sentinel announces it (`+try-failover`, before it promotes a replica) until the command
 * connection is on the primary named by `+switch-master`: the old primary keeps accepting writes
 * until Sentinel demotes it (10 s and more), and everything it acknowledged after the replica was
 * promoted is dropped when it resyncs (issue 20). A write whose reply arrives after a fence began
 * is not acknowledged (see fenceEpoch).
 */
import { Redis, ReplyError as IoredisReplyError, type RedisOptions } from 'ioredis'
import type { Logger } from '../../shared/logger.ts'
import { backoffDelay } from '../../shared/clock.ts'
import { type ClientFacing, StoreUnavailableError } from '../errors.ts'

/** ioredis types ReplyError as `any`; it is redis-errors' ReplyError class (an Error). */
export const ReplyError = IoredisReplyError as new (...args: never[]) => Error

/** Reply errors that mean "Redis cannot serve right now", not "this request is wrong". */
const UNAVAILABLE_REPLIES = /^(LOADING|BUSY|MASTERDOWN|READONLY|TRYAGAIN|CLUSTERDOWN|NOREPLICAS|MISCONF)\b/

/** How often a sentinel watcher retries a sentinel it lost. */
const SENTINEL_RECONNECT_MS = 2000

/**
 * Sentinel events that mean "a failover of this primary has begun" (published by the sentinel
 * leading it, before it sends REPLICAOF NO ONE to the replica it promotes).
 */
const FAILOVER_BEGINS = ['+try-failover', '+elected-leader', '+failover-state-select-slave', '+selected-slave', '+failover-state-send-slaveof-noone', '+promoted-slave']
/** ... and that it ended without a new primary. */
const FAILOVER_ABORTED = ['-failover-abort-not-elected', '-failover-abort-no-good-slave', '-failover-abort-slave-timeout']
/**
 * A fence whose failover never announced its end is lifted after this long (Sentinel retries a
 * failover that failed; a failover that completes announces +switch-master within seconds).
 */
const FENCE_MAX_MS = 20_000

/** The primary's name in a Sentinel event: `<type> <name> <ip> <port> [@ <master> <ip> <port>]`, or `<master> ...` for +switch-master. */
function eventMaster(channel: string, message: string): string | undefined {
  const words = message.split(' ')
  if (channel === '+switch-master') return words[0]
  const at = words.indexOf('@')
  if (at >= 0) return words[at + 1]
  return words[0] === 'master' ? words[1] : undefined
}

const sameHost = (a: string | undefined, b: string): boolean => (a ?? '').replace(/^::ffff:/, '') === b.replace(/^::ffff:/, '')

/** ioredis' words for an attempt that ran out of time: the connect timeout, or a command's (the ready check's). */
const TIMED_OUT = /ETIMEDOUT|timed out/i

/**
 * An error's code as a client may read it: a system error's (ENOTFOUND, ECONNREFUSED,
 * ETIMEDOUT), the first word of a Redis error reply (NOAUTH, WRONGPASS, LOADING), else a fixed
 * phrase. Never the message itself: it is free text.
 */
export function causeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && /^[A-Z][A-Z0-9_]{1,31}$/.test(code)) return code
  const message = err instanceof Error ? err.message : String(err)
  const word = /^([A-Z][A-Z0-9_]{1,31})\b/.exec(message)?.[1]
  if (word !== undefined) return word
  return TIMED_OUT.test(message) ? 'timed out' : 'error'
}

export interface RedisConnectionOptions {
  url: string
  /** TCP connect timeout; also how long the first commands wait for the first connection. */
  connectTimeoutMs: number
  /** How long one command may take before it fails with StoreUnavailableError. */
  commandTimeoutMs: number
  /** Upper bound of the reconnect backoff. */
  maxReconnectDelayMs: number
  /**
   * Redis Sentinel: the sentinels to ask for the current primary of `sentinelName`. When given,
   * the URL's host and port are not used (its password and database are); after a failover
   * both connections reconnect to the new primary by themselves.
   */
  sentinels?: ReadonlyArray<{ host: string; port: number }> | undefined
  sentinelName?: string | undefined
  logger?: Logger | undefined
}

export interface RedisConnection {
  /** Commands: never queued while disconnected, never re-sent. */
  client: Redis
  /** Pub/sub only. */
  subscriber: Redis
  /** host:port, for messages. */
  where: string
  /** Waits for the first connection (bounded); then never waits: StoreUnavailableError when not connected. */
  ensureReady(): Promise<void>
  /** Runs Redis commands, turning connection failures into StoreUnavailableError. */
  run<T>(fn: () => Promise<T>): Promise<T>
  /** MULTI/EXEC: the replies of every command, read at one instant. */
  atomically(build: (m: ReturnType<Redis['multi']>) => void): Promise<unknown[]>
  /**
   * Throws StoreUnavailableError while a Sentinel failover of our primary is under way. Writes
   * call it before they are sent; with fenceEpoch() after, to learn whether a failover began
   * while they were in flight.
   */
  assertWritable(): void
  /** Counts the failovers that began: changed since a write was sent means its survival is unknown. */
  fenceEpoch(): number
  isClosed(): boolean
  close(): Promise<void>
}

export function openRedisConnection(options: RedisConnectionOptions): RedisConnection {
  const { logger } = options
  const connectTimeout = options.connectTimeoutMs
  const commandTimeout = options.commandTimeoutMs
  const maxReconnectDelay = options.maxReconnectDelayMs
  const connection: RedisOptions = {
    connectTimeout,
    // The shared backoff (exponential from 50 ms, capped, with jitter so that every replica does
    // not knock at once when Redis comes back): reconnects by itself for as long as it takes.
    retryStrategy: (attempt: number) => backoffDelay(attempt, { baseMs: 50, maxMs: maxReconnectDelay }, Math.random),
    lazyConnect: false,
    ...(options.sentinels !== undefined && options.sentinels.length > 0
      ? {
          sentinels: options.sentinels.map((x) => ({ host: x.host, port: x.port })),
          name: options.sentinelName ?? 'mymaster',
          // Sentinel's +switch-master is followed by the watchers below (ioredis' failoverDetector
          // reconnects on every +switch-master of any primary from each sentinel, three
          // reconnects a failover, and cannot fence writes before the promotion).
          // A primary demoted by a failover answers READONLY: reconnect, asking the sentinels again.
          reconnectOnError: (err: Error) => /^READONLY\b/.test(err.message),
        }
      : {}),
  }
  // Commands never wait for a connection that is not there, and a write in flight when the
  // connection drops is failed at once, never silently re-sent later.
  const client = new Redis(options.url, {
    ...connection,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout,
  })
  // The subscriber only sends SUBSCRIBE, which must survive reconnects: queue and resubscribe.
  const subscriber = new Redis(options.url, { ...connection, enableOfflineQueue: true, maxRetriesPerRequest: null, autoResubscribe: true })

  const where = options.sentinels !== undefined && options.sentinels.length > 0 ? `primary "${options.sentinelName ?? 'mymaster'}" (Sentinel)` : `${client.options.host ?? '?'}:${client.options.port ?? '?'}`
  let lastError = 'not connected yet'
  /** What a client may read of lastError: its code (ENOTFOUND, ECONNREFUSED, NOAUTH...) or a fixed phrase, never free text. */
  let lastCause = 'no connection yet'
  let closed = false
  let everReady = false
  let down = false
  /**
   * Before the first connection: an attempt failed with an answer from the network (refused,
   * no such host), not a timeout. From then on, no command waits for a connection.
   */
  let firstConnectRefused = false
  /** Settles on the first 'ready', or on a first attempt refused: what a command waiting for the first connection waits for. */
  let decideFirst!: () => void
  const firstDecided = new Promise<void>((resolve) => (decideFirst = resolve))

  client.on('error', (err: Error) => {
    lastError = err.message
    lastCause = causeOf(err)
  })
  client.on('ready', () => {
    role = null
    checkRole().catch(() => {})
    everReady = true
    decideFirst()
    lastError = 'connection closed'
    lastCause = 'connection closed'
    if (down) logger?.info({ redis: where }, 'redis route store reconnected')
    down = false
  })
  client.on('close', () => {
    // A timed-out attempt says nothing about Redis: the timeouts are timers, and a process
    // that blocks its event loop past them (its own start-up compiling every route, on a busy
    // host) fails an attempt whose answer was already there. The client retries by itself.
    if (!everReady && !TIMED_OUT.test(lastError)) {
      firstConnectRefused = true
      decideFirst()
    }
    if (closed || down || !everReady) return
    down = true
    logger?.warn({ redis: where, err: lastError }, 'redis route store lost its connection; reconnecting')
  })

  const sentinelMode = options.sentinels !== undefined && options.sentinels.length > 0
  const primaryName = options.sentinelName ?? 'mymaster'

  // ---- the role of the server the command connection reached --------------------------------
  /** ROLE of this connection: asked once after each 'ready' (null: not yet asked); a refusal is asked again. */
  let role: Promise<string> | null = null
  /** The last ROLE said replica (logged once, not on every refused command). */
  let onReplica = false
  function checkRole(): Promise<string> {
    if (role !== null) return role
    const asked = (client.call('ROLE') as Promise<unknown[]>).then((reply) => String(reply[0]))
    role = asked
    asked.then(
      (r) => {
        if (r === 'master') {
          onReplica = false
          liftFenceIfOnNewPrimary()
          return
        }
        if (role === asked) role = null
        if (!onReplica) logger?.warn({ redis: where, role: r }, 'redis route store reached a replica, not the primary; refusing commands')
        onReplica = true
        // With Sentinel, ask the sentinels again (ioredis' own check can miss a primary demoted just after it).
        if (sentinelMode) client.disconnect(true)
      },
      () => {
        if (role === asked) role = null
      },
    )
    return asked
  }

  // ---- Sentinel: fence writes during a failover -------------------------------------------
  let fenced: { since: number; timer: NodeJS.Timeout } | null = null
  let epoch = 0
  /** host:port from our primary's last +switch-master, while fenced. */
  let newPrimary: { host: string; port: number } | null = null
  function fence(event: string): void {
    if (closed) return
    if (fenced !== null) return
    epoch++
    newPrimary = null
    const timer = setTimeout(() => liftFence(`no +switch-master within ${FENCE_MAX_MS} ms`), FENCE_MAX_MS)
    timer.unref()
    fenced = { since: Date.now(), timer }
    logger?.warn({ redis: where, event }, 'redis route store: a Sentinel failover began; writes are refused until the new primary is connected')
  }
  function liftFence(why: string): void {
    if (fenced === null) return
    clearTimeout(fenced.timer)
    logger?.info({ redis: where, why, fencedMs: Date.now() - fenced.since }, 'redis route store: writes resume after the Sentinel failover')
    fenced = null
    newPrimary = null
  }
  /** The last +switch-master of our primary: where both connections belong from then on. */
  let switched: { host: string; port: number; at: number } | null = null
  /** Whether `redis` is connected (or connecting) to host:port. */
  function connectedTo(redis: Redis, to: { host: string; port: number }): boolean {
    const stream = (redis as unknown as { stream?: { remoteAddress?: string; remotePort?: number } }).stream
    return stream?.remotePort === to.port && sameHost(stream.remoteAddress, to.host)
  }
  /**
   * After a +switch-master: a connection still on another server reconnects, asking the
   * sentinels again (ioredis' Sentinel connector); one that reached a sentinel that had not
   * heard of the switch yet lands here again and asks again, with the reconnect backoff.
   */
  function follow(redis: Redis): void {
    if (switched === null || Date.now() - switched.at > FENCE_MAX_MS || closed) return
    if (redis.status === 'ready' && !connectedTo(redis, switched)) redis.disconnect(true)
  }
  /** Lifted once the command connection is on the primary +switch-master named, and ROLE said master there. */
  function liftFenceIfOnNewPrimary(): void {
    if (fenced === null || newPrimary === null || client.status !== 'ready' || role === null) return
    if (!connectedTo(client, newPrimary)) return follow(client)
    role.then((r) => {
      if (r === 'master') liftFence('connected to the new primary')
    }, () => {})
  }
  subscriber.on('ready', () => follow(subscriber))
  const watchers: Redis[] = []
  if (sentinelMode) {
    for (const sentinel of options.sentinels ?? []) {
      const watcher = new Redis({ host: sentinel.host, port: sentinel.port, connectTimeout, retryStrategy: () => SENTINEL_RECONNECT_MS, enableOfflineQueue: true, maxRetriesPerRequest: null, autoResubscribe: true })
      watcher.on('error', () => {})
      watcher.subscribe(...FAILOVER_BEGINS, ...FAILOVER_ABORTED, '+switch-master').catch(() => {})
      watcher.on('message', (channel: string, message: string) => {
        if (eventMaster(channel, message) !== primaryName) return
        if (FAILOVER_BEGINS.includes(channel)) fence(channel)
        else if (FAILOVER_ABORTED.includes(channel)) liftFence(channel)
        else if (channel === '+switch-master') {
          // Each sentinel announces it once it learns of the switch, the last ones seconds later.
          const [, , , host, port] = message.split(' ')
          const to = { host: host ?? '', port: Number(port) }
          switched = { ...to, at: Date.now() }
          follow(subscriber)
          if (fenced === null && client.status === 'ready' && connectedTo(client, to)) return
          // A failover we did not see begin (led by a sentinel we cannot reach): fence now.
          fence(channel)
          newPrimary = to
          liftFenceIfOnNewPrimary()
        }
      })
      watchers.push(watcher)
    }
  }

  function assertWritable(): void {
    if (fenced !== null) throw unavailable(`a Sentinel failover of ${where} is under way (${Date.now() - fenced.since} ms); writes resume on the new primary`, 'is failing over (Sentinel); writes resume on the new primary')
  }

  /**
   * StoreUnavailableError whose answer to clients (the 503 body, /readyz) names where Redis is
   * and why it cannot be used: `where` is host:port from REDIS_URL (never its password) or the
   * Sentinel primary's name, and `cause` an error code or a fixed phrase, never a message text.
   */
  function unavailable(detail: string, cause: string): Error {
    const err = new StoreUnavailableError(detail)
    ;(err as ClientFacing).publicMessage = `The route store is unavailable: Redis at ${where} ${cause}. Nothing was changed; retry later.`
    return err
  }

  /**
   * Until the first connection, a command waits for it (at most connectTimeout from the call,
   * however many attempts that takes), so a store used right after it was created works,
   * even when an attempt timed out; a refused first attempt fails every command at once.
   * Once connected, never waits.
   */
  async function ensureReady(): Promise<void> {
    if (closed) throw new StoreUnavailableError('the store is closed')
    if (client.status === 'ready') return primaryOnly()
    if (everReady || firstConnectRefused) throw unavailable(`Redis at ${where} is not connected (${lastError}); reconnecting`, `is not connected (${lastCause})`)
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(unavailable(`Redis at ${where} is not reachable (${lastError})`, `is not reachable (${lastCause})`)), connectTimeout)
    })
    try {
      await Promise.race([firstDecided, timedOut])
    } finally {
      clearTimeout(timer)
    }
    if ((client.status as string) !== 'ready') throw unavailable(`Redis at ${where} is not reachable (${lastError})`, `is not reachable (${lastCause})`)
    return primaryOnly()
  }

  /** Waits for this connection's ROLE (one round trip after a reconnect); refuses a replica. */
  async function primaryOnly(): Promise<void> {
    let r: string
    try {
      r = await checkRole()
    } catch (first) {
      const failed = (err: unknown): Error => unavailable(`Redis at ${where} did not answer ROLE (${err instanceof Error ? err.message : String(err)})`, `did not answer (${causeOf(err)})`)
      // The ROLE asked at 'ready' can time out with its answer already there: its timer fires
      // first when the event loop was blocked past the command timeout (a control plane compiling
      // its routes at start on a busy host), as the connect timer could. Asked once more, only
      // then: on a connection that is going away, a second ROLE would wait in the offline queue.
      if (client.status !== 'ready' || !TIMED_OUT.test(first instanceof Error ? first.message : String(first))) throw failed(first)
      try {
        r = await checkRole()
      } catch (err) {
        throw failed(err)
      }
    }
    if (r !== 'master') throw unavailable(`Redis at ${where} is a replica (ROLE ${r}), not the primary; ${sentinelMode ? 'asking the sentinels again' : 'commands go to the primary only'}`, 'is a replica, not the primary')
  }

  /** Runs Redis commands, turning connection failures into StoreUnavailableError. */
  async function run<T>(fn: () => Promise<T>): Promise<T> {
    await ensureReady()
    try {
      return await fn()
    } catch (err) {
      if (err instanceof ReplyError && !UNAVAILABLE_REPLIES.test(err.message)) throw err
      const message = err instanceof Error ? err.message : String(err)
      // ioredis' words for "the connection just dropped" say more about its options than about Redis.
      const connected = client.status === 'ready' && !/enableOfflineQueue/.test(message)
      const reason = connected ? message : `connection lost: ${lastError}`
      throw unavailable(`Redis at ${where} did not answer (${reason})`, `did not answer (${connected ? causeOf(err) : `connection lost: ${lastCause}`})`)
    }
  }

  /** MULTI/EXEC: the replies of every command, read at one instant. */
  async function atomically(build: (m: ReturnType<Redis['multi']>) => void): Promise<unknown[]> {
    return run(async () => {
      const m = client.multi()
      build(m)
      const replies = await m.exec()
      if (replies === null) throw new StoreUnavailableError(`Redis at ${where} aborted a transaction`)
      return replies.map(([err, value]) => {
        if (err) throw err
        return value
      })
    })
  }


  async function quit(redis: Redis): Promise<void> {
    if (redis.status === 'end') return
    if (redis.status !== 'ready') {
      redis.disconnect()
      return
    }
    try {
      await redis.quit()
    } catch {
      redis.disconnect()
    }
  }

  return {
    client,
    subscriber,
    where,
    ensureReady,
    run,
    atomically,
    assertWritable,
    fenceEpoch: () => epoch,
    isClosed: () => closed,
    async close() {
      if (closed) return
      closed = true
      if (fenced !== null) clearTimeout(fenced.timer)
      for (const w of watchers) w.disconnect()
      await Promise.all([quit(client), quit(subscriber)])
    },
  }
}
