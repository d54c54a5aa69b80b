/**
 * The production Engine: HAProxy in master-worker mode, driven from a rendered configuration.
 * apply(): render → write candidate → `haproxy -c` (isolating refused routes) → atomic
 * replace → start or hitless reload (verified on the master CLI) → report.
 */
import type { Engine } from '../engine.ts'
import type { HaproxyEngineSettings } from './settings.ts'

export type { HaproxyEngineSettings, EngineLogger } from './settings.ts'

/**
 * Creates the engine. Resolves once the HAProxy binary is known to work (its version is read);
 * HAProxy itself starts on the first apply(). Rejects with an error saying how to install
 * HAProxy when the binary is missing or unusable.
 */
export async function createHaproxyEngine(settings: HaproxyEngineSettings): Promise<Engine> {
  void settings
  throw new Error('createHaproxyEngine: not implemented yet')
}
