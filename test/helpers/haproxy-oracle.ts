/**
 * HAProxy as the oracle for hostile input: a configuration rendered from accepted routes must
 * (1) hold only the directives Tether's template emits, each value staying one word of HAProxy's
 * lexer (no newline, '#', quote, '$' or brace smuggled into a new directive, comment, argument
 * or condition), and (2) pass `haproxy -c`.
 *
 * (1) is written from HAProxy's lexical rules, not from Tether's validation rules, so it judges
 * the validators instead of repeating them: every line of the configuration must match one
 * line template of its section, in which each place a route value lands is the widest class
 * HAProxy reads as one word there (an unquoted word has no whitespace, '#', quote, backslash,
 * '$' or brace; a double-quoted one no unescaped '"', '\' or '$'; a single-quoted one no "'";
 * a log-format string no '%' but '%%' and the allowed sample expressions; an ACL pattern no
 * brace either, and no leading '-' where HAProxy would read it as a flag). Sections that do not
 * depend on routes (global, defaults, the admin frontend, the 404 backend) must equal those of
 * an empty table rendered with the same settings; those only TCP and SNI routes bring (the
 * `mode tcp` defaults, the handover to the terminating frontend) must equal those of a reference
 * table of one TCP and one SNI route, trusted input, rendered with the same settings.
 *
 * The settings include an HTTPS listener (tlsListen), so that SNI passthrough routes render their
 * frontend and the HTTP templates are judged with the TLS lines they add.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import type { ConfigSnapshot } from '../../src/contracts/config-snapshot.ts'
import { normalizeRoute } from '../../src/contracts/route.ts'
import { RATE_TABLES_COMMENT, render, statePaths, type RenderedConfig, type RenderSettings } from '../../src/proxy/haproxy/render.ts'
import { CHECK_OPTIONS } from '../../src/proxy/haproxy/servers.ts'
import { ensureDefaultCertificate } from '../../src/proxy/haproxy/tls.ts'
import { checkConfigFile, type CheckResult } from '../../src/proxy/haproxy/validate.ts'

/** An unquoted word: nothing HAProxy's lexer splits at or treats specially. */
const WORD = String.raw`[^\s#"'\\\x24]+`
/**
 * An unquoted ACL pattern inside `{ ... }`: no brace (a lone one would end the condition) and no
 * leading '-' (HAProxy reads a word starting with '-' after the fetch as a flag: '-f <file>'
 * loads patterns from a file, '-m' changes the match, an unknown one is an error).
 */
const ACL_WORD = String.raw`[^\s#"'\\\x24{}-][^\s#"'\\\x24{}]*`
/** A double-quoted string: '"', '\' and '$' only escaped. */
const DQ = String.raw`"(?:[^"\\\x24\x00-\x1f]|\\[\\"\x24])*"`
/** A double-quoted log-format string: '%' only as '%%' or one of the allowed sample expressions. */
const LF = String.raw`"(?:[^"\\\x24%\x00-\x1f]|\\[\\"\x24]|%%|%\[(?:src|src_port|dst|dst_port|ssl_fc|env\(HOSTNAME\))\])*"`
/** A quoted converter argument inside a single-quoted word: no "'", '"' and '\' escaped. */
const CONV = String.raw`"(?:[^"\\'\x00-\x1f]|\\[\\"])*"`
const SVC = String.raw`[A-Za-z0-9_.-]+`
const BACKEND = String.raw`(?:svc_${SVC}_[0-9]{1,5}(?:-d[0-9]+)?|tether\.notfound)`
const MAP = String.raw`/[^\s#"'\\\x24,()]+\.map`
const HDR = String.raw`[A-Za-z0-9_-]+`
const METHOD = String.raw`[A-Z0-9_-]+`
const PORT = '[0-9]{1,5}'
/** The host of the oracle's listeners (TCP routes bind on the HTTP listener's host). */
const LISTEN_HOST = '127.0.0.1'

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, (c) => `\\${c}`)
}

