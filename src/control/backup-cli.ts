/**
 * `tether backup > table.json` and `tether restore < table.json`: the table through the API of a
 * running control plane (GET / PUT /v1/backup).
 *
 *   TETHER_URL          the control plane (default http://127.0.0.1:8080)
 *   TETHER_API_TOKEN    an API token, or TETHER_API_TOKEN_FILE naming a file that holds it
 *
 * The token is sent as a header and never printed. Exit 0 on success; 1 with the control
 * plane's answer (status, code, message) or the connection error on standard error; 64 on a
 * usage error.
 */
import { readFileSync } from 'node:fs'
import { Type } from 'typebox'
import { EnvError, loadEnv } from '../shared/env.ts'

/** The environment of `tether backup` and `tether restore`. */
export const BackupCliEnvSchema = Type.Object({
  TETHER_URL: Type.String({ default: 'http://127.0.0.1:8080', pattern: '^https?://', description: 'The control plane to back up from or restore to (http:// or https://, no user or password in it).' }),
  TETHER_API_TOKEN: Type.Optional(Type.String({ description: 'An API token of that control plane (sent as a header, never printed).' })),
  TETHER_API_TOKEN_FILE: Type.Optional(Type.String({ minLength: 1, description: 'File holding the API token; read instead of TETHER_API_TOKEN when set.' })),
})

function fail(message: string, code = 1): never {
  process.stderr.write(`tether ${process.argv[2]}: ${message}\n`)
  process.exit(code)
}

function settings(): { base: URL; token: string } {
  let e
  try {
    e = loadEnv(BackupCliEnvSchema, process.env, { secret: ['TETHER_API_TOKEN', 'TETHER_URL'] })
  } catch (err) {
    if (err instanceof EnvError) return fail(err.message, 64)
    throw err
  }
  let base: URL
  try {
    base = new URL(e.TETHER_URL)
  } catch {
    return fail(`TETHER_URL: ${JSON.stringify(e.TETHER_URL.slice(0, 200))} is not a URL (e.g. http://127.0.0.1:8080)`, 64)
  }
  if (base.username !== '' || base.password !== '') fail('TETHER_URL: must not hold a user or password; give the token in TETHER_API_TOKEN or TETHER_API_TOKEN_FILE', 64)
  const file = e.TETHER_API_TOKEN_FILE
  let token = e.TETHER_API_TOKEN
  if (file !== undefined) {
    try {
      token = readFileSync(file, 'utf8').trim()
    } catch (err) {
      fail(`TETHER_API_TOKEN_FILE: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, 64)
    }
  }
  if (token === undefined || token === '') fail('TETHER_API_TOKEN (or TETHER_API_TOKEN_FILE) is required: an API token of the control plane', 64)
  return { base, token }
}

async function call(method: 'GET' | 'PUT', body?: string): Promise<string> {
  const { base, token } = settings()
  const url = new URL('/v1/backup', base)
  let res: Response
  try {
    res = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body }),
    })
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause
    return fail(`${method} ${url.href}: ${cause?.code ?? cause?.message ?? (err as Error).message}`)
  }
  const text = await res.text()
  if (!res.ok) {
    let detail = text.slice(0, 2000)
    try {
      const e = JSON.parse(text) as { code?: string; message?: string }
      detail = `${e.code ?? ''} ${e.message ?? ''}`.trim()
    } catch {
      // not JSON: the text as is
    }
    fail(`${method} ${url.href}: ${res.status} ${detail}`)
  }
  return text
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

export async function main(): Promise<void> {
  if (process.argv[2] === 'backup') {
    process.stdout.write(`${await call('GET')}\n`)
    return
  }
  const input = await readStdin()
  if (input.trim() === '') fail('standard input is empty: give the document, e.g. tether restore < table.json', 64)
  const answer = JSON.parse(await call('PUT', input)) as { version: number; changed: boolean; routes: { put: string[]; removed: string[]; unchanged: number }; certificates: { stored: string[]; unchanged: number } }
  process.stdout.write(`${JSON.stringify(answer)}\n`)
  process.stderr.write(
    answer.changed
      ? `restored: version ${answer.version}; routes ${answer.routes.put.length} put, ${answer.routes.removed.length} removed, ${answer.routes.unchanged} unchanged; certificates ${answer.certificates.stored.length} stored, ${answer.certificates.unchanged} unchanged\n`
      : `nothing to change: the table already equals the document (version ${answer.version})\n`,
  )
}
