/**
 * The last known good snapshot on disk, so that a proxy restarted while the control plane is
 * down serves the routes it served before. Written atomically (temp file in the same
 * directory, fsync, rename): a crash mid-write leaves the previous file intact, never a
 * truncated one.
 */
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { Compile } from 'typebox/compile'
import { ConfigSnapshotSchema, type ConfigSnapshot } from '../contracts/config-snapshot.ts'

const checkSnapshot = Compile(ConfigSnapshotSchema)

export const LAST_KNOWN_GOOD_FILE = 'last-known-good.json'

export interface StateStore {
  /** Absolute path of the snapshot file. */
  readonly file: string
  /**
   * The saved snapshot, or null when there is none. A file that is not a valid snapshot
   * (hand-edited, older format) is reported through `onInvalid` and treated as absent.
   */
  load(): Promise<ConfigSnapshot | null>
  /** Replaces the saved snapshot atomically. Calls must not overlap (the agent serialises them). */
  save(snapshot: ConfigSnapshot): Promise<void>
}

export interface StateStoreOptions {
  dir: string
  onInvalid?: (reason: string) => void
}

export async function createStateStore(options: StateStoreOptions): Promise<StateStore> {
  await mkdir(options.dir, { recursive: true })
  const file = join(options.dir, LAST_KNOWN_GOOD_FILE)
  let writes = 0
  return {
    file,
    async load() {
      let text: string
      try {
        text = await readFile(file, 'utf8')
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
        throw error
      }
      let value: unknown
      try {
        value = JSON.parse(text)
      } catch (error) {
        options.onInvalid?.(`${file} is not JSON: ${(error as Error).message}`)
        return null
      }
      if (!checkSnapshot.Check(value)) {
        const first = [...checkSnapshot.Errors(value)][0]
        options.onInvalid?.(`${file} is not a config snapshot: ${first?.instancePath ?? ''} ${first?.message ?? ''}`.trim())
        return null
      }
      return value
    },
    async save(snapshot) {
      writes += 1
      const temp = join(options.dir, `.${LAST_KNOWN_GOOD_FILE}.${process.pid}.${writes}.tmp`)
      const handle = await open(temp, 'w', 0o600)
      try {
        await handle.writeFile(JSON.stringify(snapshot))
        await handle.sync()
      } catch (error) {
        await handle.close()
        await rm(temp, { force: true })
        throw error
      }
      await handle.close()
      await rename(temp, file)
    },
  }
}
