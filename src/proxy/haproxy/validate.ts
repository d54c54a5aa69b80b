/**
 * `haproxy -c`: HAProxy's own verdict on a configuration, with every error it reports mapped to
 * the file and line it names, so the engine can trace a refused line back to its route.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** One error `haproxy -c` reported (HAProxy's configuration check; not the environment, not the config snapshot). */
export interface CheckFinding {
  /** File HAProxy named, as it named it (the path given with -f, or a map file). */
  file: string | null
  /** 1-based line in `file`, when HAProxy gave one. */
  line: number | null
  /** The message, without HAProxy's "[ALERT] (pid) : config :" prefix. */
  message: string
}

export interface CheckResult {
  ok: boolean
  errors: CheckFinding[]
  /** HAProxy's whole output (stdout + stderr), for logs. */
  output: string
}

const alertPattern = /^\[ALERT\]\s*\(\d+\)\s*:\s*(?:config\s*:\s*)?(.*)$/
const locationPattern = /\[([^\]]+?):(\d+)\]/

/** Parses `haproxy -c` output into errors (ALERT lines; the final "fatal errors" summary lines are dropped). */
export function parseCheckOutput(output: string): CheckFinding[] {
  const errors: CheckFinding[] = []
  for (const raw of output.split('\n')) {
    const m = alertPattern.exec(raw.trim())
    if (m === null) continue
    const message = (m[1] ?? '').trim()
    if (/^(Error\(s\) found in configuration file|Fatal errors found in configuration|Failed to initialize server\(s\) addr)/.test(message)) continue
    const loc = locationPattern.exec(message)
    errors.push({ file: loc?.[1] ?? null, line: loc?.[2] === undefined ? null : Number(loc[2]), message })
  }
  return errors
}

/** Runs `haproxy -c -f <path>`. Rejects only when HAProxy itself cannot be run. */
export function checkConfigFile(path: string, haproxyBin = 'haproxy', timeoutMs = 60_000): Promise<CheckResult> {
  return new Promise((resolve, reject) => {
    execFile(haproxyBin, ['-c', '-f', path], { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const output = `${stdout}${stderr}`
      if (err === null) return resolve({ ok: true, errors: [], output })
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT' || code === 'EACCES') return reject(err)
      if (err.killed) return reject(new Error(`haproxy -c timed out after ${timeoutMs} ms`))
      const errors = parseCheckOutput(output)
      resolve({ ok: false, errors: errors.length > 0 ? errors : [{ file: null, line: null, message: output.trim() || err.message }], output })
    })
  })
}

/**
 * Checks configuration text by writing it to a temporary file. Files it refers to (map files)
 * must already exist where it says. Error `file` fields then name the temporary file; compare
 * lines, not names.
 */
export async function checkConfig(text: string, haproxyBin = 'haproxy'): Promise<CheckResult> {
  const dir = await mkdtemp(join(tmpdir(), 'tether-check-'))
  try {
    const path = join(dir, 'haproxy.cfg')
    await writeFile(path, text)
    return await checkConfigFile(path, haproxyBin)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
