/**
 * The client side of bench/endpoint-change.ts, in a process of its own: the backends (the tasks)
 * and the poller that waits until a new backend answers. A real client and real tasks are
 * other processes than the proxy's agent; here they are too, so the agent's own work (the
 * configuration file it writes after a runtime change) does not delay them.
 *
 * Messages: { init: { hosts, port } } → { ready: true }; { probe: { url, instance, start } },
 * start = process.hrtime.bigint() of the parent as a string (CLOCK_MONOTONIC: one clock for
 * every process of the machine) → { served: ms } or { error }.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { closeBackends, startBackends, type Backend, type BackendReply } from '../../test/helpers/backends.ts'

let backends: Backend[] = []

/**
 * Polls `url` until `instance` answers; ms since `start`. Bounded: 10 s. A 5 ms pause between
 * requests (the resolution): polling flat out would take the CPU the change itself needs.
 */
async function servedAfter(url: string, instance: string, start: bigint): Promise<number> {
  const since = (): number => Number(process.hrtime.bigint() - start) / 1e6
  while (since() < 10_000) {
    const res = await request(url, { headers: { connection: 'close' } })
    const text = await res.body.text()
    if (res.statusCode === 200 && (JSON.parse(text) as BackendReply).instance === instance) return since()
    await sleep(5)
  }
  throw new Error(`${instance} never served`)
}

process.on('message', (message: { init?: { hosts: string[]; port: number }; probe?: { url: string; instance: string; start: string } }) => {
  void (async () => {
    try {
      if (message.init !== undefined) {
        backends = await startBackends(message.init.hosts.length, { hosts: message.init.hosts, port: message.init.port, prefix: 'b-' })
        process.send?.({ ready: true })
      } else if (message.probe !== undefined) {
        process.send?.({ served: await servedAfter(message.probe.url, message.probe.instance, BigInt(message.probe.start)) })
      }
    } catch (error) {
      process.send?.({ error: error instanceof Error ? error.message : String(error) })
    }
  })()
})
process.on('disconnect', () => void closeBackends(backends).then(() => process.exit(0)))
