#!/usr/bin/env node
// Prints the test files of one suite, for package.json's test scripts:
//   unit        in-process only: Fastify inject, the memory store, fake clocks and engines
//   functional  real redis-server, HAProxy, backends, browsers (everything but unit and swarm)
//   swarm       a real dockerd and Swarm (test/swarm)
//   dataplane   the functional tests of the proxy (test/proxy): what CI runs again on HAProxy 3.0
//   browser     the functional tests in a headless Chromium (test/browser)
//   control     the other functional tests (control plane on Redis, demo, image, deploy)
//   all         every test file
// functional = dataplane + browser + control; one suite alone: node --import tsx --test $(node scripts/test-files.mjs control)
// A file is unit by where it lives, minus the few there that start a real server (listed).
import { readdirSync } from 'node:fs'
import { join } from 'node:path'

const walk = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.test.ts') ? [join(dir, e.name)] : []))

const all = walk('test').sort()
const unitRoots = ['test/contracts/', 'test/control/', 'test/proxy/config.test.ts', 'test/proxy/state-store.test.ts', 'test/proxy/agent.test.ts']
const startsServers = ['test/control/functional/', 'test/control/store/redis-', 'test/control/store/route-store-equivalence.test.ts', 'test/control/certificates/certificate-store.test.ts']
const isUnit = (f) => unitRoots.some((r) => f.startsWith(r)) && !startsServers.some((s) => f.startsWith(s))
const isSwarm = (f) => f.startsWith('test/swarm/')
const isDataplane = (f) => f.startsWith('test/proxy/') && !isUnit(f)
const isBrowser = (f) => f.startsWith('test/browser/')

const suites = {
  unit: all.filter(isUnit),
  functional: all.filter((f) => !isUnit(f) && !isSwarm(f)),
  swarm: all.filter(isSwarm),
  dataplane: all.filter(isDataplane),
  browser: all.filter(isBrowser),
  control: all.filter((f) => !isUnit(f) && !isSwarm(f) && !isDataplane(f) && !isBrowser(f)),
  all,
}
const files = suites[process.argv[2] ?? 'all']
if (files === undefined) {
  process.stderr.write(`usage: test-files.mjs unit|functional|swarm|dataplane|browser|control|all\n`)
  process.exit(2)
}
process.stdout.write(files.join('\n') + '\n')
