/**
 * HAProxy's CLIs over their unix sockets: the runtime API of the worker (`stats socket`,
 * admin level) and the master CLI (`-S`). One command per connection (non-interactive mode:
 * HAProxy answers and closes).
 */
import { createConnection } from 'node:net'

/** Sends one command and returns the whole answer. Rejects on socket errors or after timeoutMs. */
export function sendCommand(socketPath: string, command: string, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const socket = createConnection(socketPath)
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`HAProxy socket ${socketPath}: no answer to '${command}' within ${timeoutMs} ms`))
    }, timeoutMs)
    timer.unref()
    socket.on('connect', () => socket.end(`${command}\n`))
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    socket.on('close', (hadError) => {
      clearTimeout(timer)
      if (!hadError) resolve(Buffer.concat(chunks).toString('utf8'))
    })
  })
}

export interface StatRow {
  /** Proxy (frontend/backend) name. */
  pxname: string
  /** Server name, or FRONTEND / BACKEND. */
  svname: string
  /** e.g. UP, DOWN, 'UP 1/2', 'MAINT (resolution)', 'no check'. */
  status: string
  /** Server address, when known. */
  addr: string
  [field: string]: string
}

/** `show stat`, parsed from its CSV. */
export async function showStat(adminSocket: string): Promise<StatRow[]> {
  const text = await sendCommand(adminSocket, 'show stat')
  const lines = text.split('\n').filter((l) => l.length > 0)
  const header = lines.shift()
  if (header === undefined || !header.startsWith('# ')) throw new Error(`unexpected 'show stat' answer: ${text.slice(0, 200)}`)
  const names = header.slice(2).split(',')
  return lines.map((line) => {
    const values = line.split(',')
    const row: Record<string, string> = {}
    names.forEach((name, i) => {
      if (name !== '') row[name] = values[i] ?? ''
    })
    return { pxname: '', svname: '', status: '', addr: '', ...row } as StatRow
  })
}

/** `show servers state`: the server-state-file format, ready to be written as is. */
export async function showServersState(adminSocket: string): Promise<string> {
  const text = await sendCommand(adminSocket, 'show servers state', 30_000)
  if (!/^\d+\n/.test(text)) throw new Error(`unexpected 'show servers state' answer: ${text.slice(0, 200)}`)
  return text
}

export interface ProcEntry {
  pid: number
  type: 'master' | 'worker' | string
  /** Reloads this process has survived (0 for the current worker). */
  reloads: number
  /** Seconds since the process started (`show proc`'s uptime), when given. */
  uptimeSeconds?: number
}

export interface ProcInfo {
  master: ProcEntry & { failedReloads: number }
  /** Current workers (normally one). */
  workers: ProcEntry[]
  /** Old workers still draining after a reload. */
  oldWorkers: ProcEntry[]
}

/**
 * Parses the master CLI's `show proc`:
 *   #<PID>  <type>  <reloads>  <uptime>  <version>
 *   1234    master  3 [failed: 0]  0d00h01m  2.6.12
 *   # workers
 *   1240    worker  0  ...
 *   # old workers
 *   1238    worker  1  ...
 */
export function parseShowProc(text: string): ProcInfo {
  let section: 'head' | 'workers' | 'old' | 'other' = 'head'
  let master: ProcInfo['master'] | undefined
  const workers: ProcEntry[] = []
  const oldWorkers: ProcEntry[] = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '') continue
    if (line.startsWith('#')) {
      if (/^# workers/.test(line)) section = 'workers'
      else if (/^# old workers/.test(line)) section = 'old'
      else if (!line.startsWith('#<PID>')) section = 'other'
      continue
    }
    const m = /^(\d+)\s+(\S+)\s+(\d+)(?:\s+\[failed:\s*(\d+)\])?(?:\s+(\d+)d(\d+)h(\d+)m(\d+)s)?/.exec(line)
    if (m === null) continue
    const entry: ProcEntry = { pid: Number(m[1]), type: m[2] ?? '', reloads: Number(m[3]) }
    if (m[5] !== undefined) entry.uptimeSeconds = ((Number(m[5]) * 24 + Number(m[6])) * 60 + Number(m[7])) * 60 + Number(m[8])
    if (entry.type === 'master') master = { ...entry, failedReloads: Number(m[4] ?? 0) }
    else if (section === 'workers') workers.push(entry)
    else if (section === 'old') oldWorkers.push(entry)
  }
  if (master === undefined) throw new Error(`unexpected 'show proc' answer: ${text.slice(0, 200)}`)
  return { master, workers, oldWorkers }
}

