import { createMemoryRouteStore } from '../../../src/control/store/memory-route-store.ts'
import { describeRouteStoreContract } from './route-store.contract.ts'

describeRouteStoreContract('memory', async (options) => {
  // One process, one store: the "other replica" is the same instance.
  const store = createMemoryRouteStore(options)
  return { store, peer: store, close: () => store.close() }
})
