#!/usr/bin/env node
/**
 * tether control | proxy | demo | backup | restore — one image, one CLI, several roles. Wiring only: each role's
 * module reads its own configuration from the environment and owns its process lifecycle.
 */
const roles: Record<string, () => Promise<{ main(): Promise<void> }>> = {
  control: () => import('./control/server.ts'),
  proxy: () => import('./proxy/main.ts'),
  demo: () => import('./demo/main.ts'),
  backup: () => import('./control/backup-cli.ts'),
  restore: () => import('./control/backup-cli.ts'),
}

const role = process.argv[2]
const load = role === undefined ? undefined : roles[role]
if (load === undefined) {
  process.stderr.write(`usage: tether <${Object.keys(roles).join('|')}>\n`)
  process.exit(role === undefined || role === '--help' || role === '-h' ? 0 : 64)
} else {
  const mod = await load()
  await mod.main()
}
