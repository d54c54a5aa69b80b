// Tether's operator dashboard: plain DOM, no framework, no build step.
// Reads the public API (no token); follows GET /v1/version's long poll so a change on any
// control-plane replica shows at once; re-reads proxies and status every few seconds, since a
// proxy going silent is not a version. Every value from the API goes in through textContent.

const LONG_POLL_SECONDS = 25
const FLEET_REFRESH_MS = 2000
const CHANGES_SHOWN = 50
/** A proxy that left the live list stays on the page, marked stale, this long. */
const STALE_KEPT_MS = 10 * 60 * 1000

const state = {
  settings: { statsUrl: null, proxyTtlSeconds: 15, authEnabled: true },
  version: null,
  routes: [],
  proxies: [],
  status: null,
  changes: [],
  certificateChanges: [],
  /** proxy id → { prev, cur }: its last two distinct heartbeats' traffic ({ at (ms), traffic }), for rates. */
  traffic: new Map(),
  /** id → { proxy, lastSeen (ms) }: proxies seen live, kept to show them stale when they go. */
  seen: new Map(),
}

const $ = (id) => document.getElementById(id)

/** h('td', { class: 'ok' }, 'text', child...) → element; strings become text nodes. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v)
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c))
  return el
}

function ago(iso) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000))
  if (s < 90) return `${s} s ago`
  if (s < 5400) return `${Math.round(s / 60)} min ago`
  return `${Math.round(s / 3600)} h ago`
}

/** Local time as YYYY-MM-DD HH:MM:SS. */
function clock(iso) {
  const d = new Date(iso)
  const p = (n) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`
}

async function getJson(path) {
  const res = await fetch(path, { headers: { accept: 'application/json' }, cache: 'no-store' })
  const body = await res.json().catch(() => null)
  if (!res.ok) throw new Error(body?.message ?? `${path}: HTTP ${res.status}`)
  return body
}

function say(text, isError = false) {
  const m = $('message')
  m.textContent = text
  m.className = isError ? 'message error' : 'message'
  m.hidden = false
}

function setLive(ok, text) {
  const l = $('live')
  l.textContent = text
  l.className = ok ? 'live' : 'live down'
}

// ---- rendering --------------------------------------------------------------------------

function renderSummary() {
  const s = state.status
  if (s === null) return
  const laggards = s.laggards.length > 0 ? ` · behind: ${s.laggards.map((l) => `${l.id} (v${l.version})`).join(', ')}` : ''
  const discovery = s.discovery === undefined ? '' : ` · Swarm discovery on (this replica ${s.discovery.leader ? 'leads it' : 'follows'})`
  $('summary').textContent = `version ${s.version} · ${s.live} live ${s.live === 1 ? 'proxy' : 'proxies'}, ${s.converged} converged${laggards}${discovery}`
  $('summary').className = s.laggards.length > 0 ? 'summary warn' : 'summary'
}

function healthOf(serviceName) {
  const cells = []
  for (const p of state.proxies) {
    const refused = p.refusedRoutes.find((r) => r.serviceName === serviceName)
    if (refused !== undefined) {
      cells.push(h('span', { class: 'badge bad', title: refused.error }, `${p.id}: refused`))
      continue
    }
    const b = (p.backends ?? []).find((x) => x.serviceName === serviceName)
    if (b === undefined) {
      cells.push(h('span', { class: 'badge', title: 'this proxy reports no servers for the route (yet)' }, `${p.id}: –`))
      continue
    }
    const cls = b.up === 0 ? 'bad' : b.down > 0 ? 'warn' : 'ok'
    // The servers are named after the tasks (or their address, or host:port for fixed endpoints).
    const names = (b.servers ?? []).map((x) => `${x.name} ${x.status}`).join(', ')
    cells.push(h('span', { class: `badge ${cls}`, title: `${b.up} servers up, ${b.down} down${names === '' ? '' : `: ${names}`}` }, `${p.id}: ${b.up}↑ ${b.down}↓`))
  }
  return cells.length > 0 ? cells : h('span', { class: 'muted' }, 'no live proxy')
}

/** Running tasks of a route: the servers the live proxies report for it (GET /v1/status routeHealth). */
function tasksOf(record) {
  const r = record.route
  const health = (state.status?.routeHealth ?? []).find((x) => x.serviceName === r.serviceName)
  if (health === undefined) {
    if (r.endpoints.length > 0) return h('span', { title: r.endpoints.join(', ') }, `${r.endpoints.length} endpoint${r.endpoints.length === 1 ? '' : 's'}`)
    return h('span', { class: 'muted', title: 'no live proxy reports this route yet' }, '–')
  }
  const running = health.servers.length
  const noun = r.endpoints.length > 0 ? (running === 1 ? 'endpoint' : 'endpoints') : 'running'
  const title = `${health.servers.join(', ')}${health.down > 0 ? ` · ${health.down} failing the health check on some proxy` : ''}`
  if (running === 0) return h('span', { class: 'bad', title: 'no task: requests are answered 503' }, r.endpoints.length > 0 ? '0 endpoints' : 'none running')
  const cls = health.up === 0 ? 'bad' : health.down > 0 ? 'warn' : ''
  return h('span', { class: cls, title }, `${running} ${noun}${health.down > 0 ? ` (${health.down} failing)` : ''}`)
}

/** Records each proxy's traffic counters when its heartbeat is new (rates need two). */
function trackTraffic() {
  for (const p of state.proxies) {
    if (p.traffic === undefined) continue
    const at = Date.parse(p.receivedAt)
    const t = state.traffic.get(p.id)
    if (t === undefined) state.traffic.set(p.id, { prev: null, cur: { at, traffic: p.traffic } })
    else if (t.cur.at !== at) state.traffic.set(p.id, { prev: t.cur, cur: { at, traffic: p.traffic } })
  }
  const live = new Set(state.proxies.map((p) => p.id))
  for (const id of state.traffic.keys()) if (!live.has(id)) state.traffic.delete(id)
}

/**
 * A route's traffic between the last two heartbeats of each live proxy, summed over the proxies:
 * requests a second, the share of 5xx, the bucket holding the 95th percentile, connections per
 * task now. null when no proxy has sent two heartbeats with traffic yet.
 */
function trafficOf(serviceName) {
  let rate = 0
  let requests = 0
  let errors = 0
  let measured = false
  let buckets = null
  let bounds = null
  const tasks = new Map()
  for (const { prev, cur } of state.traffic.values()) {
    const now = cur.traffic.routes.find((r) => r.serviceName === serviceName)
    for (const task of now?.tasks ?? []) tasks.set(task.name, (tasks.get(task.name) ?? 0) + task.connections)
    if (prev === null || cur.at <= prev.at) continue
    measured = true
    if (now === undefined) continue
    const before = prev.traffic.routes.find((r) => r.serviceName === serviceName)
    // A restarted proxy starts its counters again: its new counts are all since then.
    const restarted = before === undefined || before.requests > now.requests
    const dReq = now.requests - (restarted ? 0 : before.requests)
    rate += dReq / ((cur.at - prev.at) / 1000)
    requests += dReq
    errors += now.errors - (restarted ? 0 : before.errors)
    if (now.durations !== undefined) {
      bounds = cur.traffic.durationBounds
      const d = now.durations.map((n, i) => n - (restarted || before.durations === undefined ? 0 : (before.durations[i] ?? 0)))
      buckets = buckets === null ? d : buckets.map((n, i) => n + (d[i] ?? 0))
    }
  }
  if (!measured) return null
  let p95 = null
  if (buckets !== null && bounds !== null) {
    const total = buckets[buckets.length - 1]
    const i = total > 0 ? buckets.findIndex((n) => n >= 0.95 * total) : -1
    if (i >= 0) p95 = i < bounds.length ? bounds[i] : Infinity
  }
  return { rate, errorRatio: requests > 0 ? errors / requests : null, p95, latency: buckets !== null, tasks }
}

function seconds(s) {
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s} s`
}