/** Lines a route can put in the routing frontend (besides the fixed ones of an empty table). */
const frontendTemplates: RegExp[] = [
  String.raw`    use_backend %\[path,concat\(/\),map_beg\(${MAP},${BACKEND}\)\]`,
  String.raw`    use_backend %\[var\(txn\.path\),map_beg\(${MAP},${BACKEND}\)\]`,
  String.raw`    default_backend ${BACKEND}`,
  String.raw`    http-request set-var\(txn\.incoming_proto\) req\.hdr\(X-Forwarded-Proto\),lower`,
  escape(`    http-request set-var(txn.host) 'req.hdr(host),field(1,:),lower,regsub("\\.$","")'`),
  String.raw`    # '<path>/' against '<prefix>/' keys: whole-segment prefix match`,
  String.raw`    http-request set-var\(txn\.path\) path,concat\(/\)`,
  String.raw`    http-request redirect code 301 location '%\[req\.hdr\(x-forwarded-proto\)\]://[A-Za-z0-9.-]+%\[capture\.req\.uri\]' if \{ var\(txn\.host\) -m str ${ACL_WORD} \}`,
  // The routing rule of a binding with a host, a discriminator or an exclusion.
  String.raw`    use_backend ${BACKEND} if ` +
    String.raw`(?:\{ var\(txn\.host\) -m (?:str|end)(?: ${ACL_WORD})+ \} )?` +
    String.raw`(?:\{ var\(txn\.path\) -m beg ${ACL_WORD} \} )?` +
    String.raw`\{ var\(txn\.path\),map_beg\(${MAP},0\) -m int le [0-9]+ \}` +
    String.raw`(?: \{ req\.hdr\(user-agent\) -m sub -i --(?: ${DQ})+ \})?` +
    String.raw`(?: \{ req\.hdr\(${HDR}\) -m str -- ${DQ} \})*` +
    String.raw`(?: !?\{ ssl_fc \})?` +
    String.raw`(?: !\{ var\(txn\.path\) -m beg(?: ${ACL_WORD})+ \})?`,
].map((t) => new RegExp(`^${t}$`))

/** The connection options of a route's servers towards its tasks (backendScheme, sslVerifyNone, backendCaSecret). */
const SERVER_OPTIONS = String.raw`(?:proto h2|ssl verify none alpn (?:h2|http/1\.1)|ssl verify required ca-file (?:@system-ca|/[A-Za-z0-9_./-]+/ca-${SVC}-[0-9a-f]{16}\.pem) verifyhost ${SVC} alpn (?:h2|http/1\.1))`

