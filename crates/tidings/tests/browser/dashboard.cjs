// Drives Debian's chromium with playwright-core through the dashboard: the page opens with
// the admin token in the credential cookie, and reports each step on stdout as one JSON
// line; the Rust test (tests/it/dashboard.rs) publishes and connects subscribers when told,
// and says so on stdin.
//
// Usage: node dashboard.cjs HUB_URL ADMIN_TOKEN SCREENSHOT_PATH PUBLISH_TOKEN. Needs PLAYWRIGHT_CORE (the
// path of the playwright-core package) and CHROMIUM (the browser binary). No browser is
// downloaded.
const { chromium } = require(process.env.PLAYWRIGHT_CORE);
const readline = require('readline');

const [hub, token, screenshot, publishToken] = process.argv.slice(2);
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const lines = readline.createInterface({ input: process.stdin });
const next = () => new Promise((resolve) => lines.once('line', resolve));

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 1100 } });
    await context.addCookies([{ name: 'tidings_token', value: token, url: hub }]);
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    const response = await page.goto(hub + '/dashboard');
    if (response.status() !== 200) throw new Error('GET /dashboard answered ' + response.status());
    await page.waitForSelector('body[data-stream="open"]', { timeout: 20000 });
    await page.waitForFunction(() => document.getElementById('epoch').textContent !== '-', null, { timeout: 20000 });
    say({ ready: true, clients: Number(await page.textContent('#clients')) });

    // 1. The tail: the test published `alpha`; it must show within a second.
    await next();
    const t0 = Date.now();
    await page.waitForSelector('#tail details[data-type="alpha"]', { timeout: 10000 });
    say({ tail: 'alpha', ms: Date.now() - t0 });

    // 2. The client count, once the test's subscribers are connected.
    const want = (await next()).split(' ')[1];
    await page.waitForFunction((n) => document.getElementById('clients').textContent === n, want, { timeout: 20000 });
    say({ clients: Number(await page.textContent('#clients')) });

    // 3. Filter by type: the tail reopens with only `beta`.
    await page.fill('#type-filter', 'beta');
    await page.click('#apply-filter');
    await page.waitForSelector('body[data-filter="beta"][data-stream="open"]', { timeout: 20000 });
    say({ filter: 'beta' });
    await next();
    await page.waitForSelector('#tail details[data-type="beta"]', { timeout: 10000 });
    // Alpha events came in the same batch, so they would be in the same tail message.
    const types = await page.$$eval('#tail details', (ds) => [...new Set(ds.map((d) => d.dataset.type))]);
    say({ types });

    // 4. Filter by topic selector (and no type): only `dash/b` events show.
    await page.fill('#type-filter', '');
    await page.fill('#topic-filter', 'dash/b');
    await page.click('#apply-filter');
    await page.waitForSelector('body[data-topics="dash/b"][data-filter=""][data-stream="open"]', { timeout: 20000 });
    say({ topics: 'dash/b' });
    await next();
    await page.waitForSelector('#tail details[data-type="gamma"]', { timeout: 10000 });
    const shown = await page.$$eval('#tail details', (ds) => ds.map((d) => JSON.parse(d.querySelector('pre').textContent).topic));
    say({ tail_topics: [...new Set(shown)], types: await page.$$eval('#tail details', (ds) => [...new Set(ds.map((d) => d.dataset.type))].sort()) });

    // 5. A bad selector is refused, and the page says why.
    await page.fill('#topic-filter', 'a'.repeat(1100) + '*');
    await page.click('#apply-filter');
    await page.waitForFunction(() => document.getElementById('tail-note').textContent.startsWith('filter refused'), null, { timeout: 20000 });
    say({ refused: await page.textContent('#tail-note') });
    await page.fill('#topic-filter', 'dash/b');
    await page.click('#apply-filter');
    await page.waitForSelector('body[data-topics="dash/b"][data-stream="open"]', { timeout: 20000 });

    // 6. The publish form: without a token the hub refuses (the cookie is not sent); with
    //    one the event is published and shows in the tail.
    await page.fill('#publish-topic', 'dash/b');
    await page.fill('#publish-type', 'formed');
    await page.fill('#publish-data', '{"from": "the form"}');
    await page.click('#publish');
    await page.waitForSelector('#publish-result.bad', { timeout: 10000 });
    const refused = await page.textContent('#publish-result');
    await page.fill('#publish-token', publishToken);
    const t1 = Date.now();
    await page.click('#publish');
    await page.waitForSelector('#publish-result.ok', { timeout: 10000 });
    await page.waitForSelector('#tail details[data-type="formed"]', { timeout: 10000 });
    const formed = await page.$eval('#tail details[data-type="formed"] pre', (p) => JSON.parse(p.textContent));
    const stored = await page.evaluate(() => JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage }, cookie: document.cookie }));
    say({ published: await page.textContent('#publish-result'), refused, formed, ms: Date.now() - t1, stored });

    // Wait for one more stats message so the chart and tables are drawn, then the picture.
    const stamp = await page.textContent('#delivered');
    await page.waitForFunction((s) => document.getElementById('delivered').textContent !== s, stamp, { timeout: 20000 })
      .catch(() => {});
    await page.screenshot({ path: screenshot, fullPage: true });
    if (errors.length) throw new Error('page errors: ' + errors.join('; '));
    say({ screenshot });
  } finally {
    await browser.close();
    lines.close();
  }
})().catch((e) => { say({ failed: String(e && e.stack || e) }); process.exit(1); });