function trafficCells(serviceName) {
  const t = trafficOf(serviceName)
  if (t === null) {
    const none = () => h('td', { class: 'muted', title: 'needs two heartbeats of a proxy with traffic counters' }, 'measuring…')
    return [none(), none(), none(), h('td', { class: 'muted' }, '–')]
  }
  const rate = h('td', { 'data-metric': 'rate' }, `${t.rate < 10 ? t.rate.toFixed(1) : Math.round(t.rate)}/s`)
  const errors = t.errorRatio === null ? h('td', { class: 'muted', 'data-metric': 'errors' }, '–') : h('td', { class: t.errorRatio > 0.05 ? 'bad' : t.errorRatio > 0 ? 'warn' : '', 'data-metric': 'errors' }, `${(t.errorRatio * 100).toFixed(t.errorRatio > 0 && t.errorRatio < 0.1 ? 1 : 0)} %`)
  const p95 = !t.latency
    ? h('td', { class: 'muted', title: 'needs the JSON access log on the proxies', 'data-metric': 'p95' }, '–')
    : t.p95 === null
      ? h('td', { class: 'muted', 'data-metric': 'p95' }, '–')
      : h('td', { title: 'the latency bucket holding the 95th percentile of the requests since the previous heartbeat', 'data-metric': 'p95' }, t.p95 === Infinity ? '> 10 s' : `≤ ${seconds(t.p95)}`)
  const sessions = [...t.tasks].sort(([a], [b]) => (a < b ? -1 : 1))
  const perTask = sessions.length === 0 ? h('td', { class: 'muted', 'data-metric': 'sessions' }, '–') : h('td', { 'data-metric': 'sessions', title: sessions.map(([n, c]) => `${n}: ${c}`).join('\n') }, sessions.map(([, c]) => String(c)).join(' · '))
  return [rate, errors, p95, perTask]
}

