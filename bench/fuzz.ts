/**
 * The hostile-input fuzz at benchmark size: the property of test/proxy/haproxy/fuzz-oracle.test.ts
 * (every form, HAProxy as the oracle) over --cases inputs (default 10,000) from --seed (default:
 * random, printed). Then the whole table the run stored is served by a real HAProxy and the known
 * good route is requested through it (the proxy has an HTTPS listener, so SNI passthrough routes
 * are served too). Prints one Markdown row for bench/RESULTS.md, with the accepted routes that
 * have TCP and SNI destinations by form.
 *
 *   npx tsx bench/fuzz.ts [--cases 10000] [--seed N]
 *
 * Exits 1 with fast-check's counterexample (and the seed to replay it) when the property fails.
 */
import { parseArgs } from 'node:util'
import { createApiFuzz, KNOWN_GOOD, unresolvableOnly } from '../test/helpers/api-fuzz.ts'
import { closeBackends, startBackends, type BackendReply } from '../test/helpers/backends.ts'
import { createClient, createTestProxy } from '../test/helpers/haproxy.ts'
import { freePort } from '../test/helpers/redis-server.ts'

const { values } = parseArgs({ options: { cases: { type: 'string', default: '10000' }, seed: { type: 'string' } } })
const cases = Number(values.cases)
const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31)
process.stderr.write(`fuzz: ${cases} cases, seed ${seed}\n`)

const backends = await startBackends(1, { prefix: 'good' })
const fuzz = await createApiFuzz(backends[0]!.address)
const started = Date.now()
let failure: unknown
try {
  await fuzz.run(cases, seed)
} catch (err) {
  failure = err
}
const seconds = (Date.now() - started) / 1000
const { stats } = fuzz
const accepted = Object.values(stats.accepted).reduce((a, b) => a + b, 0)

let served = 'not checked (the property failed)'
if (failure === undefined) {
  const snapshot = await fuzz.store.snapshot()
  // With an HTTPS listener, so the SNI passthrough routes are served too.
  const proxy = await createTestProxy(undefined, { tlsListen: `127.0.0.1:${await freePort()}` })
  const client = createClient({ reuse: false })
  try {
    const result = await proxy.engine.apply(snapshot)
    const byName = new Map(snapshot.routes.map((r) => [r.serviceName, r]))
    const otherwise = result.refused.filter((r) => !unresolvableOnly(byName.get(r.serviceName)!, [r.error]))
    const reply = await client.get(`${proxy.url}/${KNOWN_GOOD}/x`, { cookies: false })
    const ok = reply.status === 200 && (reply.body as BackendReply).instance === 'good1'
    served = `${snapshot.routes.length} routes stored, ${result.refused.length} refused by HAProxy (${result.refused.length - otherwise.length} for an endpoint name that does not resolve here); known good route ${ok ? 'served' : `NOT served (${reply.status})`}`
    if (!ok || otherwise.length > 0) failure = new Error(`${served}: ${JSON.stringify(otherwise)}`)
  } finally {
    await client.close()
    await proxy.stop()
  }
}
await fuzz.close()
await closeBackends(backends)

const byForm = (Object.keys(stats.accepted) as Array<keyof typeof stats.accepted>).map((f) => `${f} ${stats.accepted[f]}/${stats.accepted[f] + stats.refused[f]}`).join(', ')
const sum = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0)
const streamsByForm = (r: Record<string, number>): string =>
  Object.entries(r)
    .map(([f, n]) => `${f} ${n}`)
    .join(', ')
const streams = `TCP ${sum(stats.acceptedTcp)} (${streamsByForm(stats.acceptedTcp)}); SNI ${sum(stats.acceptedSni)} (${streamsByForm(stats.acceptedSni)})`
const codes = Object.entries(stats.codes)
  .sort((a, b) => b[1] - a[1])
  .map(([c, n]) => `${c} ${n}`)
  .join(', ')
process.stdout.write(
  `| ${new Date().toISOString().slice(0, 10)} | ${stats.cases.toLocaleString('en')} | ${seed} | ${accepted.toLocaleString('en')} accepted (${byForm}); with TCP/SNI destinations: ${streams} | ${(stats.cases - accepted).toLocaleString('en')} refused (${codes}) | ${stats.checks.toLocaleString('en')} (${stats.unresolvable} with an endpoint name that does not resolve here) | ${failure === undefined ? '**0**' : '**FAILED**'} | ${served} | ${seconds.toFixed(0)} s |\n`,
)
if (failure !== undefined) {
  process.stderr.write(`${String((failure as Error).message ?? failure)}\n`)
  process.exit(1)
}
