/**
 * npm run openapi: writes openapi/openapi.json from the app's schemas, exactly as the server
 * serves it at /openapi.json (test/control/openapi.test.ts fails when the two drift apart).
 */
import { writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { buildApp } from '../src/control/app.ts'
import { createMemoryRouteStore } from '../src/control/store/memory-route-store.ts'

/** The document as served by an app with authentication on (the production default). */
export async function openApiDocument(): Promise<unknown> {
  const store = createMemoryRouteStore()
  const app = await buildApp({ store, auth: { apiTokens: new Map([['openapi-document-token', 'openapi']]) } })
  try {
    const res = await app.inject({ method: 'GET', url: '/openapi.json' })
    return res.json()
  } finally {
    await app.close()
    await store.close()
  }
}

export const openApiText = (doc: unknown): string => `${JSON.stringify(doc, null, 2)}\n`

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const target = new URL('../openapi/openapi.json', import.meta.url)
  await writeFile(target, openApiText(await openApiDocument()))
  process.stdout.write(`wrote ${fileURLToPath(target)}\n`)
}