/** Lines of a route's backend. */
const backendTemplates: RegExp[] = [
  '    balance roundrobin',
  String.raw`    default-server ${SERVER_OPTIONS}`,
  '    http-request return status 503 content-type text/plain string "This proxy cannot verify the service: its CA bundle is missing here"',
  String.raw`    timeout (?:server|tunnel) [0-9]+s`,
  // HAProxy's own algorithm names; MIME types as unquoted words.
  String.raw`    compression algo(?: (?:gzip|deflate|raw-deflate|identity))+`,
  String.raw`    compression type(?: ${WORD})+`,
  String.raw`    http-request deny deny_status 403 if !?\{ src(?: ${ACL_WORD})+ \}`,
  String.raw`    http-request deny (?:unless|if) \{ method(?: ${METHOD})+ \}`,
  String.raw`    http-request track-sc1 src table tether\.rate\.${SVC}`,
  String.raw`    http-request track-sc2 int\(1\) table tether\.ratetotal\.${SVC}`,
  String.raw`    http-request deny deny_status 429 hdr Retry-After [0-9]+ if \{ sc[12]_gpc0_rate ge [0-9]+ \}`,
  String.raw`    http-request sc-inc-gpc0\([12]\)`,
  String.raw`    http-request set-var\(txn\.tether_refused\) str\(size\) if \{ req\.hdr_val\(content-length\) gt [1-9][0-9]* \}`,
  String.raw`    http-request deny deny_status 413 content-type application/json string ${DQ} if \{ req\.hdr_val\(content-length\) gt [1-9][0-9]* \}`,
  String.raw`    http-request set-var\(txn\.tether_refused\) str\(ip\) if !?\{ src(?: ${ACL_WORD})+ \}`,
  String.raw`    http-request set-var\(txn\.tether_refused\) str\(rate\) if \{ sc[12]_gpc0_rate ge [0-9]+ \}`,
  String.raw`    http-request set-var\(txn\.tether_refused\) str\(auth\) unless \{ http_auth\(tether_users_${SVC}\) \}`,
  String.raw`    http-request auth realm ${DQ} if \{ var\(txn\.tether_refused\) -m str auth \}`,
  String.raw`    http-(?:request|response) del-header ${HDR}`,
  String.raw`    http-(?:request|response) (?:set|add)-header ${HDR} ${LF}`,
  String.raw`    http-request set-path '%\[path,regsub\(${CONV},${CONV}\)\]'`,
  String.raw`    http-request deny deny_status 403 if !\{ ssl_fc \}`,
  String.raw`    http-request redirect scheme https code 30[1278] if !\{ ssl_fc \}`,
  String.raw`    http-request redirect scheme https code 30[1278] if !\{ ssl_fc \} \{ var\(txn\.incoming_proto\) -m str http \}`,
  String.raw`    http-response set-header Strict-Transport-Security "max-age=[0-9]+(?:; includeSubDomains)?(?:; preload)?" if \{ ssl_fc \}`,
  String.raw`    cookie ${WORD} insert indirect nocache dynamic httponly(?: secure)? attr "SameSite=Lax"`,
  // The HTTP health check: the path by the contract's rule (no space, quote, '#', '$' or ','), an exact host name.
  '    option httpchk',
  String.raw`    http-check send meth GET uri /[A-Za-z0-9\-._~!&()*+;=:@/?%]*(?: ver HTTP/1\.1 hdr Host [A-Za-z0-9.-]+)?`,
  String.raw`    http-check expect status (?:200-399|[1-5][0-9]{2})`,
  String.raw`    default-server inter [0-9]{1,4}s fall 2 rise 1(?: slowstart [0-9]{1,4}s)?`,
  String.raw`    http-after-response replace-header Set-Cookie '\^\([^'\s]+=\.\*\)\$' '\\1; Secure' if \{ ssl_fc \}`,
  String.raw`    server [A-Za-z0-9._:-]+ (?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}(?: ${CHECK_OPTIONS}| check inter [0-9]{1,4}s fall 2 rise 1(?: slowstart [0-9]{1,4}s)?)?(?: ${SERVER_OPTIONS})?`,
].map((t) => new RegExp(`^${t}$`))

const userlistTemplates: RegExp[] = [new RegExp(String.raw`^    user [A-Za-z0-9_.@+-]+ password '[^'\s]+'$`)]

/** Lines of a TCP route's frontend (`frontend tcp_<srcPort>`). */
const tcpFrontendTemplates: RegExp[] = [
  String.raw`    bind ${escape(LISTEN_HOST)}:${PORT}`,
  String.raw`    timeout client [0-9]+s`,
  String.raw`    default_backend tcp_${SVC}_${PORT}`,
].map((t) => new RegExp(`^${t}$`))

/** The route lines of the TLS passthrough frontend: a backend per server name list, exact, suffix ('-m end') or prefix ('-m beg'). */
const passthroughTemplates: RegExp[] = [String.raw`    use_backend sni_${SVC}_${PORT}(?:-d[0-9]+)? if \{ req\.ssl_sni -i (?:-m (?:end|beg) )?${ACL_WORD}(?: ${ACL_WORD})* \}`].map((t) => new RegExp(`^${t}$`))

/** The stick table of a route's rate limits (numbers only). */
const rateTableTemplates: RegExp[] = [
  String.raw`    stick-table type ipv6 size 100k expire [0-9]+ms store gpc0_rate\([0-9]+ms\)`,
  String.raw`    stick-table type integer size 1 expire 60s store gpc0_rate\(1s\)`,
].map((t) => new RegExp(`^${t}$`))