function renderRoutes() {
  const body = $('routes').tBodies[0]
  body.replaceChildren(
    ...state.routes.map((record) => {
      const r = record.route
      return h(
        'tr',
        { 'data-service': r.serviceName },
        h('td', {}, h('strong', {}, r.serviceName)),
        h('td', {}, r.destinations.map((d) => h('div', {}, `${d.servicePath.join(', ')} → ${d.port}`))),
        h('td', {}, r.serviceDomain.length > 0 ? r.serviceDomain.join(', ') : h('span', { class: 'muted' }, 'any')),
        h('td', {}, r.sticky ? `yes${r.stickyCookie !== undefined ? ` (${r.stickyCookie})` : ''}` : 'no'),
        h('td', {}, tasksOf(record)),
        ...trafficCells(r.serviceName),
        h('td', {}, healthOf(r.serviceName)),
        h('td', {}, String(record.version)),
        h('td', { title: clock(record.updatedAt) }, `${record.actor} (${record.source}), ${ago(record.updatedAt)}`),
      )
    }),
  )
  $('routes-empty').hidden = state.routes.length > 0
}

function statsLink(p) {
  const template = state.settings.statsUrl
  if (typeof template !== 'string' || template === '') return h('span', { class: 'muted' }, '–')
  const url = template.replaceAll('{node}', encodeURIComponent(p.node)).replaceAll('{id}', encodeURIComponent(p.id))
  return h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, 'HAProxy stats')
}

