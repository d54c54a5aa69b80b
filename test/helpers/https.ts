/**
 * HTTPS client for tests (node:https / node:tls): connects to a loopback port with a chosen SNI
 * name, trusts only the test CA (or nothing, to look at the default certificate), and reports
 * which certificate the server presented, the negotiated protocol and ALPN.
 */
import { request } from 'node:https'
import { connect, type PeerCertificate } from 'node:tls'

export interface HttpsReply {
  status: number
  headers: Record<string, string | string[] | undefined>
  // biome-ignore lint/suspicious/noExplicitAny: a JSON answer, asserted field by field
  body: any
  setCookies: string[]
  /** The leaf certificate the server presented. */
  peer: PeerCertificate
}

export interface HttpsOptions {
  port: number
  /** SNI name and Host header. */
  host: string
  path?: string
  /** PEM of the CA to trust; absent: accept any certificate (and still report it). */
  ca?: string
  headers?: Record<string, string>
  method?: string
  /** Address to connect to. Default 127.0.0.1. */
  address?: string
}

export function httpsGet(options: HttpsOptions): Promise<HttpsReply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: options.address ?? '127.0.0.1',
        port: options.port,
        path: options.path ?? '/',
        method: options.method ?? 'GET',
        servername: options.host,
        headers: { host: options.host, connection: 'close', ...options.headers },
        agent: false,
        ...(options.ca === undefined ? { rejectUnauthorized: false } : { ca: options.ca }),
        timeout: 10_000,
      },
      (res) => {
        const peer = (res.socket as import('node:tls').TLSSocket).getPeerCertificate()
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let body: unknown = text
          try {
            body = JSON.parse(text)
          } catch {
            /* text */
          }
          const raw = res.headers['set-cookie']
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, setCookies: raw ?? [], peer })
        })
      },
    )
    req.on('timeout', () => req.destroy(new Error('HTTPS request timed out')))
    req.on('error', reject)
    req.end()
  })
}

/** A bare TLS handshake: the certificate, protocol and ALPN the server chose. */
export function handshake(options: { port: number; servername?: string; alpn?: string[]; maxVersion?: 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3'; minVersion?: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2'; ciphers?: string }): Promise<{ peer: PeerCertificate; protocol: string | null; alpn: string | false | null }> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: '127.0.0.1',
      port: options.port,
      rejectUnauthorized: false,
      ...(options.servername === undefined ? {} : { servername: options.servername }),
      ...(options.alpn === undefined ? {} : { ALPNProtocols: options.alpn }),
      ...(options.maxVersion === undefined ? {} : { maxVersion: options.maxVersion }),
      ...(options.minVersion === undefined ? {} : { minVersion: options.minVersion }),
      ...(options.ciphers === undefined ? {} : { ciphers: options.ciphers }),
    })
    socket.setTimeout(10_000, () => socket.destroy(new Error('TLS handshake timed out')))
    socket.once('secureConnect', () => {
      const result = { peer: socket.getPeerCertificate(), protocol: socket.getProtocol(), alpn: socket.alpnProtocol }
      socket.end()
      resolve(result)
    })
    socket.once('error', reject)
  })
}
