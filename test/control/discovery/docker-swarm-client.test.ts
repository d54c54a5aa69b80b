/**
 * The dockerode edge: Docker's JSON (as the Engine API 1.41 sends it) → Tether's types. The
 * calls themselves run against a real dockerd in test/swarm/.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { toSwarmService, toSwarmTask } from '../../../src/control/discovery/docker-swarm-client.ts'

describe('dockerode output → SwarmService / SwarmTask', () => {
  it('reads a replicated service with its labels', () => {
    const service = toSwarmService({
      ID: 'q0x6nu2yn6jf',
      Version: { Index: 42 },
      Spec: {
        Name: 'tether_sticky',
        Labels: { 'com.df.notify': 'true', 'com.docker.stack.namespace': 'tether' },
        Mode: { Replicated: { Replicas: 2 } },
        TaskTemplate: { ContainerSpec: { Image: 'tether:swarm-test', Labels: { 'com.df.port': 'not read: container label' } } },
      },
    })
    assert.deepEqual(service, { id: 'q0x6nu2yn6jf', name: 'tether_sticky', labels: { 'com.df.notify': 'true', 'com.docker.stack.namespace': 'tether' }, mode: 'replicated', replicas: 2 })
  })

  it('reads a global service, and a service without labels', () => {
    assert.deepEqual(toSwarmService({ ID: 'g1', Spec: { Name: 'proxy', Mode: { Global: {} } } }), { id: 'g1', name: 'proxy', labels: {}, mode: 'global', replicas: null })
  })

  it('reads a task: overlay addresses without prefix, the ingress network left out', () => {
    const task = toSwarmTask(
      {
        ID: 'so2jboa497nux64kmaj4yy0yz',
        Slot: 1,
        NodeID: 'mz9x7mrnjotf',
        Status: { State: 'running', Timestamp: '2026-11-22T03:34:40Z' },
        DesiredState: 'running',
        NetworksAttachments: [
          { Network: { ID: 'ing', Spec: { Name: 'ingress', Ingress: true } }, Addresses: ['10.0.0.9/24'] },
          { Network: { ID: 'ov', Spec: { Name: 'tether_tether' } }, Addresses: ['10.0.1.7/24'] },
        ],
      },
      'tether_sticky',
    )
    assert.deepEqual(task, { id: 'so2jboa497nux64kmaj4yy0yz', serviceName: 'tether_sticky', slot: 1, nodeId: 'mz9x7mrnjotf', state: 'running', addresses: ['10.0.1.7'] })
  })

  it('reads a global task (no slot) that has no network yet', () => {
    assert.deepEqual(toSwarmTask({ ID: 't', NodeID: 'n', Status: { State: 'starting' } }, 'proxy'), { id: 't', serviceName: 'proxy', slot: null, nodeId: 'n', state: 'starting', addresses: [] })
  })
})
