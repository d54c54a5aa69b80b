/**
 * A real headless Chromium for a test (playwright-core, Debian's chromium): its own profile
 * directory, loopback only (any other request is aborted), closed and removed after the test.
 */
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { chromium, type BrowserContext, type Page } from 'playwright-core'

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

/** The reason to skip browser tests, or false. Outside CI a missing chromium skips; in CI it fails. */
export const skipWithoutChromium: string | false =
  !existsSync(CHROMIUM) && process.env.CI !== 'true' ? `chromium not found at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)` : false

export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

export async function openBrowser(t: TestContext | undefined, viewport = { width: 1280, height: 800 }): Promise<{ context: BrowserContext; page: Page; close(): Promise<void> }> {
  const profile = await mkdtemp(join(tmpdir(), 'tether-chromium-'))
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000, viewport })
  let closed: Promise<void> | undefined
  const close = (): Promise<void> => {
    closed ??= context.close().finally(() => rm(profile, { recursive: true, force: true }))
    return closed
  }
  t?.after(close)
  const page = context.pages()[0] ?? (await context.newPage())
  page.setDefaultTimeout(15_000)
  // Only loopback: refuse anything else the page might try to load.
  await page.route(/^(?!http:\/\/127\.0\.0\.1[:/]).*/, (route) => route.abort())
  return { context, page, close }
}