function renderProxies() {
  const now = Date.now()
  const ttlMs = state.settings.proxyTtlSeconds * 1000
  const version = state.status?.version ?? state.version ?? 0
  const live = new Set(state.proxies.map((p) => p.id))
  for (const p of state.proxies) state.seen.set(p.id, { proxy: p, lastSeen: now })
  for (const [id, s] of state.seen) if (!live.has(id) && now - Date.parse(s.proxy.receivedAt) > STALE_KEPT_MS) state.seen.delete(id)
  const rows = [...state.seen.values()]
    .map((s) => s.proxy)
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((p) => {
      const stale = !live.has(p.id)
      const age = now - Date.parse(p.receivedAt)
      const late = !stale && age > ttlMs / 2
      const statusCls = stale ? 'bad' : p.status === 'ok' ? 'ok' : p.status === 'starting' ? '' : p.status === 'degraded' ? 'warn' : 'bad'
      const versionCell = stale
        ? h('span', { class: 'muted' }, String(p.version))
        : p.version >= version
          ? h('span', { class: 'ok', title: 'serves the current version' }, `${p.version} ✓`)
          : h('span', { class: 'warn' }, `${p.version} (behind ${version})`)
      return h(
        'tr',
        { 'data-proxy': p.id, class: stale ? 'stale' : undefined },
        h('td', {}, p.id),
        h('td', {}, p.node),
        h('td', { class: statusCls }, stale ? `stale: no heartbeat for over ${state.settings.proxyTtlSeconds} s` : late ? `${p.status} (heartbeat late)` : p.status),
        h('td', {}, versionCell),
        h('td', {}, p.haproxyVersion),
        h('td', { 'data-metric': 'connections' }, p.traffic === undefined ? '–' : String(p.traffic.connections)),
        drainingCell(p.oldWorkers),
        h('td', { 'data-metric': 'reloads' }, p.traffic === undefined ? '–' : String(p.traffic.reloads)),
        h('td', { 'data-metric': 'dropped', class: (p.traffic?.droppedLogLines ?? 0) > 0 ? 'warn' : undefined }, p.traffic === undefined ? '–' : String(p.traffic.droppedLogLines)),
        h('td', { title: clock(p.receivedAt) }, ago(p.receivedAt)),
        h('td', { class: p.lastError === null ? 'muted' : 'bad' }, p.lastError ?? 'none'),
        h('td', {}, statsLink(p)),
      )
    })
  $('proxies').tBodies[0].replaceChildren(...rows)
  $('proxies-empty').hidden = rows.length > 0
  $('stats-hint').hidden = typeof state.settings.statsUrl === 'string' && state.settings.statsUrl !== ''
}

/** HAProxy's previous workers still draining connections: how many, their connections, the oldest's age; warn at the bound. */
function drainingCell(old) {
  if (old === undefined) return h('td', { class: 'muted' }, 'unknown')
  if (old.count === 0) return h('td', { class: 'muted' }, 'none')
  const atBound = old.maxCount > 0 && old.count >= old.maxCount
  const title = `bound: ${old.maxCount === 0 ? 'none' : `${old.maxCount} workers`}; connections closed after ${old.drainTimeoutSeconds === 0 ? 'never' : span(old.drainTimeoutSeconds)}`
  return h('td', { class: atBound ? 'warn' : undefined, title }, `${old.count} worker${old.count === 1 ? '' : 's'}, ${old.connections} connection${old.connections === 1 ? '' : 's'}, oldest ${old.oldestAgeSeconds < 90 ? `${old.oldestAgeSeconds} s` : span(old.oldestAgeSeconds)}`)
}

/** '3 days', '5 h', '12 min': a duration for people. */
function span(seconds) {
  const s = Math.abs(seconds)
  if (s < 5400) return `${Math.round(s / 60)} min`
  if (s < 3 * 86400) return `${Math.round(s / 3600)} h`
  return `${Math.round(s / 86400)} days`
}

