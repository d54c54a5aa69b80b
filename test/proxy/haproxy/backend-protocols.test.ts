/**
 * Towards backends (backendScheme, sslVerifyNone, backendCaSecret) through a real HAProxy:
 * - gRPC end to end: a @grpc/grpc-js client over HTTPS (ALPN h2) → the proxy → a gRPC server task
 *   speaking HTTP/2 in clear text (backendScheme h2c), unary and a server stream; the stream
 *   goes on across a change of another route that reloads HAProxy;
 * - TLS to a task: verified against a CA bundle from a Docker secret (the task's certificate names
 *   the service), refused (503) when the task's certificate is from another CA, served unverified
 *   with sslVerifyNone; a proxy without the secret answers 503 and reports the route.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import type { CertificateMaterial } from '../../../src/contracts/certificate.ts'
import { normalizeRoute, type Route } from '../../../src/contracts/route.ts'
import { spareKind } from '../../../src/proxy/haproxy/render.ts'
import { closeBackends, startBackends, type Backend } from '../../helpers/backends.ts'
import { createTestProxy, waitFor, type TestProxy } from '../../helpers/haproxy.ts'
import { httpsGet } from '../../helpers/https.ts'
import { createCa, issue, type Issuer, type Leaf } from '../../helpers/pki.ts'
import { freePort } from '../../helpers/redis-server.ts'

// A gRPC service without .proto files: JSON messages, gRPC's framing, paths and trailers as any gRPC service has.
const json = { serialize: (v: unknown) => Buffer.from(JSON.stringify(v)), deserialize: (b: Buffer) => JSON.parse(b.toString()) as unknown }
const service: grpc.ServiceDefinition = {
  echo: { path: '/tether.test.Echo/Echo', requestStream: false, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
  ticks: { path: '/tether.test.Echo/Ticks', requestStream: false, responseStream: true, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
}
const EchoClient = grpc.makeGenericClientConstructor(service, 'Echo')

interface Ticks {
  n: number
}

describe('towards backends: gRPC over h2c, TLS verified with a CA bundle from a secret, sslVerifyNone', () => {
  let ca: Issuer
  let otherCa: Issuer
  let proxyLeaf: Leaf
  let grpcServer: grpc.Server
  let grpcPort: number
  let tlsTask: HttpsServer
  let strangerTask: HttpsServer
  let tlsTaskPort: number
  let strangerPort: number
  let backends: Backend[]
  let secretsDir: string
  let proxy: TestProxy
  let tlsPort: number
  let client: InstanceType<typeof EchoClient>

  /** `changed`: the other route sets a response header (a change of its backend's rules: a reload). */
  const routes = (changed: boolean): Route[] => [
    normalizeRoute({ serviceName: 'grpc', destinations: [{ servicePath: ['/tether.test.Echo'], port: grpcPort }], endpoints: [`127.0.0.1:${grpcPort}`], serviceDomain: ['grpc.example.com'], backendScheme: 'h2c' }),
    normalizeRoute({ serviceName: 'tlsapp', destinations: [{ servicePath: ['/verified'], port: tlsTaskPort }], endpoints: [`127.0.0.1:${tlsTaskPort}`], backendCaSecret: 'internal_ca' }),
    normalizeRoute({ serviceName: 'stranger', destinations: [{ servicePath: ['/stranger'], port: strangerPort }], endpoints: [`127.0.0.1:${strangerPort}`], backendCaSecret: 'internal_ca' }),
    normalizeRoute({ serviceName: 'unverified', destinations: [{ servicePath: ['/unverified'], port: strangerPort }], endpoints: [`127.0.0.1:${strangerPort}`], sslVerifyNone: true }),
    normalizeRoute({ serviceName: 'missing', destinations: [{ servicePath: ['/missing'], port: tlsTaskPort }], endpoints: [`127.0.0.1:${tlsTaskPort}`], backendCaSecret: 'not_mounted' }),
    normalizeRoute({ serviceName: 'other', destinations: [{ servicePath: ['/other'], port: 80 }], endpoints: [backends[0]!.address], ...(changed ? { setResHeader: [{ name: 'X-Changed', value: 'yes' }] } : {}) }),
  ]

  const tlsTaskOn = async (leaf: Leaf, name: string): Promise<{ server: HttpsServer; port: number }> => {
    const server = createHttpsServer({ cert: leaf.chain, key: leaf.key }, (req, res) => {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ task: name, path: req.url, proto: req.headers['x-forwarded-proto'] }))
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return { server, port: (server.address() as { port: number }).port }
  }

  before(async () => {
    ca = await createCa('Tether Test Service CA')
    otherCa = await createCa('Some Other CA')
    proxyLeaf = await issue(ca, ['grpc.example.com'])
    // The tasks' certificates name the service (what verifyhost checks), as a Swarm-internal CA would issue them.
    ;({ server: tlsTask, port: tlsTaskPort } = await tlsTaskOn(await issue(ca, ['tlsapp']), 'tlsapp'))
    ;({ server: strangerTask, port: strangerPort } = await tlsTaskOn(await issue(otherCa, ['stranger']), 'stranger'))

    grpcServer = new grpc.Server()
    grpcServer.addService(service, {
      echo: (call: grpc.ServerUnaryCall<{ text: string }, unknown>, done: grpc.sendUnaryData<unknown>) => done(null, { text: call.request.text, authority: call.getHost() }),
      ticks: (call: grpc.ServerWritableStream<{ every: number; count: number }, Ticks>) => {
        let n = 0
        const timer = setInterval(() => {
          n++
          call.write({ n })
          if (n >= call.request.count) {
            clearInterval(timer)
            call.end()
          }
        }, call.request.every)
        call.on('cancelled', () => clearInterval(timer))
      },
    })
    grpcPort = await new Promise<number>((resolve, reject) => grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))))

    backends = await startBackends(1, { prefix: 'other' })
    secretsDir = await mkdtemp(join(tmpdir(), 'tether-secrets-'))
    await writeFile(join(secretsDir, 'internal_ca'), ca.pem)
    tlsPort = await freePort()
    proxy = await createTestProxy(undefined, { tlsListen: `127.0.0.1:${tlsPort}`, certificateFiles: { secretsDir } })
    const material: CertificateMaterial = { name: 'grpc', fingerprint: proxyLeaf.fingerprint, pem: `${proxyLeaf.chain}${proxyLeaf.key}` }
    await proxy.engine.certificates!.set([material])
    await proxy.engine.apply({ version: 1, routes: routes(false) })
    await waitFor('every task up', async () => ((await proxy.engine.health()).every((h) => h.up >= 1) ? true : undefined), 20_000)
    client = new EchoClient(`127.0.0.1:${tlsPort}`, grpc.credentials.createSsl(Buffer.from(ca.pem)), { 'grpc.ssl_target_name_override': 'grpc.example.com', 'grpc.default_authority': 'grpc.example.com' })
  })

  after(async () => {
    client?.close()
    await proxy?.stop()
    grpcServer?.forceShutdown()
    tlsTask?.close()
    strangerTask?.close()
    await closeBackends(backends ?? [])
    if (secretsDir !== undefined) await rm(secretsDir, { recursive: true, force: true })
  })

  it('a gRPC client over HTTPS reaches a gRPC task through the proxy (HTTP/2 both ways)', async () => {
    const config = await readFile(proxy.engine.paths.config, 'utf8')
    assert.match(config, /\n {4}default-server proto h2\n/)
    assert.equal(spareKind(routes(false)[0]!), undefined, 'a route with its own backend protocol never takes a spare backend')
    const reply = await new Promise<{ text: string; authority: string | null }>((resolve, reject) =>
      client.makeUnaryRequest(service.echo!.path, json.serialize, json.deserialize as (b: Buffer) => { text: string; authority: string | null }, { text: 'hello over gRPC' }, (err, value) => (err ? reject(err) : resolve(value!))),
    )
    assert.equal(reply.text, 'hello over gRPC')
    assert.equal(reply.authority, 'grpc.example.com', 'routed by the host the client named')
  })

  it('a gRPC server stream outlives a change of another route that reloads HAProxy', async () => {
    const count = 40
    const call = client.makeServerStreamRequest(service.ticks!.path, json.serialize, json.deserialize as (b: Buffer) => Ticks, { every: 100, count })
    const seen: number[] = []
    const ended = new Promise<void>((resolve, reject) => {
      call.on('data', (t: Ticks) => seen.push(t.n))
      call.on('error', reject)
      call.on('end', resolve)
    })
    await waitFor('the stream started', async () => (seen.length >= 3 ? true : undefined), 20_000)
    const reloads = proxy.engine.counters.reloads
    await proxy.engine.apply({ version: 2, routes: routes(true) })
    assert.equal(proxy.engine.counters.reloads, reloads + 1, 'the change of the other route is a reload')
    assert.ok(seen.length < count, 'the stream was still going when HAProxy reloaded')
    await ended
    assert.deepEqual(seen, Array.from({ length: count }, (_, i) => i + 1), 'every message arrived, in order, once')
    // And a new call after the reload goes through the new worker.
    const again = await new Promise<{ text: string }>((resolve, reject) =>
      client.makeUnaryRequest(service.echo!.path, json.serialize, json.deserialize as (b: Buffer) => { text: string }, { text: 'after' }, (err, value) => (err ? reject(err) : resolve(value!))),
    )
    assert.equal(again.text, 'after')
  })

  it('TLS to a task is verified against the CA bundle from the Docker secret; another CA is refused, sslVerifyNone is not verified', async () => {
    const verified = await httpsGet({ port: tlsPort, host: 'any.example.com', path: '/verified/x' })
    assert.equal(verified.status, 200)
    assert.deepEqual(verified.body, { task: 'tlsapp', path: '/verified/x', proto: 'https' })
    const stranger = await httpsGet({ port: tlsPort, host: 'any.example.com', path: '/stranger/x' })
    assert.equal(stranger.status, 503, 'a task whose certificate is not from the bundle gets no request')
    const unverified = await httpsGet({ port: tlsPort, host: 'any.example.com', path: '/unverified/x' })
    assert.equal(unverified.status, 200)
    assert.deepEqual(unverified.body, { task: 'stranger', path: '/unverified/x', proto: 'https' })
    const config = await readFile(proxy.engine.paths.config, 'utf8')
    assert.match(config, /\n {4}default-server ssl verify required ca-file \S+\/ca-internal_ca-[0-9a-f]{16}\.pem verifyhost tlsapp alpn http\/1\.1\n/)
    assert.match(config, /\n {4}default-server ssl verify none alpn http\/1\.1\n/)
  })

  it('a route whose CA bundle is not mounted answers 503 on this proxy and is reported, the others are served', async () => {
    const missing = await httpsGet({ port: tlsPort, host: 'any.example.com', path: '/missing/x' })
    assert.equal(missing.status, 503)
    assert.match(String(missing.body), /CA bundle is missing/)
    const result = await proxy.engine.apply({ version: 3, routes: routes(true) })
    const problem = result.problems?.find((p) => p.serviceName === 'missing')
    assert.match(problem?.problem ?? '', /the Docker secret not_mounted \(backendCaSecret\) is not mounted in this proxy/)
    assert.equal(result.problems?.some((p) => p.serviceName === 'tlsapp'), false, 'the route whose bundle is there is not reported')
  })
})
