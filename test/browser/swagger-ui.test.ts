/**
 * An operator's path through the Swagger UI, in a real headless Chromium: open /docs,
 * authorize with the API token, "Try it out" on PUT /v1/reconfigure, get 200, and find the
 * route in GET /v1/routes. Only the required fields are filled: the optional ones show their
 * example but start empty, so the stored route holds only what was typed.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { API_TOKEN, startControl } from '../control/harness.ts'
import { openBrowser, skipWithoutChromium as skip } from './chromium.ts'

describe('Swagger UI at /docs', { skip }, () => {
  it('lets an operator authorize, run "Try it out" on reconfigure with only the required fields, get 200, and find exactly those stored', async (t) => {
    const { app } = await startControl(t)
    const base = await app.listen({ port: 0, host: '127.0.0.1' })
    const { page } = await openBrowser(t)

    await page.goto(`${base}/docs`)
    await page.locator('button.authorize').first().click()
    await page.locator('.auth-container input').first().fill(API_TOKEN)
    await page.locator('.auth-btn-wrapper button.authorize').first().click()
    await page.locator('.auth-btn-wrapper button.btn-done').first().click()

    const op = page.locator('#operations-routes-putReconfigure')
    await op.locator('.opblock-summary').first().click()
    // The description's placeholder is shown, not swallowed as an HTML tag.
    assert.match(await op.locator('tr[data-param-name="serviceName"]').innerText(), /tasks\.<serviceName>/)
    await op.locator('button.try-out__btn').click()
    // Optional parameters are shown with an example, and left empty.
    for (const name of ['serviceDomain', 'stickyCookie', 'endpoints', 'timeout']) {
      const row = op.locator(`tr[data-param-name="${name}"]`)
      assert.equal(await row.locator('input').inputValue(), '', `${name} is not pre-filled`)
      assert.match(await row.innerText(), /Example:/, `${name} shows its example`)
    }
    await op.locator('tr[data-param-name="serviceName"] input').fill('swagger-demo')
    await op.locator('tr[data-param-name="servicePath"] input').fill('/from-the-ui')
    await op.locator('tr[data-param-name="port"] input').fill('8080')
    await op.locator('button.execute').click()
    const status = op.locator('.live-responses-table .response .response-col_status').first()
    await status.waitFor()
    assert.equal((await status.innerText()).trim(), '200')

    const routes = (await app.inject({ url: '/v1/routes' })).json()
    const route = routes.routes.find((r: { route: { serviceName: string } }) => r.route.serviceName === 'swagger-demo')
    assert.ok(route !== undefined, 'the route made in the UI is stored')
    // Only what was typed (and the defaults): no example domain, cookie or endpoint slipped in.
    assert.deepEqual(route.route, { serviceName: 'swagger-demo', destinations: [{ servicePath: ['/from-the-ui'], port: 8080 }], serviceDomain: [], sticky: false, endpoints: [] })
    assert.equal(route.actor, 'ci', "the UI's request carried the token")
  })
})