/** Releases in progress (GET /v1/status's releases): each canary with its share, each drain with its end. */
function renderReleases() {
  const r = state.status?.releases
  const canaries = (r?.canaries ?? []).map((c) =>
    h(
      'tr',
      { 'data-release': 'canary', 'data-release-service': c.serviceName },
      h('td', {}, h('strong', {}, c.serviceName)),
      h('td', {}, 'canary'),
      h('td', {}, c.paths.length === 0 ? h('span', { class: 'warn' }, 'no path shared: serves its paths alone') : c.paths.map((p) => `${p.host}${p.path} (with ${p.sharedWith})`).join(', ')),
      h('td', {}, `${c.percent} %`),
      h('td', { class: 'muted' }, 'when promoted (takeover=true) or removed'),
    ),
  )
  const drains = (r?.drains ?? []).map((d) =>
    h(
      'tr',
      { 'data-release': 'drain', 'data-release-service': d.serviceName },
      h('td', {}, h('strong', {}, d.serviceName)),
      h('td', {}, `draining → ${d.to}`),
      h('td', { class: 'muted' }, `taken by ${d.to}`),
      h('td', { class: 'muted' }, 'none (pinned clients only)'),
      h('td', { title: d.until }, d.secondsLeft === 0 ? 'ended, removing…' : `${clock(d.until)} (${d.secondsLeft < 90 ? `${d.secondsLeft} s` : span(d.secondsLeft)} left)`),
    ),
  )
  $('releases').tBodies[0].replaceChildren(...canaries, ...drains)
  $('releases-empty').hidden = canaries.length + drains.length > 0
}

/** Stored certificates (GET /v1/status's tls section) with the ACME state of those ACME keeps. */
function renderCertificates() {
  const tls = state.status?.tls
  const acme = new Map((tls?.acme?.certificates ?? []).map((a) => [a.name, a]))
  const names = [...new Set([...(tls?.certificates ?? []).map((c) => c.name), ...acme.keys()])].sort()
  const rows = names.map((name) => {
    const c = (tls?.certificates ?? []).find((x) => x.name === name)
    const a = acme.get(name)
    const expires =
      c === undefined
        ? h('span', { class: 'muted' }, 'not issued yet')
        : h('span', { class: c.expiresInSeconds <= 0 ? 'bad' : c.warnings.length > 0 ? 'warn' : 'ok', title: [clock(c.notAfter), ...c.warnings].join('\n') }, c.expiresInSeconds <= 0 ? `expired ${span(c.expiresInSeconds)} ago` : `in ${span(c.expiresInSeconds)}`)
    const acmeCell =
      a === undefined
        ? h('span', { class: 'muted' }, '–')
        : a.state === 'failing'
          ? h('span', { class: 'bad', title: a.lastError ?? '' }, `failing (${a.failures} in a row)${a.nextAttemptAt !== undefined ? `, next try ${clock(a.nextAttemptAt)}` : ''}: ${a.lastError ?? ''}`)
          : a.state === 'ordering'
            ? h('span', { class: 'warn', title: `by ${a.ordering?.by ?? '?'}, abandoned at ${clock(a.ordering?.deadline)}` }, `ordering since ${clock(a.ordering?.since)}…`)
            : a.state === 'pending'
            ? h('span', { class: 'warn' }, `not issued yet${a.nextAttemptAt !== undefined ? `, next try ${clock(a.nextAttemptAt)}` : ''}`)
            : h('span', { class: 'ok' }, `valid${a.renewAt !== undefined ? `, renews ${clock(a.renewAt)}` : ''}`)
    return h('tr', { 'data-certificate': name }, h('td', {}, h('strong', {}, name)), h('td', {}, (c?.domains ?? a?.domains ?? []).join(', ')), h('td', {}, c?.source ?? 'acme'), h('td', {}, expires), h('td', {}, acmeCell))
  })
  $('certificates').tBodies[0].replaceChildren(...rows)
  $('certificates-empty').hidden = rows.length > 0
  // Not a problem in itself (a domain may be served over HTTP only), but what HTTPS would answer with the default certificate.
  const uncovered = tls?.uncoveredDomains ?? []
  $('uncovered').textContent = uncovered.length === 0 ? '' : `Domains no certificate covers (HTTPS answers them with the self-signed default): ${uncovered.map((d) => `${d.domain} (${d.serviceName})`).join(', ')}`
  $('uncovered').hidden = uncovered.length === 0
}

