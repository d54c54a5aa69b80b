/**
 * Whether a path rewrite's regular expression will compile in HAProxy, which uses PCRE2, before
 * it is stored: a route HAProxy cannot load is left out by every proxy, so it must be refused
 * here with a 400 instead. JavaScript's parser is the nearest at hand, in its strict (unicode)
 * mode, which refuses what PCRE2 refuses and sloppy JavaScript takes (`\1` with no group, `\i`
 * and other unknown escapes, `\k` with no named group); what strict JavaScript still takes and
 * PCRE2 10.42 does not is refused by name. Found by the hostile-input fuzz with `haproxy -c` as
 * the oracle (test/proxy/haproxy/fuzz-oracle.test.ts).
 */

/** Why PCRE2 would refuse `source`, or null when it compiles. */
export function pcreProblem(source: string): string | null {
  try {
    new RegExp(source, 'u')
  } catch (err) {
    return `is not a valid regular expression (${(err as Error).message.replace(/^Invalid regular expression: /, '')})`
  }
  // PCRE2 has no \u escape (\x{...} is its form) and reads '[]' / '[^]' as the start of a class holding ']'.
  if (/(?:^|[^\\])(?:\\\\)*\\u/.test(source)) return "uses '\\u', which HAProxy's PCRE2 does not know; write '\\x{...}'"
  if (/(?:^|[^\\])(?:\\\\)*\[\^?\]/.test(source)) return "holds '[]' or '[^]', which HAProxy's PCRE2 reads differently; write an explicit class"
  // PCRE2 10.42 allows only fixed-length lookbehind.
  for (const m of source.matchAll(/\(\?<[=!]/g)) {
    const body = lookbehindBody(source, m.index + m[0].length)
    if (/[*+?{]/.test(body.replace(/\\./g, 'x'))) return 'holds a lookbehind of variable length, which HAProxy\'s PCRE2 refuses; give a fixed-length one'
  }
  return null
}

/** The text of the group that starts at `from` (just after its opening), up to its closing parenthesis. */
function lookbehindBody(source: string, from: number): string {
  let depth = 1
  for (let i = from; i < source.length; i++) {
    const c = source[i]
    if (c === '\\') i++
    else if (c === '(') depth++
    else if (c === ')' && --depth === 0) return source.slice(from, i)
  }
  return source.slice(from)
}
