/**
 * Old HAProxy workers: after a reload the previous worker stops accepting and keeps the
 * connections it holds (WebSockets, streams, TCP sessions) until they end or `hard-stop-after`
 * (TETHER_DRAIN_TIMEOUT). Each holds memory and descriptors, so a reload storm with long-lived
 * connections could pile them up silently. Here: which ones to stop when there are more than
 * the bound (TETHER_MAX_OLD_WORKERS), and what to report (count, age, connections).
 */
import type { OldWorkersReport } from '../../contracts/proxy-status.ts'
import type { Logger } from '../../shared/logger.ts'
import { sendCommand, type ProcEntry, type ProcInfo } from './runtime.ts'

/** The old workers beyond the `max` youngest, oldest first (most reloads survived, then longest up). 0: no bound. */
export function excessOldWorkers(info: ProcInfo, max: number): ProcEntry[] {
  if (max === 0 || info.oldWorkers.length <= max) return []
  const oldestFirst = [...info.oldWorkers].sort((a, b) => b.reloads - a.reloads || (b.uptimeSeconds ?? 0) - (a.uptimeSeconds ?? 0) || a.pid - b.pid)
  return oldestFirst.slice(0, info.oldWorkers.length - max)
}

/**
 * Stops the old workers beyond `max` at once (SIGTERM: an old worker closes its connections and
 * exits; HAProxy 2.6's master CLI has no command for it). Only pids the master lists as old
 * workers are signalled. Returns the pids stopped.
 */
export function stopExcessOldWorkers(info: ProcInfo, max: number, logger: Logger): number[] {
  const stopped: number[] = []
  for (const w of excessOldWorkers(info, max)) {
    try {
      process.kill(w.pid, 'SIGTERM')
      stopped.push(w.pid)
    } catch {
      /* already gone */
    }
  }
  if (stopped.length > 0) {
    logger.warn({ stopped, oldWorkers: info.oldWorkers.length, max }, `more than ${max} old HAProxy workers draining connections (TETHER_MAX_OLD_WORKERS): stopped the oldest, their connections closed`)
  }
  return stopped
}

/** CurrConns of one worker through the master CLI (`@!<pid> show info`); null when it does not answer. */
export async function workerConnections(masterSocket: string, pid: number): Promise<number | null> {
  try {
    const text = await sendCommand(masterSocket, `@!${pid} show info`, 2_000)
    const m = /^CurrConns:\s*(\d+)/m.exec(text)
    return m === null ? null : Number(m[1])
  } catch {
    return null
  }
}

/** What the heartbeat says of the old workers: count, age and connections (at most 1,000 listed). */
export async function oldWorkersReport(masterSocket: string, info: ProcInfo, limits: { maxCount: number; drainTimeoutSeconds: number }): Promise<OldWorkersReport> {
  const listed = info.oldWorkers.slice(0, 1000)
  const workers = await Promise.all(
    listed.map(async (w) => ({ pid: w.pid, reloads: w.reloads, ageSeconds: w.uptimeSeconds ?? 0, connections: await workerConnections(masterSocket, w.pid) })),
  )
  return {
    count: info.oldWorkers.length,
    connections: workers.reduce((n, w) => n + (w.connections ?? 0), 0),
    oldestAgeSeconds: workers.reduce((n, w) => Math.max(n, w.ageSeconds), 0),
    maxCount: limits.maxCount,
    drainTimeoutSeconds: limits.drainTimeoutSeconds,
    workers,
  }
}

/**
 * Ends, in every old worker, the sessions of backends whose route a reload removed: the old
 * worker would otherwise keep serving a removed route's WebSockets and streams until the drain
 * timeout. The client sees its connection closed. Sessions are found with `show sess` and ended
 * one by one (`shutdown session <id>`: an old worker's proxies are stopped, so it refuses
 * `shutdown sessions server`). Never rejects; returns the number of sessions ended.
 */
export async function endRemovedSessions(masterSocket: string, info: ProcInfo, backends: readonly string[], logger: Logger): Promise<number> {
  const removed = new Set(backends)
  const ended = await endOldWorkerSessions(masterSocket, info, (backend) => removed.has(backend), logger)
  if (ended > 0) logger.info({ backends, sessions: ended }, 'ended the connections old workers held to removed routes')
  return ended
}

/** Ends the sessions of every old worker whose backend and server `matches` accepts; returns how many. Never rejects. */
export async function endOldWorkerSessions(masterSocket: string, info: ProcInfo, matches: (backend: string, server: string) => boolean, logger: Logger): Promise<number> {
  let ended = 0
  for (const w of info.oldWorkers) {
    try {
      const sessions = await sendCommand(masterSocket, `@!${w.pid} show sess`, 5_000)
      for (const m of sessions.matchAll(/^(0x[0-9a-f]+): .*? be=(\S+) srv=(\S+)/gm)) {
        if (!matches(m[2]!, m[3]!)) continue
        await sendCommand(masterSocket, `@!${w.pid} shutdown session ${m[1]}`, 2_000)
        ended++
      }
    } catch (err) {
      logger.debug({ err, pid: w.pid }, 'could not end sessions in an old worker')
    }
  }
  return ended
}

/** Backends of `before` whose service has no route in `after` (its route was removed). */
export function removedRouteBackends(before: ReadonlyArray<{ name: string; serviceName: string }>, after: ReadonlyArray<{ serviceName: string }>): string[] {
  const kept = new Set(after.map((b) => b.serviceName))
  return before.filter((b) => !kept.has(b.serviceName)).map((b) => b.name)
}
