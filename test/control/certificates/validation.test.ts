/**
 * The pure checks of a certificate upload (contracts/certificate.ts) and the key sealing
 * (control/secret-box.ts), table-driven, on certificates made by a real (test) CA.
 */
import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import { certificateWarnings, CertificateProblem, parseCertificate, splitCombinedPem } from '../../../src/contracts/certificate.ts'
import { createSecretBox, parseSecretKey, SecretBoxError } from '../../../src/control/secret-box.ts'
import { createCa, createIntermediate, issue, type Issuer, type Leaf } from '../../helpers/pki.ts'

const DAY = 86_400_000
let ca: Issuer
let intermediate: Issuer
let good: Leaf
let other: Leaf

before(async () => {
  ca = await createCa()
  intermediate = await createIntermediate(ca)
  good = await issue(intermediate, ['app.example.com', '*.api.example.com'])
  other = await issue(intermediate, ['other.example.com'])
})

describe('parseCertificate', () => {
  it('answers the SAN domains, issuer, expiry, fingerprint and a normalised chain + PKCS#8 key', () => {
    const parsed = parseCertificate({ certificate: good.chain, key: good.key })
    assert.deepEqual(parsed.domains, ['*.api.example.com', 'app.example.com'])
    assert.equal(parsed.subject, 'CN=app.example.com')
    assert.equal(parsed.issuer, 'CN=Tether Test Intermediate')
    assert.equal(parsed.fingerprint, good.fingerprint)
    assert.equal(parsed.chainLength, 2)
    assert.match(parsed.keyPem, /^-----BEGIN PRIVATE KEY-----/)
    assert.equal((parsed.chainPem.match(/BEGIN CERTIFICATE/g) ?? []).length, 2)
    assert.deepEqual(parsed.warnings, [])
  })

  it('splits a combined PEM whatever the order of key and chain (as DFP users concatenate them)', () => {
    const split = splitCombinedPem(`${good.key}\n${good.chain}`)
    assert.equal(parseCertificate(split).fingerprint, good.fingerprint)
  })

  it('refuses, naming the problem:', async () => {
    const expired = await issue(intermediate, ['old.example.com'], { notBefore: new Date(Date.now() - 100 * DAY), notAfter: new Date(Date.now() - DAY) })
    const future = await issue(intermediate, ['new.example.com'], { notBefore: new Date(Date.now() + 10 * DAY) })
    const noSan = await issue(intermediate, [], { cn: 'legacy.example.com' })
    const otherCa = await createCa('Another CA')
    const strangerIntermediate = await createIntermediate(otherCa, 'Stranger Intermediate')
    const cases: Array<[string, { certificate: string; key: string }, RegExp]> = [
      ['a key of another certificate', { certificate: good.chain, key: other.key }, /^key: does not match the certificate \(CN=app\.example\.com\)/],
      ['an expired certificate', { certificate: expired.chain, key: expired.key }, /^certificate: expired on 20/],
      ['a certificate not valid yet', { certificate: future.chain, key: future.key }, /^certificate: not valid before 20/],
      ['no DNS name in subjectAltName', { certificate: noSan.chain, key: noSan.key }, /^certificate: names no DNS name in subjectAltName/],
      ['no certificate block', { certificate: 'hello', key: good.key }, /^certificate: no PEM certificate block/],
      ['a block that is not X.509', { certificate: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----', key: good.key }, /^certificate: block 1 of the chain does not parse as X\.509/],
      ['a key that does not parse', { certificate: good.chain, key: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----' }, /^key: does not parse as a PEM private key/],
      ['a chain in the wrong order', { certificate: `${good.cert}\n${ca.pem}\n${intermediate.pem}`, key: good.key }, /^certificate: block 2 of the chain did not issue block 1/],
      ['an intermediate that did not issue the leaf', { certificate: `${good.cert}\n${strangerIntermediate.pem}`, key: good.key }, /^certificate: block 2 of the chain did not issue block 1/],
      ['an encrypted key', { certificate: good.chain, key: '-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----' }, /^key: the private key is encrypted with a passphrase/],
    ]
    for (const [what, input, expected] of cases) {
      assert.throws(() => parseCertificate(input), (err: Error) => err instanceof CertificateProblem && expected.test(err.message), what)
    }
    assert.throws(() => splitCombinedPem(good.chain), /^CertificateProblem: key: no PEM private key block/)
    assert.throws(() => splitCombinedPem(`${good.chain}${good.key}${other.key}`), /key: 2 private keys found/)
  })

  it('accepts a certificate expiring soon, with a warning; and warns about a chain without its intermediate', async () => {
    const soon = await issue(intermediate, ['soon.example.com'], { notAfter: new Date(Date.now() + 3 * DAY + 3_600_000) })
    assert.deepEqual(parseCertificate({ certificate: soon.chain, key: soon.key }).warnings.map((w) => w.replace(/on .*/, 'on …')), ['expires in 3 day(s), on …'])
    const leafOnly = parseCertificate({ certificate: good.cert, key: good.key })
    assert.equal(leafOnly.chainLength, 1)
    assert.match(leafOnly.warnings.join(), /the chain holds only the leaf/)
  })

  it('recomputes warnings at read time: a stored certificate that expired says so', () => {
    const t0 = Date.parse('2026-01-01T00:00:00.000Z')
    const facts = { notAfter: new Date(t0 + 30 * DAY).toISOString(), chainLength: 2, subject: 'CN=a', issuer: 'CN=b' }
    assert.deepEqual(certificateWarnings(facts, t0), [])
    assert.deepEqual(certificateWarnings(facts, t0 + 20 * DAY + 1), ['expires in 9 day(s), on 2026-01-31T00:00:00.000Z'])
    assert.deepEqual(certificateWarnings(facts, t0 + 31 * DAY), ['expired on 2026-01-31T00:00:00.000Z: clients refuse it; replace it'])
  })
})

describe('secret box (AES-256-GCM)', () => {
  const key = Buffer.alloc(32, 7)
  it('seals and opens; the box does not contain the plaintext', () => {
    const box = createSecretBox(key)
    const sealed = box.seal(good.key, 'certificate:a')
    assert.ok(!sealed.includes('PRIVATE KEY'))
    assert.notEqual(sealed, box.seal(good.key, 'certificate:a'), 'a fresh IV each time')
    assert.equal(box.open(sealed, 'certificate:a'), good.key)
  })

  it('refuses a box opened for another name, sealed with another key, or tampered with', () => {
    const box = createSecretBox(key)
    const sealed = box.seal('secret', 'certificate:a')
    assert.throws(() => box.open(sealed, 'certificate:b'), (e: Error) => e instanceof SecretBoxError && /does not authenticate/.test(e.message))
    assert.throws(() => createSecretBox(Buffer.alloc(32, 8)).open(sealed, 'certificate:a'), /sealed with another secret key \(key id [0-9a-f]{8}, this replica has [0-9a-f]{8}\)/)
    const tampered = `${sealed.slice(0, -2)}${sealed.endsWith('A') ? 'B' : 'A'}${sealed.slice(-1)}`
    assert.throws(() => box.open(tampered, 'certificate:a'), /does not authenticate/)
  })

  it('reads the key file as raw bytes, hex or base64, and refuses anything else', () => {
    assert.deepEqual(parseSecretKey(key), key)
    assert.deepEqual(parseSecretKey(Buffer.from(`${key.toString('hex')}\n`)), key)
    assert.deepEqual(parseSecretKey(Buffer.from(`${key.toString('base64')}\n`)), key)
    for (const bad of ['short', 'ab'.repeat(31), '']) assert.throws(() => parseSecretKey(Buffer.from(bad)), /must hold a 32-byte key/)
  })
})
