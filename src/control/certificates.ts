/**
 * Certificates between the API and the store: validate (contracts/certificate.ts), seal the key
 * (secret-box.ts), store; and the reverse for proxies: open every key into the PEM HAProxy
 * loads. A key is never logged, never in an answer other than the proxies' bundle, never in a
 * change log. Used by the API, the Docker Flow Proxy form and the ACME orderer.
 */
import { certificateWarnings, CertificateProblem, parseCertificate, splitCombinedPem, type CertificateInfo, type CertificateMaterial } from '../contracts/certificate.ts'
import { CertificateInvalidError, SecretKeyMissingError } from './errors.ts'
import type { SecretBox } from './secret-box.ts'
import type { CertificateMeta, CertificatePutResult, CertificateStore, StoredCertificate } from './store/certificate-store.ts'

export interface CertificateInput {
  certificate: string
  key: string
}

export interface CertificateService {
  /** True when keys can be sealed (a secret key is configured, or the store is the embedded one). */
  readonly enabled: boolean
  /** Validates and stores; throws CERTIFICATE_INVALID (400) naming the problem, nothing stored. */
  put(name: string, input: CertificateInput | string, meta: CertificateMeta): Promise<CertificatePutResult & { warnings: string[] }>
  /** The public facts with warnings as of now. */
  describe(stored: StoredCertificate): CertificateInfo
  /** Every certificate as proxies load it (chain + key), and the ones whose key cannot be opened. */
  bundle(): Promise<{ certificates: CertificateMaterial[]; problems: Array<{ name: string; error: string }> }>  /**
   * The key of a sealed box this control plane can open (a backup's keyBox), for `put`.
   * Throws SecretBoxError (sealed with another key, tampered, not for `name`), SECRET_KEY_MISSING without a key.
   */
  openKey(name: string, keyBox: string): string
}

/** What the key is bound to in its sealed box (a key cannot be moved onto another name). */
export const keyContext = (name: string): string => `certificate:${name}`

export function createCertificateService(options: { store: CertificateStore; box: SecretBox | null; now?: () => number }): CertificateService {
  const { store, box } = options
  const now = options.now ?? Date.now
  const requireBox = (): SecretBox => {
    if (box === null) throw new SecretKeyMissingError('Certificates need TETHER_SECRET_KEY_FILE (the same 32-byte key on every control replica) so that private keys are encrypted in Redis; nothing was stored')
    return box
  }
  return {
    enabled: box !== null,
    async put(name, input, meta) {
      const sealer = requireBox()
      let parsed
      try {
        parsed = parseCertificate(typeof input === 'string' ? splitCombinedPem(input) : input, now())
      } catch (err) {
        if (err instanceof CertificateProblem) throw new CertificateInvalidError(`${err.message}; nothing was stored`)
        throw err
      }
      const result = await store.putCertificate(
        {
          facts: {
            name,
            domains: parsed.domains,
            subject: parsed.subject,
            issuer: parsed.issuer,
            notBefore: parsed.notBefore,
            notAfter: parsed.notAfter,
            fingerprint: parsed.fingerprint,
            chainLength: parsed.chainLength,
            warnings: [],
          },
          chainPem: parsed.chainPem,
          keyBox: sealer.seal(parsed.keyPem, keyContext(name)),
        },
        meta,
      )
      const info = { ...result.info, warnings: certificateWarnings(result.info, now()) }
      return { ...result, info, warnings: info.warnings }
    },
    describe(stored) {
      return { ...stored.info, warnings: certificateWarnings(stored.info, now()) }
    },
    openKey(name, keyBox) {
      return requireBox().open(keyBox, keyContext(name))
    },
    async bundle() {
      const certificates: CertificateMaterial[] = []
      const problems: Array<{ name: string; error: string }> = []
      for (const c of await store.listCertificates()) {
        try {
          const key = requireBox().open(c.keyBox, keyContext(c.info.name))
          certificates.push({ name: c.info.name, fingerprint: c.info.fingerprint, pem: `${c.chainPem}${c.chainPem.endsWith('\n') ? '' : '\n'}${key}` })
        } catch (err) {
          problems.push({ name: c.info.name, error: `the key cannot be opened: ${(err as Error).message}` })
        }
      }
      return { certificates, problems }
    },
  }
}
