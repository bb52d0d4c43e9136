// Drives the SQL console in headless Chromium as an analyst would: pick an example, run queries,
// see errors, download CSV. Usage: node console.mjs CONSOLE_URL SCREENSHOT_PATH [USER PASSWORD].
// Prints one JSON object with what the page showed at each step.
import { readFile } from 'node:fs/promises'
import { chromium } from 'playwright-core'

const [consoleUrl, screenshotPath, user, password] = process.argv.slice(2)
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
})
const out = { consoleErrors: [] }
try {
  const page = await browser.newPage({ acceptDownloads: true, viewport: { width: 1280, height: 800 } })
  page.on('console', (message) => { if (message.type() === 'error') out.consoleErrors.push(message.text()) })
  page.on('pageerror', (error) => out.consoleErrors.push(error.message))
  await page.goto(consoleUrl)
  await page.waitForSelector('#examples li button')
  if (user !== undefined) {
    await page.fill('#user', user)
    await page.fill('#password', password)
  }
  out.examples = await page.$$eval('#examples li button', (buttons) => buttons.map((b) => b.textContent))

  async function run(sql) {
    await page.fill('#query', sql)
    await page.click('#run')
    await page.waitForFunction(() => !document.querySelector('#run').disabled)
    return page.evaluate(() => ({
      error: document.querySelector('#error').hidden ? null : document.querySelector('#error').textContent,
      headers: [...document.querySelectorAll('#result th')].map((th) => th.firstChild.textContent),
      rows: [...document.querySelectorAll('#result tr')].slice(1).map((tr) => [...tr.cells].map((td) => td.textContent)),
      summary: document.querySelector('#summary').textContent,
      text: document.querySelector('#text').hidden ? null : document.querySelector('#text').textContent,
    }))
  }

  out.table = await run('SELECT number AS n, toString(number * 2) AS twice FROM numbers(3)')
  out.ownFormat = await run('SELECT 1 AS one FORMAT TSVWithNames')
  out.unknownTable = await run('SELECT * FROM no_such_table')
  out.fileFunction = await run("SELECT * FROM file('/etc/passwd', 'LineAsString')")

  await page.fill('#query', 'SELECT number AS n, toString(number * 2) AS twice FROM numbers(3)')
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')])
  out.download = { name: download.suggestedFilename(), body: await readFile(await download.path(), 'utf8') }

  await page.click('#examples li:first-child button')
  await page.waitForFunction(() => document.querySelector('#summary').textContent !== '' ||
    !document.querySelector('#error').hidden)
  out.example = await page.evaluate(() => ({
    query: document.querySelector('#query').value,
    error: document.querySelector('#error').hidden ? null : document.querySelector('#error').textContent,
    summary: document.querySelector('#summary').textContent,
    headers: [...document.querySelectorAll('#result th')].map((th) => th.firstChild.textContent),
  }))
  await page.screenshot({ path: screenshotPath, fullPage: true })
} finally {
  await browser.close()
}
console.log(JSON.stringify(out))