function renderProblems() {
  const items = []
  const s = state.status
  for (const r of s?.refusedRoutes ?? []) items.push(h('li', { class: 'bad' }, `${r.serviceName}: refused by ${r.proxies.join(', ')} — ${r.error}`))
  for (const r of s?.routeProblems ?? []) items.push(h('li', { class: 'bad' }, `${r.serviceName}: ${r.problem} (on ${r.proxies.join(', ')})`))
  for (const x of [...(s?.shadowed ?? []), ...(s?.shadowedExtras ?? [])]) items.push(h('li', { class: 'warn' }, x.message))
  for (const p of s?.discovery?.problems ?? []) items.push(h('li', { class: 'warn' }, `${p.serviceName}: ${p.message}`))
  for (const p of state.proxies) if (p.lastError !== null) items.push(h('li', { class: 'bad' }, `proxy ${p.id}: ${p.lastError}`))
  for (const w of s?.tls?.warnings ?? []) items.push(h('li', { class: 'warn' }, w))
  for (const l of s?.laggards ?? []) items.push(h('li', { class: 'warn' }, `proxy ${l.id}${l.node === '' ? '' : ` (node ${l.node})`} is behind: serves version ${l.version}, the table is at ${s.version}`))
  if (items.length === 0) items.push(h('li', { class: 'muted' }, 'None.'))
  $('problems').replaceChildren(...items)
}

function describeChange(c) {
  if (c.kind === 'certificate') {
    const fp = (f) => (f === null ? '' : f.slice(0, 23))
    if (c.operation === 'remove') return `certificate removed (${fp(c.previousFingerprint)})`
    return c.previousFingerprint === null ? `certificate stored (${fp(c.fingerprint)})` : `certificate replaced (${fp(c.previousFingerprint)} ⇒ ${fp(c.fingerprint)})`
  }
  if (c.operation === 'remove') return 'removed'
  const where = (route) => route.destinations.map((d) => `${d.servicePath.join(',')}→${d.port}`).join(' ')
  const text = c.before === null ? `created ${where(c.after)}` : `changed ${where(c.before)} ⇒ ${where(c.after)}`
  return c.rollbackTo !== undefined ? `${text} (rollback to v${c.rollbackTo})` : text
}

/**
 * Route and certificate changes, newest first: every version of the table. A version in neither
 * log (an ACME challenge published or withdrawn) is shown as such, so no version is missing.
 */
function renderChanges() {
  const current = state.version
  const entries = [...state.changes.map((c) => ({ ...c, kind: 'route' })), ...state.certificateChanges.map((c) => ({ ...c, kind: 'certificate' }))].sort((a, b) => b.version - a.version)
  const rows = []
  let expected = entries[0]?.version
  for (const c of entries) {
    for (; expected !== undefined && expected > c.version; expected--) rows.push(h('tr', { 'data-version': expected, class: 'muted' }, h('td', {}, String(expected)), h('td', { colspan: 6 }, 'no route or certificate change (an ACME challenge published or withdrawn)')))
    expected = c.version - 1
    const restorable = c.kind === 'route' && c.version !== current
    rows.push(
      h(
        'tr',
        { 'data-version': c.version, 'data-kind': c.kind },
        h('td', {}, String(c.version)),
        h('td', { title: c.time }, clock(c.time)),
        h('td', {}, c.actor),
        h('td', {}, c.source),
        h('td', {}, c.kind === 'certificate' ? c.name : c.serviceName),
        h('td', {}, describeChange(c)),
        h('td', {}, c.version === current ? h('span', { class: 'muted' }, 'current') : restorable ? h('button', { type: 'button', 'data-restore': c.version, onclick: () => restore(c.version) }, `Restore v${c.version}`) : h('span', { class: 'muted', title: 'a rollback restores routes, not certificates' }, '–')),
      ),
    )
  }
  $('changes').tBodies[0].replaceChildren(...rows)
}

