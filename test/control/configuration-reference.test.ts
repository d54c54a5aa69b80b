import assert from 'node:assert/strict'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { configurationReference, roles } from '../../scripts/write-config-docs.ts'

const root = new URL('../../', import.meta.url)

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(new URL(dir, root), { withFileTypes: true })
  const nested = await Promise.all(entries.map((e) => (e.isDirectory() ? sourceFiles(join(dir, e.name)) : Promise.resolve(e.name.endsWith('.ts') ? [join(dir, e.name)] : []))))
  return nested.flat()
}

describe('docs/configuration.md', () => {
  it('is exactly what the environment schemas generate (run `npm run docs:config` after changing one)', async () => {
    const committed = await readFile(new URL('docs/configuration.md', root), 'utf8')
    assert.equal(configurationReference(), committed)
  })

  it('gives every variable of every role a row with its description and default', () => {
    const page = configurationReference()
    let rows = 0
    for (const role of roles) {
      const section = page.slice(page.indexOf(`## ${role.title}:`))
      for (const { schema } of role.schemas) {
        for (const [name, property] of Object.entries(schema.properties as Record<string, { description?: string; default?: unknown }>)) {
          assert.ok(property.description !== undefined && property.description.length > 10, `${name} (${role.title}) has no description in its schema`)
          const row = section.split('\n').find((line) => line.startsWith(`| \`${name}\` |`))
          assert.ok(row !== undefined, `${name} has no row under ${role.title}`)
          assert.ok(row.includes(property.description.split('|')[0]!.trim().slice(0, 40)), `${name}'s row does not carry its description`)
          if (property.default !== undefined) assert.ok(row.includes(property.default === '' ? '| empty |' : `\`${String(property.default)}\``), `${name}'s row does not show its default`)
          rows++
        }
      }
    }
    assert.ok(rows >= 60, `only ${rows} variables documented`)
    // The required ones say so: a proxy does not start without a control plane URL.
    assert.match(page, /^\| `TETHER_CONTROL_URL` \| .* \| \*\*required\*\* \|/m)
    assert.match(page, /^\| `PORT` \| integer, 0 to 65,535 \| `8080` \|/m)
  })

  it('documents every variable the code reads: src/ reads the environment only through the schemas', async () => {
    const files = await sourceFiles('src')
    assert.ok(files.includes(join('src', 'control', 'config.ts')), 'the scan saw src/control/config.ts')
    const documented = new Set(roles.flatMap((r) => r.schemas.flatMap((s) => Object.keys(s.schema.properties))))
    const direct: string[] = []
    for (const file of files) {
      const text = await readFile(new URL(file, root), 'utf8')
      // Passing process.env to a loader is the one use allowed; reading a variable from it is not.
      for (const match of text.matchAll(/process\.env(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[)/g)) direct.push(`${file}: ${match[0]}`)
      for (const match of text.matchAll(/\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b/g)) {
        // A variable named in a loader's schema file but missing from the page would be a gap.
        if (/Type\.|loadEnv/.test(text) && match[0].startsWith('TETHER_') && text.includes(`${match[0]}:`) && !documented.has(match[0])) direct.push(`${file}: ${match[0]} undocumented`)
      }
    }
    assert.deepEqual(direct, [])
    assert.ok(documented.has('TETHER_CONTROL_URL') && documented.has('REDIS_URL') && documented.has('TETHER_URL'))
  })
})
