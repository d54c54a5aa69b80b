/**
 * The Redis store's two connections and how they fail. Commands fail fast when Redis is not
 * there (no offline queue, no resend of in-flight commands, a per-command timeout) with
 * StoreUnavailableError; the client reconnects by itself with a capped backoff. The subscriber
 * queues its SUBSCRIBE and resubscribes after a reconnect.
 */
import { Redis, ReplyError as IoredisReplyError, type RedisOptions } from 'ioredis'
import type { Logger } from '../../shared/logger.ts'
import { StoreUnavailableError } from '../errors.ts'

/** ioredis types ReplyError as `any`; it is redis-errors' ReplyError class (an Error). */
export const ReplyError = IoredisReplyError as new (...args: never[]) => Error

/** Reply errors that mean "Redis cannot serve right now", not "this request is wrong". */
const UNAVAILABLE_REPLIES = /^(LOADING|BUSY|MASTERDOWN|READONLY|TRYAGAIN|CLUSTERDOWN|NOREPLICAS|MISCONF)\b/

/** ioredis' words for an attempt that ran out of time: the connect timeout, or a command's (the ready check's). */
const TIMED_OUT = /ETIMEDOUT|timed out/i

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
    // Exponential, capped: reconnects by itself for as long as it takes.
    retryStrategy: (attempt: number) => Math.min(50 * 2 ** Math.min(attempt, 10), maxReconnectDelay),
    lazyConnect: false,
    ...(options.sentinels !== undefined && options.sentinels.length > 0
      ? {
          sentinels: options.sentinels.map((x) => ({ host: x.host, port: x.port })),
          name: options.sentinelName ?? 'mymaster',
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
  })
  client.on('ready', () => {
    everReady = true
    decideFirst()
    lastError = 'connection closed'
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

  /**
   * Until the first connection, a command waits for it (at most connectTimeout from the call,
   * however many attempts that takes), so a store used right after it was created works,
   * even when an attempt timed out; a refused first attempt fails every command at once.
   * Once connected, never waits.
   */
  async function ensureReady(): Promise<void> {
    if (closed) throw new StoreUnavailableError('the store is closed')
    if (client.status === 'ready') return
    if (everReady || firstConnectRefused) throw new StoreUnavailableError(`Redis at ${where} is not connected (${lastError}); reconnecting`)
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new StoreUnavailableError(`Redis at ${where} is not reachable (${lastError})`)), connectTimeout)
    })
    try {
      await Promise.race([firstDecided, timedOut])
    } finally {
      clearTimeout(timer)
    }
    if ((client.status as string) !== 'ready') throw new StoreUnavailableError(`Redis at ${where} is not reachable (${lastError})`)
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
      const reason = client.status === 'ready' && !/enableOfflineQueue/.test(message) ? message : `connection lost: ${lastError}`
      throw new StoreUnavailableError(`Redis at ${where} did not answer (${reason})`)
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
    isClosed: () => closed,
    async close() {
      if (closed) return
      closed = true
      await Promise.all([quit(client), quit(subscriber)])
    },
  }
}
