import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readdir, readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { normalizeRoute } from '../../../src/contracts/route.ts'
import { checkConfigOf, configTextOf, parseConfigText, withServers } from '../../../src/proxy/haproxy/config-text.ts'
import { render } from '../../../src/proxy/haproxy/render.ts'
import { resolveSettings } from '../../../src/proxy/haproxy/settings.ts'

const goldenDir = join(dirname(fileURLToPath(import.meta.url)), 'golden')
const settings = resolveSettings({ stateDir: '/var/lib/tether/proxy', cookieKey: 'config-text-cookie-key', listen: ':80', adminListen: ':8404' })
const route = (serviceName: string, paths: string[], endpoints: string[], domains?: string[]) =>
  normalizeRoute({ serviceName, destinations: [{ servicePath: paths, port: 80 }], endpoints, serviceDomain: domains, sticky: true })

describe('configuration text as sections', () => {
  it('gives back every golden configuration byte for byte', async () => {
    const files = (await readdir(goldenDir)).filter((f) => f.endsWith('.cfg'))
    assert.ok(files.length >= 5, files.join())
    for (const file of files) {
      const text = await readFile(join(goldenDir, file), 'utf8')
      const parsed = parseConfigText(text)
      assert.equal(configTextOf(parsed), text, file)
      assert.equal(parsed.sections.reduce((n, s) => n + s.lines, 0), text.split('\n').length - 1, `${file}: every line in one section`)
    }
  })

  it('replaces the server lines of one backend and leaves every other line as it was', () => {
    const rendered = render({ version: 1, routes: [route('a', ['/a'], ['10.0.0.1:80', '10.0.0.2:80']), route('b', ['/b'], [])] }, settings)
    const parsed = parseConfigText(rendered.config)
    assert.equal(withServers(parsed, 'svc_a_80', ['server x 10.0.0.9:80 check']), true)
    assert.equal(withServers(parsed, 'svc_b_80', ['server y 10.0.0.8:80']), true, 'a backend without servers gets them')
    assert.equal(withServers(parsed, 'svc_nope_80', []), false)
    const expected = rendered.config
      .replace('    server 10.0.0.1:80 10.0.0.1:80 check inter 2s fall 2 rise 1\n    server 10.0.0.2:80 10.0.0.2:80 check inter 2s fall 2 rise 1\n', '    server x 10.0.0.9:80 check\n')
      .replace(/(backend svc_b_80\n(?: {4}\S.*\n)+)/, '$1    server y 10.0.0.8:80\n')
    assert.notEqual(expected, rendered.config)
    assert.equal(configTextOf(parsed), expected)
  })

  it('checks only new and changed backends, and backends a rule names without their servers', () => {
    const before = render({ version: 1, routes: [route('a', ['/a'], ['10.0.0.1:80']), route('b', ['/'], ['10.0.0.2:80'], ['b.example']), route('c', ['/c'], ['10.0.0.3:80'])] }, settings)
    const after = render(
      { version: 2, routes: [route('a', ['/a'], ['10.0.0.1:80']), route('b', ['/'], ['10.0.0.2:80'], ['b.example']), route('c', ['/c'], ['10.0.0.4:80']), route('d', ['/d'], ['10.0.0.5:80'])] },
      settings,
    )
    const partial = checkConfigOf(parseConfigText(after.config), after.owners, parseConfigText(before.config))
    assert.deepEqual(partial.checked.sort(), ['svc_c_80', 'svc_d_80'])
    assert.equal(partial.skipped, 4, 'a, b, tether.metrics and tether.notfound were accepted before')
    assert.match(partial.config, /^global$/m)
    assert.match(partial.config, /^frontend http$/m)
    assert.match(partial.config, /\nbackend tether\.notfound\n {4}http-request return status 404/, 'named by default_backend: kept')
    // b is named by a use_backend rule: kept without its servers; a is only reached through the map: left out.
    assert.match(partial.config, /\nbackend svc_b_80\n {4}balance roundrobin\n {4}cookie TETHER_b /)
    assert.doesNotMatch(partial.config, /svc_a_80/)
    assert.match(partial.config, /server 10\.0\.0\.4:80 10\.0\.0\.4:80/)
    assert.doesNotMatch(partial.config, /10\.0\.0\.2:80/)
    // Each line keeps the services that produced it, so `haproxy -c` errors still blame the right route.
    const lines = partial.config.split('\n')
    assert.equal(partial.owners.length, lines.length - 1)
    const at = lines.findIndex((l) => l.includes('server 10.0.0.5:80'))
    assert.deepEqual(partial.owners[at], ['d'])
    const rule = lines.findIndex((l) => l.startsWith('    use_backend svc_b_80'))
    assert.deepEqual(partial.owners[rule], ['b'])
  })

  it('checks everything against nothing accepted but the sections themselves', () => {
    const rendered = render({ version: 1, routes: [route('a', ['/a'], ['10.0.0.1:80'])] }, settings)
    const partial = checkConfigOf(parseConfigText(rendered.config), rendered.owners, parseConfigText(''))
    assert.equal(partial.config, rendered.config)
    assert.deepEqual(partial.checked, ['tether.metrics', 'tether.notfound', 'svc_a_80'])
  })

  it('keeps a named backend in its place: after the defaults section that gives it its mode', () => {
    const text = (servers: string) =>
      ['defaults', '    mode http', '', 'frontend http', '    default_backend web', '', 'backend web', '    server a 10.0.0.1:80', '', 'defaults tcp', '    mode tcp', '', 'frontend tcp_5432', '    default_backend tcp_db', '', 'backend tcp_db', `    server ${servers}`, ''].join('\n') + '\n'
    const accepted = parseConfigText(text('b 10.0.0.2:5432'))
    const next = parseConfigText(text('b 10.0.0.2:5432'))
    const owners = text('x').split('\n').map(() => ['svc'])
    const partial = checkConfigOf(next, owners, accepted)
    assert.deepEqual(partial.checked, [])
    assert.equal(partial.config, ['defaults', '    mode http', '', 'frontend http', '    default_backend web', '', 'backend web', '', 'defaults tcp', '    mode tcp', '', 'frontend tcp_5432', '    default_backend tcp_db', '', 'backend tcp_db', ''].join('\n') + '\n')
  })
})
