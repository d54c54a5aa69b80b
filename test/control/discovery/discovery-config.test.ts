import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { EnvError } from '../../../src/control/config.ts'
import { loadDiscoveryConfig } from '../../../src/control/discovery/discovery-config.ts'

describe('tether control: discovery settings from the environment', () => {
  it('is off unless TETHER_DISCOVERY=on, with the documented defaults', () => {
    assert.deepEqual(loadDiscoveryConfig({}), { enabled: false, intervalMs: 30_000, taskIntervalMs: 3_000, leaseTtlMs: 6_000, deprecations: [] })
    assert.equal(loadDiscoveryConfig({ TETHER_DISCOVERY: 'on' }).enabled, true)
    assert.match(loadDiscoveryConfig({ TETHER_SLOTS: '8' }).deprecations.join(), /TETHER_SLOTS is deprecated and ignored/)
  })
  it('fails at start naming the wrong variable', () => {
    assert.throws(() => loadDiscoveryConfig({ TETHER_DISCOVERY: 'yes' }), (e: unknown) => e instanceof EnvError && /^TETHER_DISCOVERY: must be one of 'on', 'off' \(got "yes"\)/.test(e.message))
    assert.throws(() => loadDiscoveryConfig({ TETHER_DISCOVERY_TASKS_MS: '10' }), (e: unknown) => e instanceof EnvError && /^TETHER_DISCOVERY_TASKS_MS: must be an integer from 500/.test(e.message))
  })
})
