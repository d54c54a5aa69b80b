/**
 * HTTPS benchmark, one run, two proxies side by side (interleaved rounds, medians):
 *   hand   — a hand-written HAProxy TLS configuration: one `bind ... ssl crt <pem> alpn
 *            h2,http/1.1` with Mozilla's intermediate ciphers and TLS 1.2+ (what anyone pastes),
 *            the same sticky routing as bench/data-plane.ts (path /app, cookie insert dynamic,
 *            3 servers);
 *   tether — the configuration Tether's engine renders for the same route, with the same
 *            certificate handed over as the control plane would (crt-list, chosen by SNI, the
 *            self-signed default first on the bind line).
 * Two measures, both with wrk (it sends the URL's host as SNI: `localhost`, which the
 * certificate names):
 *   keep-alive   — requests/s over established HTTPS connections;
 *   handshakes   — `Connection: close`: every request is a new TCP connection and a full TLS
 *                  handshake (wrk offers no session to resume), so requests/s = handshakes/s.
 * Backends: a separate HAProxy answering `http-request return` on 3 ports. Both proxies run
 * nbthread 1; everything shares the machine's cores with wrk.
 *
 *   flock /tmp/heavy.lock npx tsx bench/tls.ts [--seconds 5] [--rounds 3] [--connections 32]
 */
import { execFile } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { request } from 'node:https'
import { normalizeRoute } from '../src/contracts/route.ts'
import { parseCertificate, splitCombinedPem } from '../src/contracts/certificate.ts'
import { createHaproxyEngine } from '../src/proxy/haproxy/haproxy-engine.ts'
import { tlsGlobalLines } from '../src/proxy/haproxy/tls.ts'
import { freePort } from '../test/helpers/redis-server.ts'
import { benchArgs, handConfig, KEY, median, roundLine, startHaproxyBench, startReturnBackends, summarize, wrk, type WrkResult } from './lib/haproxy-bench.ts'

const { seconds, rounds, connections } = benchArgs({ seconds: 5, rounds: 3 })
const run = promisify(execFile)

const bench = await startHaproxyBench('tether-bench-tls-')
const { dir, haproxy } = bench

/** GET over HTTPS with SNI localhost; answers the affinity cookie and the certificate's fingerprint. */
function get(port: number): Promise<{ status: number; cookie: string | undefined; fingerprint: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/app/x', servername: 'localhost', headers: { host: 'localhost' }, rejectUnauthorized: false, agent: false }, (res) => {
      const peer = (res.socket as import('node:tls').TLSSocket).getPeerCertificate()
      res.resume()
      res.on('end', () => {
        const raw = res.headers['set-cookie']
        resolve({ status: res.statusCode ?? 0, cookie: raw?.[0]?.split(';')[0], fingerprint: peer.fingerprint256 })
      })
    })
    req.on('error', reject)
    req.end()
  })
}