export async function showProc(masterSocket: string): Promise<ProcInfo> {
  return parseShowProc(await sendCommand(masterSocket, 'show proc'))
}

/**
 * Asks the master to reload. The master re-executes itself, so the connection may close
 * without an answer; the caller verifies the outcome with showProc().
 */
export async function requestReload(masterSocket: string): Promise<void> {
  await sendCommand(masterSocket, 'reload', 10_000).catch((err: NodeJS.ErrnoException) => {
    // The master closing the socket under us while re-executing is the normal case.
    if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') throw err
  })
}

/** Answers of the runtime API that mean success (anything else is HAProxy saying what went wrong). */
const SUCCESS = /^(?:New server registered\.|Server deleted\.|)$/

/**
 * Sends commands as one `;`-separated line (one connection, applied in order) and rejects with
 * HAProxy's own words when any of them was refused. Commands must not contain ';' or newlines.
 */
export async function runCommands(adminSocket: string, commands: readonly string[], timeoutMs = 10_000): Promise<void> {
  if (commands.length === 0) return
  for (const c of commands) if (/[;\n]/.test(c)) throw new Error(`refusing to send a runtime command with ';' or a newline: ${c}`)
  const answer = await sendCommand(adminSocket, commands.join('; '), timeoutMs)
  const complaints = answer
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => !SUCCESS.test(l))
  if (complaints.length > 0) throw new Error(`HAProxy refused '${commands.join('; ')}': ${complaints.join(' ')}`)
}

/** `show servers conn <backend>`: connections in use and idle per server (a server with none may be deleted). */
export async function serverConnections(adminSocket: string, backend: string): Promise<Map<string, { used: number; idle: number }>> {
  const text = await sendCommand(adminSocket, `show servers conn ${backend}`)
  const out = new Map<string, { used: number; idle: number }>()
  const lines = text.split('\n')
  const header = lines.find((l) => l.startsWith('# '))?.slice(2).split(/\s+/) ?? []
  const used = header.indexOf('used_cur')
  const idle = header.indexOf('idle_cur')
  for (const line of lines) {
    if (line.startsWith('#') || line.trim() === '') continue
    const fields = line.trim().split(/\s+/)
    const server = fields[0]?.split('/')[1]
    if (server === undefined) continue
    out.set(server, { used: Number(fields[used] ?? 0) || 0, idle: Number(fields[idle] ?? 0) || 0 })
  }
  return out
}

/**
 * One command of HAProxy 2.6's SSL certificate API (`new|set|commit|abort|del ssl cert`,
 * `add|del ssl crt-list`), optionally with a payload (`set ssl cert <file> <<` + PEM). Resolves
 * when the answer matches `expect`; rejects with HAProxy's words otherwise. The payload holds a
 * private key: it is never part of an error message (only `line` is).
 */
export async function sslCommand(adminSocket: string, line: string, expect: RegExp, payload?: string, timeoutMs = 10_000): Promise<void> {
  if (/[;\n]/.test(line)) throw new Error(`refusing to send a runtime command with ';' or a newline: ${line}`)
  if (payload !== undefined && /\n\n/.test(payload)) throw new Error(`refusing a payload with an empty line (it would end it early) for '${line}'`)
  let answer: string
  try {
    answer = await sendCommand(adminSocket, payload === undefined ? line : `${line} <<\n${payload.endsWith('\n') ? payload : `${payload}\n`}`, timeoutMs)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new Error(`HAProxy socket ${adminSocket}: '${line}' failed (${code ?? 'no answer in time'})`)
  }
  if (!expect.test(answer)) throw new Error(`HAProxy refused '${line}': ${answer.trim().replace(/\s+/g, ' ').slice(0, 500)}`)
}
