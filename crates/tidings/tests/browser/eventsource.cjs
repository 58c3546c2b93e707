// Drives Debian's chromium with playwright-core: a page of the hub's origin opens a native
// EventSource, first with the credential cookie, then with a one-time ticket from
// POST /tickets, and reports every step on stdout as one JSON line. The Rust test
// (tests/it/browser.rs) publishes when told a stream is open and checks what arrived.
//
// Usage: node eventsource.cjs HUB_URL TOKEN. Needs PLAYWRIGHT_CORE (the path of the
// playwright-core package) and CHROMIUM (the browser binary). No browser is downloaded.
const { chromium } = require(process.env.PLAYWRIGHT_CORE);
const readline = require('readline');

const [hub, token] = process.argv.slice(2);
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const lines = readline.createInterface({ input: process.stdin });
const next = () => new Promise((resolve) => lines.once('line', resolve));

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  try {
    const context = await browser.newContext();
    await context.addCookies([{ name: 'tidings_token', value: token, url: hub, httpOnly: true }]);
    const page = await context.newPage();
    await page.goto(hub + '/healthz');

    // Opens an EventSource on `path`, reports `open`, then resolves with the first
    // `t` event's data (or the error the browser saw).
    const stream = (path, label) => page.evaluate(([path, label]) => new Promise((resolve) => {
      const es = new EventSource(path, { withCredentials: true });
      window.__streams = window.__streams || {};
      window.__streams[label] = es;
      es.onopen = () => console.log('OPEN ' + label);
      es.addEventListener('t', (e) => { es.close(); resolve({ data: e.data, id: e.lastEventId }); });
      es.onerror = () => { if (es.readyState === EventSource.CLOSED) resolve({ error: 'closed' }); };
    }), [path, label]);
    page.on('console', (m) => {
      const text = m.text();
      if (text.startsWith('OPEN ')) say({ open: text.slice(5) });
    });

    // 1. The cookie: no header, no query credential.
    const byCookie = stream('/events?topic=browser/cookie', 'cookie');
    await next(); // published
    say({ cookie: await byCookie });

    // 2. A ticket minted by the page with the bearer token, used once.
    const ticket = await page.evaluate(async (token) => {
      const r = await fetch('/tickets', {
        method: 'POST',
        headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
        body: JSON.stringify({ topics: ['browser/ticket'] }),
      });
      return { status: r.status, body: await r.json() };
    }, token);
    say({ minted: ticket.status, expires_in: ticket.body.expires_in });
    await context.clearCookies();
    const byTicket = stream('/events?topic=browser/ticket&ticket=' + ticket.body.ticket, 'ticket');
    await next(); // published
    say({ ticket: await byTicket });
  } finally {
    await browser.close();
    lines.close();
  }
})().catch((e) => { say({ failed: String(e && e.stack || e) }); process.exit(1); });
