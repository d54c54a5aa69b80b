// Placeholder until this role lands; replaced by its owner.
export async function main(): Promise<void> {
  process.stderr.write('tether: this role is not built yet\n')
  process.exit(70)
}
