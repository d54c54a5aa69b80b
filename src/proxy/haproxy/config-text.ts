/**
 * The rendered configuration as sections, so that the engine can work on parts of it at 10,000
 * routes instead of the whole 2-3 MB text. Pure.
 *
 * - Runtime server changes (`add server`, `del server`) are written back into the file by
 *   replacing one backend's server lines (withServers) and joining the sections again: no
 *   render of the table, so a task change costs the same with 10 routes or 10,000.
 * - A structural change is checked with `haproxy -c` on a partial configuration (checkConfigOf):
 *   every section but the backends, plus only the backends that are new or differ from the
 *   configuration HAProxy already accepted; a backend left out but named by a `use_backend` or
 *   `default_backend` line stays without its server lines so references still resolve (with
 *   their mode and settings). HAProxy checks
 *   each backend on its own (the cross-references are names, userlists and map files, all kept),
 *   so a backend it accepted before, unchanged, is accepted again; the reload still parses the
 *   whole file, and a reload refused after a partial check is followed by a full check.
 *
 * Sections are found the way HAProxy reads them: a non-empty line that does not start with
 * white space opens a section (`global`, `defaults`, `frontend x`, `backend x`, `userlist x`...);
 * blank and indented lines belong to the section above.
 */

export interface Section {
  /** The keyword that opened it: global, defaults, frontend, backend, userlist, ... ('' before any: comments). */
  kind: string
  /** The section's name (the word after the keyword), '' when none. */
  name: string
  /** Index of the section's first line in the configuration (0-based). */
  start: number
  /** Lines before the server lines, each with its '\n'. */
  before: string
  /** The `server` lines, each with its '\n' ('' when none). */
  servers: string
  /** Lines after the server lines (trailing blank lines), each with its '\n'. */
  after: string
  /** How many lines the section had when it was parsed (for owners). */
  lines: number
}

export interface ConfigText {
  sections: Section[]
  /** Backend sections by name. */
  backends: Map<string, Section>
}

const SERVER_PREFIX = '    server '
const SPACE = 32
const TAB = 9
const HASH = 35
const NEWLINE = 10

/** Splits configuration text (as render() gives it, ending with '\n') into sections. Scans the text once, without splitting it into lines. */
export function parseConfigText(config: string): ConfigText {
  const text = config.endsWith('\n') || config === '' ? config : `${config}\n`
  const sections: Section[] = []
  const backends = new Map<string, Section>()
  /** Opens a section: a non-empty line that starts with neither white space nor '#'. */
  const opens = (at: number): boolean => {
    const c = text.charCodeAt(at)
    return c !== NEWLINE && c !== SPACE && c !== TAB && c !== HASH && !Number.isNaN(c)
  }
  let pos = 0
  let lineNo = 0
  while (pos < text.length) {
    const start = pos
    const startLine = lineNo
    let kind = ''
    let name = ''
    const lineEnd = (at: number): number => {
      const nl = text.indexOf('\n', at)
      return nl < 0 ? text.length : nl + 1
    }
    if (opens(pos)) {
      const end = lineEnd(pos)
      const words = text.slice(pos, end).trim().split(/\s+/)
      kind = words[0] ?? ''
      name = words[1] ?? ''
      pos = end
      lineNo++
    }
    // Server lines (first run of them), and the end of the last line that is not blank.
    let serversFrom = -1
    let serversTo = -1
    let lastFilled = pos
    while (pos < text.length && !(opens(pos) && pos !== start)) {
      const end = lineEnd(pos)
      if (text.startsWith(SERVER_PREFIX, pos)) {
        if (serversFrom < 0) serversFrom = pos
        if (serversTo < 0 || serversTo === pos) serversTo = end
      }
      // Blank lines are empty as render() writes them.
      if (end - pos > 1) lastFilled = end
      pos = end
      lineNo++
    }
    if (pos === start) {
      // A lone comment line before any section.
      pos = lineEnd(pos)
      lineNo++
    }
    let before: string
    let servers: string
    let after: string
    if (serversFrom >= 0) {
      before = text.slice(start, serversFrom)
      servers = text.slice(serversFrom, serversTo)
      after = text.slice(serversTo, pos)
    } else {
      // No server yet: they go after the last line that is not blank.
      const cut = Math.max(lastFilled, start === pos ? pos : lineEnd(start))
      before = text.slice(start, Math.min(cut, pos))
      servers = ''
      after = text.slice(Math.min(cut, pos), pos)
    }
    const section: Section = { kind, name, start: startLine, before, servers, after, lines: lineNo - startLine }
    sections.push(section)
    if (kind === 'backend' && name !== '') backends.set(name, section)
  }
  return { sections, backends }
}

/** The configuration text again, with the server lines as they are now. */
export function configTextOf(config: ConfigText): string {
  let out = ''
  for (const s of config.sections) out += s.before + s.servers + s.after
  return out
}

/** Replaces the server lines of `backend` (lines without indentation or newline). False when the backend is unknown. */
export function withServers(config: ConfigText, backend: string, serverLines: readonly string[]): boolean {
  const section = config.backends.get(backend)
  if (section === undefined) return false
  section.servers = serverLines.map((l) => `    ${l}\n`).join('')
  return true
}

const sectionText = (s: Section): string => s.before + s.servers + s.after

/** Backend names a line names statically (`use_backend x if ...`, `default_backend x`); `%[...]` lookups are resolved at run time. */
function namedBackends(text: string): string[] {
  const out: string[] = []
  for (const m of text.matchAll(/^\s*(?:use_backend|default_backend)\s+([^\s%]\S*)/gm)) out.push(m[1] ?? '')
  return out
}

export interface PartialCheck {
  /** Configuration text to give `haproxy -c`. */
  config: string
  /** owners[i] = services that produced line i+1 of `config` (from the full configuration's owners). */
  owners: ReadonlyArray<readonly string[]>
  /** Backends checked in full (new or changed). */
  checked: string[]
  /** Backends accepted before and unchanged: left out, or kept without their servers when a rule names them. */
  skipped: number
}

/**
 * The configuration to check for `next` when HAProxy accepted `accepted`: every non-backend
 * section, the backends that are new or differ, and empty stubs for backends left out that a
 * kept line names. `owners` are those of `next` (line i+1 of the full text).
 */
export function checkConfigOf(next: ConfigText, owners: ReadonlyArray<readonly string[]>, accepted: ConfigText): PartialCheck {
  const checked: string[] = []
  const full = new Set<Section>()
  let kept = ''
  for (const s of next.sections) {
    if (s.kind === 'backend') {
      const before = accepted.backends.get(s.name)
      if (before !== undefined && sectionText(before) === sectionText(s)) continue
      checked.push(s.name)
    }
    full.add(s)
    kept += sectionText(s)
  }
  const named = new Set(namedBackends(kept))
  // In the order of the file: a `defaults` section applies to the sections after it (mode tcp
  // for TCP backends), so a backend stays where it was.
  let config = ''
  const partOwners: Array<readonly string[]> = []
  let skipped = 0
  for (const s of next.sections) {
    let text: string
    if (full.has(s)) text = sectionText(s)
    else {
      skipped++
      if (!named.has(s.name)) continue
      // Without its servers (what costs HAProxy the time) but with its settings: a rule that
      // names it checks its mode (a TCP frontend refuses an HTTP backend) and the like.
      text = s.before + s.after
    }
    config += text
    const n = text.split('\n').length - 1
    const sectionOwners = owners[s.start] ?? []
    for (let k = 0; k < n; k++) partOwners.push(owners[s.start + k] ?? sectionOwners)
  }
  return { config, owners: partOwners, checked, skipped }
}
