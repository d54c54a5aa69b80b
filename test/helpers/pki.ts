/**
 * A test PKI made in-process with @peculiar/x509 (the library Tether uses for its default
 * certificate): a CA, an intermediate, leaves for any names and validity, keys as PEM. Clients
 * in tests trust `ca.pem` only, so a passing TLS check means the proxy served our chain.
 */
import { KeyObject, webcrypto } from 'node:crypto'
import * as x509 from '@peculiar/x509'

type CryptoKeyPair = webcrypto.CryptoKeyPair
type CryptoKey = webcrypto.CryptoKey

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0])

const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }
const DAY = 86_400_000

export interface Issuer {
  cert: x509.X509Certificate
  keys: CryptoKeyPair
  pem: string
}

export interface Leaf {
  /** Leaf certificate PEM. */
  cert: string
  /** Leaf then intermediate(s), PEM. */
  chain: string
  key: string
  /** chain + key: what DFP users PUT. */
  combined: string
  fingerprint: string
}

async function keyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair
}

export async function keyPem(key: CryptoKey): Promise<string> {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }).toString()
}

let serial = 1000
const nextSerial = (): string => (serial++).toString(16).padStart(4, '0')

export async function createCa(name = 'Tether Test Root CA'): Promise<Issuer> {
  const keys = await keyPair()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: nextSerial(),
    name: `CN=${name}`,
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + 3650 * DAY),
    signingAlgorithm: alg,
    keys,
    extensions: [new x509.BasicConstraintsExtension(true, 2, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
  })
  return { cert, keys, pem: cert.toString('pem') }
}

export async function createIntermediate(ca: Issuer, name = 'Tether Test Intermediate'): Promise<Issuer> {
  const keys = await keyPair()
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: nextSerial(),
    subject: `CN=${name}`,
    issuer: ca.cert.subject,
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + 365 * DAY),
    signingAlgorithm: alg,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
  })
  return { cert, keys, pem: cert.toString('pem') }
}

export async function issue(issuer: Issuer, domains: string[], options: { notBefore?: Date; notAfter?: Date; chain?: Issuer[]; cn?: string } = {}): Promise<Leaf> {
  const keys = await keyPair()
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: nextSerial(),
    subject: `CN=${options.cn ?? domains[0] ?? 'no-name'}`,
    issuer: issuer.cert.subject,
    notBefore: options.notBefore ?? new Date(Date.now() - DAY),
    notAfter: options.notAfter ?? new Date(Date.now() + 90 * DAY),
    signingAlgorithm: alg,
    publicKey: keys.publicKey,
    signingKey: issuer.keys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      ...(domains.length > 0 ? [new x509.SubjectAlternativeNameExtension(domains.map((d) => ({ type: 'dns' as const, value: d })))] : []),
    ],
  })
  const certPem = cert.toString('pem')
  const chain = [certPem, ...(options.chain ?? [issuer]).filter((i) => i.cert.subject !== i.cert.issuer).map((i) => i.pem)].join('\n')
  const key = await keyPem(keys.privateKey)
  const fingerprint = new (await import('node:crypto')).X509Certificate(certPem).fingerprint256
  return { cert: certPem, chain: `${chain}\n`, key, combined: `${chain}\n${key}`, fingerprint }
}
