/**
 * Certificates a proxy reads from its own files, served beside the control plane's:
 * - Docker secrets in Docker Flow Proxy's convention: files named `cert-*` or `cert_*` in the
 *   secrets directory (/run/secrets), each the chain and the key as one PEM;
 * - every file of a directory (TETHER_CERT_DIR), the same format.
 * Each is checked like an upload (contracts/certificate.ts: the chain parses, the key matches,
 * valid now, a DNS name). A bad file is reported (heartbeat, /v1/status) and left out; it never
 * stops the others or the proxy. Keys stay in memory and in the 0600 files HAProxy loads;
 * messages name the file and the problem, never the content.
 */
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { CertificateProblem, parseCertificate, splitCombinedPem } from '../../contracts/certificate.ts'

export interface FileCertificate {
  /** From the file name: letters, digits, '_', '.', '-' (others become '_'). */
  name: string
  file: string
  /** Chain then key, as HAProxy loads it. */
  pem: string
  domains: string[]
  notAfter: string
  fingerprint: string
}

export interface CertificateFileProblem {
  file: string
  error: string
}

export interface CertificateFileSources {
  /** Docker secrets directory: only `cert-*` / `cert_*` files are read. Default none. */
  secretsDir?: string | undefined
  /** A directory whose every regular file is a certificate. Default none. */
  dir?: string | undefined
}

/** Files above this size are not certificates (a chain of 16 RSA-4096 certificates is ~40 KiB). */
const MAX_FILE_BYTES = 1024 * 1024
/** At most this many files per directory are read. */
const MAX_FILES = 1000

const DFP_SECRET = /^cert[-_]/

async function listFiles(dir: string, wanted: (name: string) => boolean): Promise<{ files: string[]; problem?: CertificateFileProblem }> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    // No secrets mounted at all is the ordinary case, not a problem.
    if (code === 'ENOENT') return { files: [] }
    return { files: [], problem: { file: dir, error: `cannot list the directory (${code ?? (err as Error).message})` } }
  }
  return { files: names.filter((n) => !n.startsWith('.') && wanted(n)).sort().slice(0, MAX_FILES).map((n) => join(dir, n)) }
}

/** Reads and checks every certificate file of the sources; never throws for a bad file. */
export async function readCertificateFiles(sources: CertificateFileSources, now: number = Date.now()): Promise<{ certificates: FileCertificate[]; problems: CertificateFileProblem[] }> {
  const certificates: FileCertificate[] = []
  const problems: CertificateFileProblem[] = []
  const files: string[] = []
  for (const [dir, wanted] of [
    [sources.secretsDir, (n: string) => DFP_SECRET.test(n)],
    [sources.dir, () => true],
  ] as const) {
    if (dir === undefined) continue
    const listed = await listFiles(dir, wanted)
    files.push(...listed.files)
    if (listed.problem !== undefined) problems.push(listed.problem)
  }
  const names = new Map<string, string>()
  for (const file of files) {
    try {
      const info = await stat(file)
      if (!info.isFile()) continue
      if (info.size > MAX_FILE_BYTES) throw new CertificateProblem(`larger than ${MAX_FILE_BYTES} bytes: not a certificate`)
      const parsed = parseCertificate(splitCombinedPem(await readFile(file, 'utf8')), now)
      const name = (file.slice(file.lastIndexOf('/') + 1).replace(/[^A-Za-z0-9_.-]/g, '_') || 'certificate').slice(0, 128)
      const holder = names.get(name)
      if (holder !== undefined) throw new CertificateProblem(`has the same name as ${holder}; rename one of them`)
      names.set(name, file)
      certificates.push({ name, file, pem: `${parsed.chainPem}${parsed.keyPem}`, domains: parsed.domains, notAfter: parsed.notAfter, fingerprint: parsed.fingerprint })
    } catch (err) {
      const error = err instanceof CertificateProblem ? err.message : `cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`
      problems.push({ file, error })
    }
  }
  return { certificates, problems }
}
