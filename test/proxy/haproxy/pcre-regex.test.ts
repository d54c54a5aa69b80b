/**
 * Path rewrites are compiled by HAProxy's PCRE2: the control plane refuses what PCRE2 refuses,
 * so no proxy has to leave a stored route out. Regression: the DFP form accepted `~\1` (valid
 * sloppy JavaScript: an octal escape), which `haproxy -c` refuses ("reference to non-existent
 * subpattern"); found by the hostile-input fuzz. Each verdict of the table is checked against
 * `haproxy -c` itself.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { normalizeRoute } from '../../../src/contracts/route.ts'
import { pcreProblem } from '../../../src/control/input/pcre-regex.ts'
import { createOracle } from '../../helpers/haproxy-oracle.ts'
import { api, startControl } from '../../control/harness.ts'

const cases: Array<[string, boolean]> = [
  ['^/api/v1/(.*)', true],
  ['^/f/v1/([^/]+)$', true],
  ['\\.json$', true],
  ['(?<=/v1)/x', true],
  ['(?<name>a)\\k<name>', true],
  ['\\x{41}', false], // PCRE2 takes it; strict JavaScript does not: refused, and said so
  ['~\\1', false],
  ['(a)\\2', false],
  ['\\i', false],
  ['\\k', false],
  ['\\u0041', false],
  ['[]', false],
  ['[^]', false],
  ['(?<=a+)b', false],
  ['(?<=x{1,3})b', false],
  ['(', false],
]

describe('path rewrite regular expressions (PCRE2 in HAProxy)', () => {
  for (const [source, ok] of cases) {
    it(`${ok ? 'accepts' : 'refuses'} ${source}${ok ? ', and haproxy -c compiles it' : ''}`, async (t) => {
      const problem = pcreProblem(source)
      if (!ok) {
        assert.notEqual(problem, null)
        return
      }
      assert.equal(problem, null)
      const oracle = await createOracle()
      t.after(() => oracle.close())
      const route = normalizeRoute({ serviceName: 'rw', destinations: [{ servicePath: ['/rw'], port: 80, pathRewrite: [{ search: source, replace: '/x' }] }] })
      const { check } = await oracle.judge({ version: 1, routes: [route] })
      assert.equal(check.ok, true, check.output)
    })
  }

  it('haproxy -c refuses the ones PCRE2 cannot compile (the reason to refuse them)', async (t) => {
    const oracle = await createOracle()
    t.after(() => oracle.close())
    for (const source of ['~\\1', '\\i', '(?<=a+)b', '\\u0041']) {
      const route = normalizeRoute({ serviceName: 'rw', destinations: [{ servicePath: ['/rw'], port: 80, pathRewrite: [{ search: source, replace: '/x' }] }] })
      const { check } = await oracle.judge({ version: 1, routes: [route] })
      assert.equal(check.ok, false, `haproxy -c took ${source}`)
      assert.match(check.output, /regex/)
    }
  })

  it('the Docker Flow Proxy form answers 400 naming the parameter, and stores nothing', async (t) => {
    const control = await startControl(t)
    for (const [param, value] of [['reqPathSearch', '~\\1'], ['reqPathSearchReplace', '(?<=a+)b,/x']] as const) {
      const res = await control.app.inject({ method: 'PUT', url: `/v1/docker-flow-proxy/reconfigure?serviceName=rw&servicePath=/rw&port=80&${param}=${encodeURIComponent(value)}`, headers: api })
      assert.equal(res.statusCode, 400, res.body)
      assert.equal(res.json().code, 'VALIDATION_FAILED')
      assert.match(res.json().message, new RegExp(`^${param}: `))
    }
    assert.equal(await control.store.version(), 0)
    const fine = await control.app.inject({ method: 'PUT', url: `/v1/docker-flow-proxy/reconfigure?serviceName=rw&servicePath=/rw&port=80&reqPathSearch=${encodeURIComponent('^/rw/(.*)')}&reqPathReplace=/${encodeURIComponent('\\1')}`, headers: api })
    assert.equal(fine.statusCode, 200, fine.body)
  })
})
