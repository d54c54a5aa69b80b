/**
 * Time and randomness, injected so that backoff, jitter, heartbeats, intervals and leases are
 * tested without waiting (STYLE.md §7). One Clock for both planes.
 */
import { setTimeout as sleepTimer } from 'node:timers/promises'

export interface Clock {
  now(): number
  /** Resolves after `ms`, or rejects with an AbortError when `signal` aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: async (ms, signal) => {
    // Referenced on purpose: while the agent backs off, this timer is what keeps the process
    // alive. Callers abort through `signal` to stop.
    await sleepTimer(ms, undefined, signal === undefined ? {} : { signal })
  },
}

export interface BackoffPolicy {
  /** First delay. */
  baseMs: number
  /** Cap: the delay never grows past it. */
  maxMs: number
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 250, maxMs: 30_000 }

/**
 * Pure: the delay before retry number `attempt` (1 = first retry) — exponential, capped, with
 * "equal jitter" (half fixed, half random) so that a fleet of proxies that lost the control
 * plane at the same moment does not come back in lockstep. `random` returns [0, 1).
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number): number {
  const exponent = Math.min(Math.max(attempt - 1, 0), 30)
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** exponent)
  return Math.round(ceiling / 2 + random() * (ceiling / 2))
}

/** Sleeps on `clock`, resolving (never rejecting) when `signal` aborts: for loops that check the signal themselves. */
export async function sleepUnlessAborted(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  try {
    await clock.sleep(ms, signal)
  } catch (err) {
    if (!(err instanceof Error && err.name === 'AbortError')) throw err
  }
}