// ---- data -------------------------------------------------------------------------------

function markLive() {
  setLive(true, `live · updated ${clock(new Date().toISOString()).slice(11)}`)
}

async function refreshFleet() {
  const [proxies, status] = await Promise.all([getJson('/v1/proxies'), getJson('/v1/status')])
  markLive()
  state.proxies = proxies.proxies
  state.status = status
  trackTraffic()
  renderSummary()
  renderProxies()
  renderProblems()
  renderReleases()
  renderCertificates()
  renderRoutes() // health per proxy comes from the proxies
}

async function refreshTable() {
  const routes = await getJson('/v1/routes')
  const since = Math.max(0, routes.version - CHANGES_SHOWN)
  const [changes, certificates] = await Promise.all([
    getJson(`/v1/changes?since=${since}&limit=${CHANGES_SHOWN * 4}`),
    getJson(`/v1/certificate-changes?since=${since}&limit=${CHANGES_SHOWN * 4}`).catch(() => ({ changes: [] })),
  ])
  state.version = Math.max(routes.version, changes.version)
  state.routes = routes.routes
  state.changes = changes.changes
  state.certificateChanges = certificates.changes
  renderRoutes()
  renderChanges()
}

async function restore(version) {
  const token = $('token').value.trim()
  if (state.settings.authEnabled && token === '') {
    say('Restoring needs an API token: type it in the "API token" field above.', true)
    $('token').focus()
    return
  }
  if (!window.confirm(`Make the routing table what it was at version ${version}? This writes a new version; every proxy applies it.`)) return
  const res = await fetch(`/v1/config/rollback?to=${encodeURIComponent(version)}`, { method: 'POST', headers: token === '' ? {} : { authorization: `Bearer ${token}` } })
  const body = await res.json().catch(() => null)
  if (!res.ok) {
    say(`Restore refused: ${body?.message ?? `HTTP ${res.status}`}`, true)
    return
  }
  say(body.changed === 0 ? `The table already equals version ${version}: nothing changed.` : `Restored the table of version ${version} as version ${body.version} (${body.changed} route${body.changed === 1 ? '' : 's'} changed).`)
  await refreshTable().catch(() => {})
  await refreshFleet().catch(() => {})
}

/** Follows the config version: answers at once on a change anywhere, else every LONG_POLL_SECONDS. */
async function followVersion() {
  let delay = 1000
  for (;;) {
    try {
      const since = state.version ?? 0
      const v = await getJson(`/v1/version?since=${since}&wait=${LONG_POLL_SECONDS}`)
      if (v.changed || state.version === null) await refreshTable()
      markLive()
      delay = 1000
    } catch (error) {
      setLive(false, `control plane unreachable (${error.message}); retrying`)
      await new Promise((r) => setTimeout(r, delay))
      delay = Math.min(delay * 2, 10_000)
    }
  }
}

async function followFleet() {
  for (;;) {
    try {
      await refreshFleet()
    } catch (error) {
      setLive(false, `control plane unreachable (${error.message}); retrying`)
    }
    await new Promise((r) => setTimeout(r, FLEET_REFRESH_MS))
  }
}

async function start() {
  try {
    state.settings = await getJson('/ui/settings.json')
  } catch {
    // defaults
  }
  $('token').addEventListener('input', () => ($('message').hidden = true))
  await refreshTable().catch((error) => setLive(false, `control plane unreachable (${error.message}); retrying`))
  void followFleet()
  void followVersion()
}

void start()