/** Lines of a TCP or SNI route's backend (mode tcp: no HTTP rule, affinity by client address). */
const streamBackendTemplates: RegExp[] = [
  '    balance roundrobin',
  '    stick-table type ip size 1m expire 30m',
  '    stick on src',
  String.raw`    timeout server [0-9]+s`,
  String.raw`    server [A-Za-z0-9._:-]+ (?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):${PORT}(?: ${CHECK_OPTIONS})?(?: send-proxy-v2)?`,
].map((t) => new RegExp(`^${t}$`))

export interface OracleFinding {
  line: number
  text: string
  why: string
}

/** The sections of a configuration in order: header → lines (column-0 comments left out). */
function sectionsOf(config: string): Array<{ header: string; lines: string[] }> {
  const out: Array<{ header: string; lines: string[] }> = [{ header: '(top)', lines: [] }]
  for (const line of config.split('\n')) {
    if (line.startsWith('#')) continue
    if (line !== '' && !line.startsWith(' ')) out.push({ header: line, lines: [] })
    else if (line !== '') out[out.length - 1]!.lines.push(line)
  }
  return out
}

/** What a configuration is judged against: the same settings' renderings of an empty table and of the reference stream table. */
export interface OracleReference {
  baseline: RenderedConfig
  streams: RenderedConfig
}

/**
 * Lines of `rendered` that are not in Tether's template (see the top of this file). Empty when
 * nothing was injected.
 */