try {
  // One ECDSA P-256 certificate for both (Tether's default certificate is P-256 too).
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost'])
  const combined = `${await readFile(join(dir, 'cert.pem'), 'utf8')}${await readFile(join(dir, 'key.pem'), 'utf8')}`
  await writeFile(join(dir, 'bench.pem'), combined, { mode: 0o600 })
  const parsed = parseCertificate(splitCombinedPem(combined))

  const endpoints = await startReturnBackends(bench, 3)

  const handPort = await freePort()
  await haproxy(
    'hand',
    handConfig({
      port: handPort,
      endpoints,
      global: tlsGlobalLines(),
      frontendName: 'https',
      bind: `ssl crt ${join(dir, 'bench.pem')} alpn h2,http/1.1`,
      frontend: ['    http-request set-header X-Forwarded-Proto https'],
      secure: true,
    }),
  )

  const tetherPort = await freePort()
  const engine = await createHaproxyEngine({
    stateDir: join(dir, 'tether'),
    listen: `127.0.0.1:${await freePort()}`,
    tlsListen: `127.0.0.1:${tetherPort}`,
    adminListen: `127.0.0.1:${await freePort()}`,
    resolvers: ['127.0.0.1:1'],
    cookieKey: KEY,
    nbthread: 1,
    // The load generator is one address sending far more than TETHER_CLIENT_MAX_REQUEST_RATE
    // allows (1,000 a second): it would be answered 429. The per-address connection limit stays.
    clientMaxRequestRate: 0,
  })
  bench.onClose(() => engine.stop())
  await engine.certificates!.set([{ name: 'bench', fingerprint: parsed.fingerprint, pem: `${parsed.chainPem}${parsed.keyPem}` }])
  await engine.apply({
    version: 1,
    routes: [normalizeRoute({ serviceName: 'app', destinations: [{ servicePath: ['/app'], port: 80 }], sticky: true, endpoints })],
  })

  const targets = { hand: { port: handPort, cookie: '' }, tether: { port: tetherPort, cookie: '' } }
  for (const name of ['hand', 'tether'] as const) {
    let answer
    for (let i = 0; i < 100; i++) {
      answer = await get(targets[name].port).catch(() => undefined)
      if (answer?.status === 200) break
      await sleep(50)
    }
    if (answer?.status !== 200 || answer.cookie === undefined) throw new Error(`${name} never answered 200 with a cookie`)
    if (answer.fingerprint !== parsed.fingerprint) throw new Error(`${name} does not serve the bench certificate for SNI localhost`)
    targets[name].cookie = answer.cookie
  }

  const modes = { 'keep-alive': [] as string[], handshakes: ['Connection: close'] }
  const results: Record<string, WrkResult[]> = {}
  // The order alternates each round (hand first, then tether first): a run of `Connection: close`
  // leaves thousands of sockets in TIME_WAIT behind it, which would otherwise always burden the same side.
  for (let r = 0; r < rounds; r++) {
    for (const [mode, headers] of Object.entries(modes)) {
      for (const name of r % 2 === 0 ? (['hand', 'tether'] as const) : (['tether', 'hand'] as const)) {
        const res = await wrk(`https://localhost:${targets[name].port}/app/x`, { connections, seconds, headers, cookie: targets[name].cookie })
        ;(results[`${mode} ${name}`] ??= []).push(res)
        process.stderr.write(roundLine(`round ${r + 1} ${mode} ${name}`, res))
      }
    }
  }
  const summary = (key: string): WrkResult => summarize(results[key]!)
  console.log(`wrk -t1 -c${connections} -d${seconds}s --latency over HTTPS (SNI localhost, ECDSA P-256), ${rounds} interleaved rounds, medians`)
  console.log('| measure | target | req/s | p50 ms | p99 ms | errors |')
  console.log('|---|---|---|---|---|---|')
  for (const mode of Object.keys(modes)) for (const name of ['hand', 'tether']) {
    const s = summary(`${mode} ${name}`)
    console.log(`| ${mode} | ${name} | ${s.rps.toFixed(0)} | ${s.p50.toFixed(3)} | ${s.p99.toFixed(3)} | ${s.errors} |`)
  }
  for (const mode of Object.keys(modes)) {
    const perRound = results[`${mode} tether`]!.map((t, i) => t.rps / results[`${mode} hand`]![i]!.rps)
    console.log(`${mode}: tether / hand-written = ${(summary(`${mode} tether`).rps / summary(`${mode} hand`).rps).toFixed(3)} (ratio of medians); per round ${perRound.map((x) => x.toFixed(3)).join(', ')}, median ${median(perRound).toFixed(3)}`)
  }

  // New certificate → served: the proxy's side of "issuance to every proxy serving it" (the
  // agent hands the engine the certificate, the engine applies it over the runtime API); timed
  // until a fresh TLS handshake presents it.
  const reloadsBefore = engine.counters.reloads
  const times: number[] = []
  for (let i = 0; i < 10; i++) {
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'key2.pem'), '-out', join(dir, 'cert2.pem'), '-days', '2', '-subj', `/CN=localhost-${i}`, '-addext', 'subjectAltName=DNS:localhost'])
    const next = parseCertificate(splitCombinedPem(`${await readFile(join(dir, 'cert2.pem'), 'utf8')}${await readFile(join(dir, 'key2.pem'), 'utf8')}`))
    const started = performance.now()
    await engine.certificates!.set([{ name: 'bench', fingerprint: next.fingerprint, pem: `${next.chainPem}${next.keyPem}` }])
    await engine.apply({ version: 2 + i, routes: [normalizeRoute({ serviceName: 'app', destinations: [{ servicePath: ['/app'], port: 80 }], sticky: true, endpoints })] })
    for (let k = 0; k < 200 && (await get(tetherPort)).fingerprint !== next.fingerprint; k++) await sleep(5)
    times.push(performance.now() - started)
  }
  console.log(`certificate replaced → served by a new handshake, 10 times: median ${median(times).toFixed(1)} ms, max ${Math.max(...times).toFixed(1)} ms; reloads meanwhile: ${engine.counters.reloads - reloadsBefore}`)
} finally {
  await bench.close()
}
