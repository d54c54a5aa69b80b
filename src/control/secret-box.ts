/**
 * Secrets at rest (certificate keys, the ACME account key): AES-256-GCM with a key read from
 * TETHER_SECRET_KEY_FILE (a Docker secret). The associated data binds a ciphertext to what it
 * belongs to (e.g. 'certificate:example.com'), so a stored key cannot be swapped onto another
 * certificate. The box text says which key sealed it (the first bytes of its SHA-256), so a
 * replica with another key answers "sealed with another key" instead of garbage.
 *
 *   box = 'v1:' + keyId(8 hex) + ':' + base64url(iv(12) | tag(16) | ciphertext)
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'

export interface SecretBox {
  /** 8 hex characters naming the key (not secret: a hash prefix). */
  readonly keyId: string
  /** True when the key was generated at start (nothing survives a restart). */
  readonly ephemeral: boolean
  seal(plaintext: string, associatedData: string): string
  /** Throws SecretBoxError when the box is malformed, sealed with another key, or tampered with. */
  open(box: string, associatedData: string): string
}

export class SecretBoxError extends Error {
  override name = 'SecretBoxError'
}

/**
 * The key file holds 32 bytes: raw, or written as 64 hex characters or as base64 (what
 * `openssl rand -hex 32` / `openssl rand -base64 32` print). Anything else is refused.
 */
export function parseSecretKey(content: Buffer): Buffer {
  if (content.length === 32) return content
  const text = content.toString('utf8').trim()
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex')
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(text)) {
    const bytes = Buffer.from(text, 'base64')
    if (bytes.length === 32) return bytes
  }
  throw new SecretBoxError('must hold a 32-byte key: 32 raw bytes, 64 hex characters (openssl rand -hex 32) or base64 (openssl rand -base64 32)')
}

export function createSecretBox(key: Buffer, options: { ephemeral?: boolean } = {}): SecretBox {
  if (key.length !== 32) throw new SecretBoxError('the secret key must be 32 bytes')
  const keyId = createHash('sha256').update(key).digest('hex').slice(0, 8)
  return {
    keyId,
    ephemeral: options.ephemeral ?? false,
    seal(plaintext, associatedData) {
      const iv = randomBytes(12)
      const cipher = createCipheriv('aes-256-gcm', key, iv)
      cipher.setAAD(Buffer.from(associatedData, 'utf8'))
      const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
      return `v1:${keyId}:${Buffer.concat([iv, cipher.getAuthTag(), ciphertext]).toString('base64url')}`
    },
    open(box, associatedData) {
      const m = /^v1:([0-9a-f]{8}):([A-Za-z0-9_-]+)$/.exec(box)
      if (m === null) throw new SecretBoxError('not a sealed secret')
      if (m[1] !== keyId) throw new SecretBoxError(`sealed with another secret key (key id ${m[1]}, this replica has ${keyId}): every control replica needs the same TETHER_SECRET_KEY_FILE`)
      const bytes = Buffer.from(m[2] as string, 'base64url')
      if (bytes.length < 28) throw new SecretBoxError('sealed secret is truncated')
      const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, 12))
      decipher.setAAD(Buffer.from(associatedData, 'utf8'))
      decipher.setAuthTag(bytes.subarray(12, 28))
      try {
        return Buffer.concat([decipher.update(bytes.subarray(28)), decipher.final()]).toString('utf8')
      } catch {
        throw new SecretBoxError('sealed secret does not authenticate (tampered with, or sealed for something else)')
      }
    },
  }
}

/** A box with a random key: for the embedded in-memory store, whose data dies with the process anyway. */
export function createEphemeralSecretBox(): SecretBox {
  return createSecretBox(randomBytes(32), { ephemeral: true })
}