export function outsideTemplate(rendered: RenderedConfig, reference: OracleReference): OracleFinding[] {
  const findings: OracleFinding[] = []
  const base = sectionsOf(reference.baseline.config)
  const streams = sectionsOf(reference.streams.config)
  const fixed = new Map(base.map((s) => [s.header, s.lines]))
  const streamSection = (header: string, nth = 0): string[] => {
    const found = streams.filter((s) => s.header === header)[nth]
    if (found === undefined) throw new Error(`the reference stream table has no ${header} section ${nth}`)
    return found.lines
  }
  const defaults = [fixed.get('defaults')!, streamSection('defaults', 1)]
  const exact = (ls: readonly string[]) => ls.map((l) => new RegExp(`^${escape(l)}$`))
  const httpFrontend = [...frontendTemplates, ...exact(fixed.get('frontend http')!), ...exact(streamSection('frontend http'))]
  const passthrough = [...passthroughTemplates, ...exact(streamSection('frontend tls_passthrough').filter((l) => !l.startsWith('    use_backend ')))]
  const tlsTerminate = streamSection('backend tether.tls-terminate')
  const topComments = new Set([...reference.streams.config.split('\n').slice(1).filter((l) => l.startsWith('#')), RATE_TABLES_COMMENT])
  const lines = rendered.config.split('\n')
  if (rendered.config.includes('\r')) findings.push({ line: 0, text: '', why: 'carriage return in the configuration' })
  let section = '(top)'
  let fixedLines: string[] | undefined
  let templates: RegExp[] = []
  let seenInSection = 0
  let defaultsSeen = 0
  for (const [i, text] of lines.entries()) {
    const at = i + 1
    const finding = (why: string) => findings.push({ line: at, text, why })
    if (/[\x00-\x08\x0b-\x1f\x7f]/.test(text)) finding('control character')
    if (i === 0) {
      if (!/^# Generated by Tether from config version [0-9]+\. Do not edit: the proxy agent rewrites it\.$/.test(text)) finding('not the header comment')
      continue
    }
    if (text === '') continue
    if (text.startsWith('#')) {
      if (!topComments.has(text)) finding('not a comment Tether writes between sections')
      continue
    }
    if (!text.startsWith(' ')) {
      // A section header.
      section = text
      fixedLines = undefined
      templates = []
      seenInSection = 0
      if (text === 'defaults') {
        fixedLines = defaults[defaultsSeen++]
        if (fixedLines === undefined) finding('a third defaults section')
      } else if (text === 'frontend http') templates = httpFrontend
      else if (text === 'frontend tls_passthrough') templates = passthrough
      else if (text === 'backend tether.tls-terminate') fixedLines = tlsTerminate
      else if (fixed.has(text)) fixedLines = fixed.get(text)!
      else if (new RegExp(`^backend ${BACKEND}$`).test(text)) templates = backendTemplates
      else if (new RegExp(`^userlist tether_users_${SVC}$`).test(text)) templates = userlistTemplates
      else if (new RegExp(`^backend tether\\.rate(?:total)?\\.${SVC}$`).test(text)) templates = rateTableTemplates
      else if (new RegExp(`^frontend tcp_${PORT}$`).test(text)) templates = tcpFrontendTemplates
      else if (new RegExp(`^backend (?:tcp_${SVC}_${PORT}|sni_${SVC}_${PORT}(?:-d[0-9]+)?)$`).test(text)) templates = streamBackendTemplates
      else {
        finding('not a section Tether renders')
        section = '(unknown)'
      }
      continue
    }
    if (fixedLines !== undefined) {
      if (fixedLines[seenInSection] !== text) finding(`differs from the ${section} section of the reference tables (expected ${JSON.stringify(fixedLines[seenInSection] ?? '(end of section)')})`)
      seenInSection++
      continue
    }
    if (!templates.some((t) => t.test(text))) finding(`matches no line template of ${section.split(' ')[0]}`)
  }
  // Map files: '<key> <value>' per line, one word each.
  for (const f of rendered.files) {
    if (!f.path.endsWith('.map')) continue
    for (const [i, text] of f.text.split('\n').entries()) {
      if (text === '') continue
      if (!/^\/[^\s#]* (?:[0-9]+|[A-Za-z0-9_.-]+)$/.test(text)) findings.push({ line: i + 1, text, why: `map file ${f.path}: not '<path> <value>'` })
    }
  }
  return findings
}

/** The reference stream table: one TCP and one SNI route, trusted input (no validation needed). */
const REFERENCE_STREAMS = [
  normalizeRoute({ serviceName: 'reference-tcp', destinations: [], tcp: [{ srcPort: 6379, port: 6379 }], endpoints: ['127.0.0.1:6379'] }),
  normalizeRoute({ serviceName: 'reference-sni', destinations: [], sni: [{ serverName: ['reference.example'], port: 443 }], endpoints: ['127.0.0.1:8443'] }),
]

/** A scratch state directory and `haproxy -c` for rendered configurations. */
export interface Oracle {
  settings: RenderSettings
  /** Renders `snapshot`, checks the template and runs `haproxy -c`. */
  judge(snapshot: ConfigSnapshot): Promise<{ rendered: RenderedConfig; findings: OracleFinding[]; check: CheckResult }>
  close(): Promise<void>
}

export async function createOracle(haproxyBin = 'haproxy'): Promise<Oracle> {
  const stateDir = await mkdtemp(join(tmpdir(), 'tether-oracle-'))
  const settings: RenderSettings = {
    stateDir,
    listen: `${LISTEN_HOST}:1`,
    adminListen: `${LISTEN_HOST}:2`,
    tlsListen: `${LISTEN_HOST}:3`,
    cookieKey: 'oracle-cookie-key',
    secureCookie: false,
    maxconn: 256,
    nbthread: 1,
    hardStopAfterMs: 1000,
    maxReloads: 5,
  }
  const reference: OracleReference = { baseline: render({ version: 0, routes: [] }, settings), streams: render({ version: 0, routes: REFERENCE_STREAMS }, settings) }
  // What the HTTPS listener serves for names no certificate covers (haproxy -c loads it).
  await ensureDefaultCertificate(statePaths(stateDir).defaultCertificate)
  return {
    settings,
    async judge(snapshot) {
      const rendered = render(snapshot, settings)
      const findings = outsideTemplate(rendered, reference)
      for (const f of rendered.files) {
        await mkdir(dirname(f.path), { recursive: true })
        await writeFile(f.path, f.text)
      }
      const path = join(stateDir, 'haproxy.cfg')
      await writeFile(path, rendered.config)
      const check = await checkConfigFile(path, haproxyBin)
      await rm(join(stateDir, 'maps'), { recursive: true, force: true })
      return { rendered, findings, check }
    },
    close: () => rm(stateDir, { recursive: true, force: true }),
  }
}
