import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { rules } from '../../../src/contracts/route.ts'
import { routesFromServices } from '../../../src/control/discovery/swarm-labels.ts'
import type { SwarmService } from '../../../src/control/discovery/swarm-client.ts'

const service = (name: string, labels: Record<string, string>): SwarmService => ({ id: `id-${name}`, name, labels, mode: 'replicated', replicas: 2 })

describe('Swarm labels → routes (Docker Flow Swarm Listener labels)', () => {
  const routed: Array<{ name: string; labels: Record<string, string>; route: object }> = [
    {
      name: 'a plain labelled service',
      labels: { 'com.df.notify': 'true', 'com.df.servicePath': '/demo', 'com.df.port': '8080' },
      route: { serviceName: 'web', destinations: [{ servicePath: ['/demo'], port: 8080 }], serviceDomain: [], sticky: false, endpoints: [] },
    },
    {
      name: 'comma-separated paths, trailing slash normalised',
      labels: { 'com.df.notify': 'true', 'com.df.servicePath': '/a/,/b', 'com.df.port': '80' },
      route: { serviceName: 'web', destinations: [{ servicePath: ['/a', '/b'], port: 80 }], serviceDomain: [], sticky: false, endpoints: [] },
    },
    {
      name: "Docker Flow Proxy's sticky spelling",
      labels: { 'com.df.notify': 'true', 'com.df.servicePath': '/', 'com.df.port': '80', 'com.df.sessionType': 'sticky-server' },
      route: { serviceName: 'web', destinations: [{ servicePath: ['/'], port: 80 }], serviceDomain: [], sticky: true, endpoints: [] },
    },
    {
      name: "Tether's sticky shorthand and cookie name",
      labels: { 'com.df.notify': 'true', 'com.df.servicePath': '/s', 'com.df.port': '80', 'com.df.sticky': 'true', 'com.df.stickyCookie': 'JSESSIONID_ROUTE' },
      route: { serviceName: 'web', destinations: [{ servicePath: ['/s'], port: 80 }], serviceDomain: [], sticky: true, stickyCookie: 'JSESSIONID_ROUTE', endpoints: [] },
    },
    {
      name: 'domains lower-cased, sorted, de-duplicated',
      labels: { 'com.df.notify': 'true', 'com.df.servicePath': '/', 'com.df.port': '80', 'com.df.serviceDomain': 'B.example.com,a.example.com,*.example.org,a.example.com' },
      route: { serviceName: 'web', destinations: [{ servicePath: ['/'], port: 80 }], serviceDomain: ['*.example.org', 'a.example.com', 'b.example.com'], sticky: false, endpoints: [] },
    },
    {
      name: 'indexed destinations in numeric order',
      labels: {
        'com.df.notify': 'true',
        'com.df.servicePath': '/api',
        'com.df.port': '8080',
        'com.df.servicePath.10': '/ten',
        'com.df.port.10': '9010',
        'com.df.servicePath.2': '/two',
        'com.df.port.2': '8080',
      },
      route: {
        serviceName: 'web',
        destinations: [
          { servicePath: ['/api'], port: 8080 },
          { servicePath: ['/two'], port: 8080 },
          { servicePath: ['/ten'], port: 9010 },
        ],
        serviceDomain: [],
        sticky: false,
        endpoints: [],
      },
    },
    {
      name: 'only indexed labels',
      labels: { 'com.df.notify': 'true', 'com.df.servicePath.1': '/one', 'com.df.port.1': '81' },
      route: { serviceName: 'web', destinations: [{ servicePath: ['/one'], port: 81 }], serviceDomain: [], sticky: false, endpoints: [] },
    },
    {
      name: 'other com.df.* labels are ignored',
      labels: { 'com.df.notify': 'true', 'com.df.servicePath': '/x', 'com.df.port': '80', 'com.df.reqMode': 'http', 'com.df.distribute': 'true' },
      route: { serviceName: 'web', destinations: [{ servicePath: ['/x'], port: 80 }], serviceDomain: [], sticky: false, endpoints: [] },
    },
  ]
  for (const c of routed) {
    it(`routes ${c.name}`, () => {
      assert.deepEqual(routesFromServices([service('web', c.labels)]), { routes: [c.route], problems: [] })
    })
  }

  const ignored: Array<{ name: string; labels: Record<string, string> }> = [
    { name: 'no com.df.notify', labels: { 'com.df.servicePath': '/x', 'com.df.port': '80' } },
    { name: 'com.df.notify=false', labels: { 'com.df.notify': 'false', 'com.df.servicePath': '/x', 'com.df.port': '80' } },
    { name: 'no labels at all', labels: {} },
    // Docker Flow Monitor's labels share com.df.notify: nothing to route is no problem (DFP answers 409, which DFSL counts as done).
    { name: 'only monitoring labels (com.df.notify, a port, alerts; no path, no domain)', labels: { 'com.df.notify': 'true', 'com.df.port': '80', 'com.df.scrapePort': '9100', 'com.df.alertName': 'mem' } },
  ]
  for (const c of ignored) {
    it(`ignores a service with ${c.name}, and reports nothing`, () => {
      assert.deepEqual(routesFromServices([service('web', c.labels)]), { routes: [], problems: [] })
    })
  }

  const notify = { 'com.df.notify': 'true' }
  const refused: Array<{ name: string; labels: Record<string, string>; messages: string[]; serviceName?: string }> = [
    { name: 'no port', labels: { ...notify, 'com.df.servicePath': '/x' }, messages: [`com.df.port: is required; it ${rules.port.text}`] },
    // The same rule as the API's DFP form (one parser): no fallback to com.df.port, no trimming.
    {
      name: 'an indexed path without its port',
      labels: { ...notify, 'com.df.servicePath': '/x', 'com.df.port': '80', 'com.df.servicePath.1': '/y' },
      messages: [`com.df.port.1: is required; it ${rules.port.text}`],
    },
    { name: 'a port with spaces', labels: { ...notify, 'com.df.servicePath': '/x', 'com.df.port': ' 80' }, messages: [`com.df.port: " 80" ${rules.port.text}`] },
    { name: 'a path list with a space', labels: { ...notify, 'com.df.servicePath': '/a, /b', 'com.df.port': '80' }, messages: [`com.df.servicePath: " /b" ${rules.servicePath.text}`] },
    {
      name: 'a path with a space',
      labels: { ...notify, 'com.df.servicePath': '/a b', 'com.df.port': '80' },
      messages: [`com.df.servicePath: "/a b" ${rules.servicePath.text}`],
    },
    {
      name: 'a path that would inject a HAProxy directive',
      labels: { ...notify, 'com.df.servicePath': '/x\n  server evil 1.2.3.4:80', 'com.df.port': '80' },
      messages: [`com.df.servicePath: "/x\\n  server evil 1.2.3.4:80" ${rules.servicePath.text}`],
    },
    { name: 'a port that is not a number', labels: { ...notify, 'com.df.servicePath': '/x', 'com.df.port': 'http' }, messages: [`com.df.port: "http" ${rules.port.text}`] },
    { name: 'port 0', labels: { ...notify, 'com.df.servicePath': '/x', 'com.df.port': '0' }, messages: [`com.df.port: "0" ${rules.port.text}`] },
    { name: 'port 70000', labels: { ...notify, 'com.df.servicePath': '/x', 'com.df.port': '70000' }, messages: [`com.df.port: "70000" ${rules.port.text}`] },
    {
      name: 'an indexed port without its path',
      labels: { ...notify, 'com.df.servicePath': '/x', 'com.df.port': '80', 'com.df.port.1': '81' },
      messages: [`com.df.servicePath.1: is required (or serviceDomain.1); it ${rules.servicePath.text}`],
    },
    {
      name: 'a bad domain',
      labels: { ...notify, 'com.df.servicePath': '/x', 'com.df.port': '80', 'com.df.serviceDomain': 'bad_domain.com' },
      messages: [`com.df.serviceDomain: "bad_domain.com" ${rules.serviceDomain.text}`],
    },
    {
      name: 'an unknown session type',
      labels: { ...notify, 'com.df.servicePath': '/x', 'com.df.port': '80', 'com.df.sessionType': 'sticky-client' },
      messages: [`com.df.sessionType: "sticky-client" must be 'sticky-server' (the only session type Docker Flow Proxy defines)`],
    },
    {
      name: 'com.df.sticky=yes',
      labels: { ...notify, 'com.df.servicePath': '/x', 'com.df.port': '80', 'com.df.sticky': 'yes' },
      messages: ['com.df.sticky: "yes" must be true or false'],
    },
    {
      name: 'a cookie name with a semicolon',
      labels: { ...notify, 'com.df.servicePath': '/x', 'com.df.port': '80', 'com.df.sticky': 'true', 'com.df.stickyCookie': 'a;b' },
      messages: [`com.df.stickyCookie: "a;b" ${rules.stickyCookie.text}`],
    },
    {
      name: 'a service name longer than 63 characters',
      serviceName: 'x'.repeat(64),
      labels: { ...notify, 'com.df.servicePath': '/x', 'com.df.port': '80' },
      messages: [`service name is 64 characters long; ${rules.serviceName.text}`],
    },
    {
      name: 'several faults at once, the first reported (as the API does)',
      labels: { ...notify, 'com.df.servicePath': '/ok,/no way', 'com.df.port': '80', 'com.df.sticky': 'maybe' },
      messages: [`com.df.servicePath: "/no way" ${rules.servicePath.text}`],
    },
  ]
  for (const c of refused) {
    it(`refuses ${c.name}, with a problem that names the label`, () => {
      const name = c.serviceName ?? 'web'
      const result = routesFromServices([service(name, c.labels)])
      assert.deepEqual(result.routes, [])
      assert.deepEqual(
        result.problems,
        c.messages.map((message) => ({ serviceName: name, message })),
      )
    })
  }

  it('refuses a path longer than the API allows, with the API\'s sentence', () => {
    const long = `/${'a'.repeat(300)}`
    const result = routesFromServices([service('web', { ...notify, 'com.df.servicePath': long, 'com.df.port': '80' })])
    assert.deepEqual(result.problems, [{ serviceName: 'web', message: `com.df.servicePath: is 301 characters long; ${rules.servicePath.text}, at most 256 characters` }])
  })

  it('maps every service on its own: one bad service does not stop the others', () => {
    const result = routesFromServices([
      service('zeta', { ...notify, 'com.df.servicePath': '/z', 'com.df.port': '80' }),
      service('broken', { ...notify, 'com.df.servicePath': '/b', 'com.df.port': 'x' }),
      service('alpha', { ...notify, 'com.df.servicePath': '/a', 'com.df.port': '80' }),
      service('plain', {}),
    ])
    assert.deepEqual(
      result.routes.map((r) => r.serviceName),
      ['alpha', 'zeta'],
    )
    assert.deepEqual(
      result.problems.map((p) => p.serviceName),
      ['broken'],
    )
  })
})
