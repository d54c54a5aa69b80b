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
    const m = /^(\d+)\s+(\S+)\s+(\d+)(?:\s+\[failed:\s*(\d+)\])?/.exec(line)
    if (m === null) continue
    const entry = { pid: Number(m[1]), type: m[2] ?? '', reloads: Number(m[3]) }
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
