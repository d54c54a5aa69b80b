/**
 * A clock for tests: time moves only when the test calls `advance`, and every sleep the code
 * under test asks for is recorded, so backoff and heartbeats are checked without waiting.
 */
import { setImmediate as tick } from 'node:timers/promises'
import type { Clock } from '../../src/shared/clock.ts'

export interface FakeClock extends Clock {
  /** Every duration passed to sleep(), in call order. */
  readonly sleeps: number[]
  /** Moves time forward, waking due sleepers in order and letting the code run in between. */
  advance(ms: number): Promise<void>
  /** Lets pending promise chains and I/O callbacks run. */
  settle(rounds?: number): Promise<void>
}

export function createFakeClock(start = 1_700_000_000_000): FakeClock {
  let now = start
  const timers: Array<{ at: number; resolve: () => void }> = []
  const sleeps: number[] = []
  // Promise chains need ticks; the state file's fs calls need a little real time as well.
  const settle = async (rounds = 20): Promise<void> => {
    for (let i = 0; i < rounds; i++) {
      await tick()
      if (i % 5 === 4) await new Promise((resolve) => setTimeout(resolve, 1))
    }
  }
  return {
    sleeps,
    now: () => now,
    sleep(ms, signal) {
      sleeps.push(ms)
      return new Promise<void>((resolve, reject) => {
        if (signal?.aborted === true) {
          reject(new DOMException('aborted', 'AbortError'))
          return
        }
        const timer = {
          at: now + ms,
          resolve: () => {
            signal?.removeEventListener('abort', onAbort)
            resolve()
          },
        }
        const onAbort = (): void => {
          const i = timers.indexOf(timer)
          if (i >= 0) timers.splice(i, 1)
          reject(new DOMException('aborted', 'AbortError'))
        }
        signal?.addEventListener('abort', onAbort, { once: true })
        timers.push(timer)
      })
    },
    async advance(ms) {
      const target = now + ms
      await settle()
      for (let guard = 0; guard < 100_000; guard++) {
        timers.sort((a, b) => a.at - b.at)
        const next = timers[0]
        if (next === undefined || next.at > target) break
        timers.shift()
        now = next.at
        next.resolve()
        await settle()
      }
      now = target
      await settle()
    },
    settle,
  }
}

/**
 * Waits (in real time, bounded) until `predicate` holds: for effects that go through real I/O
 * (the state file) and so are not finished by `settle()`. Throws naming `what` otherwise.
 */
export async function until(predicate: () => boolean, what: string, limitMs = 5000): Promise<void> {
  const deadline = Date.now() + limitMs
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
}
