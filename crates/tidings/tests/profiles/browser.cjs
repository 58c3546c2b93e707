// The seed documents' client code in a real browser: Debian's chromium driven by
// playwright-core (it never downloads a browser). One page per profile, on that profile's
// own origin; each runs the document's example with what a browser must do differently
// (docs/profiles.md, "In a browser"): the download manager's stream takes a one-time ticket
// in the URL instead of the Authorization header; Cloudreve's takes the JWT as the
// credential cookie and the client id as `clientId=` instead of headers; the camera's and
// NZB Flow's run verbatim. Native EventSource and WebSocket are wrapped only to report what
// they receive. Everything is reported to tests/it/profiles_browser.rs as JSON lines.
//
// Usage: node browser.cjs TICKET JWT. Needs PLAYWRIGHT_CORE and CHROMIUM.
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const [ticket, jwt] = process.argv.slice(2);
const report = (o) => process.stdout.write(JSON.stringify(o) + '\n');

// Installed in every page before its scripts: reports opens, every event's exact data, and
// every WebSocket message's exact text, through `console.debug`.
function wrap() {
  const report = (o) => console.debug('REPORT ' + JSON.stringify(o));
  const NativeES = window.EventSource;
  const names = ['progress', 'started', 'complete', 'error', 'paused', 'resumed', 'queued',
    'removed', 'request', 'system', 'connected', 'disconnected', 'propertyChanged',
    'afStatus', 'downloadComplete', 'transferProgress', 'contentsTransfer',
    'operationResult', 'subscribed', 'event', 'keep-alive', 'reconnect-required'];
  window.EventSource = class extends NativeES {
    constructor(url, init) {
      super(url, init);
      this.addEventListener('open', () => report({ open: String(url) }));
      for (const n of names) {
        this.addEventListener(n, (e) => {
          if (e.data !== undefined) report({ event: n, data: e.data, id: e.lastEventId });
        });
      }
    }
  };
  const NativeWS = window.WebSocket;
  window.WebSocket = class extends NativeWS {
    constructor(url, protocols) {
      super(url, protocols);
      this.addEventListener('open', () => report({ open: String(url) }));
      this.addEventListener('message', (e) => report({ message: String(e.data) }));
    }
  };
}

const pages = {
  // Seed 000, "Examples" and the dashboard: a ticket instead of the header.
  downloads: {
    origin: 'http://localhost:1700',
    code: `
const eventSource = new EventSource('http://localhost:1700/events?ticket=${ticket}');
eventSource.addEventListener('progress', (e) => {
  const data = JSON.parse(e.data);
  console.log(\`Progress: \${data.Downloaded}/\${data.Total} bytes\`);
});
eventSource.addEventListener('complete', (e) => {
  const data = JSON.parse(e.data);
  console.log(\`Download complete: \${data.Filename}\`);
});
eventSource.addEventListener('error', (e) => {
  const data = JSON.parse(e.data);
  console.error(\`Download error: \${data.Err}\`);
});
eventSource.onerror = (error) => {
  console.error('SSE connection error:', error);
};
`,
  },
  // Seed 001, "Example", verbatim.
  camera: {
    origin: 'http://localhost:8080',
    code: `
const events = new EventSource("http://localhost:8080/api/events");
events.addEventListener("downloadComplete", (e) => {
console.log("File saved:", JSON.parse(e.data).savedPath);
});
events.addEventListener("propertyChanged", (e) => {
const { codes } = JSON.parse(e.data);
// Refresh affected properties via getProperty / getAllProperties
});
`,
  },
  // Seed 002, "Example": the cookie carries the JWT, clientId= the client id.
  files: {
    origin: 'http://localhost:5212',
    cookie: jwt,
    code: `
const clientId = localStorage.getItem('clientId') || crypto.randomUUID();
localStorage.setItem('clientId', clientId);
function connect() {
const url = new URL('/api/v4/file/events', 'http://localhost:5212');
url.searchParams.set('uri', 'cloudreve://my');
url.searchParams.set('clientId', clientId);
const eventSource = new EventSource(url);
eventSource.addEventListener('subscribed', (e) => {
console.log('Subscription established');
});
eventSource.addEventListener('resumed', (e) => {
console.log('Subscription resumed');
});
eventSource.addEventListener('event', (e) => {
const events = JSON.parse(e.data);
for (const event of events) {
console.log(\`\${event.type}: \${event.from} -> \${event.to}\`);
}
});
eventSource.addEventListener('reconnect-required', (e) => {
eventSource.close();
connect(); // Reconnect immediately
});
eventSource.onerror = (e) => {
eventSource.close();
setTimeout(connect, 5000); // Reconnect with delay
};
}
connect();
`,
  },
  // Seed 003, "Basic Monitoring", verbatim.
  tasks: {
    origin: 'http://localhost:3001',
    code: `
const ws = new WebSocket('ws://localhost:3001?token=YOUR_TOKEN');

ws.onmessage = (event) => {
  const response = JSON.parse(event.data);

  if (response.success) {
    switch (response.data.type) {
      case 'queue-update':
        console.log('Queue status:', response.data);
        break;
      case 'command-progress':
        console.log(\`Task \${response.data.id}: \${response.data.percentage}%\`);
        break;
      case 'task-finished':
        console.log('Task completed:', response.data.taskConfig.name);
        break;
    }
  }
};
`,
  },
};

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  try {
    const context = await browser.newContext();
    await context.addInitScript(wrap);
    for (const [label, page] of Object.entries(pages)) {
      if (page.cookie) {
        await context.addCookies([
          { name: 'tidings_token', value: page.cookie, url: page.origin, httpOnly: true },
        ]);
      }
      const p = await context.newPage();
      p.on('console', async (m) => {
        const text = m.text();
        if (text.startsWith('REPORT ')) {
          report({ label, ...JSON.parse(text.slice(7)) });
          return;
        }
        const args = await Promise.all(m.args().map((a) => a.jsonValue().catch(() => String(a))));
        report({ label, [m.type() === 'error' ? 'error' : 'log']: args });
      });
      // A page of the profile's own origin (the hub answers 404 JSON there), so every
      // stream is same-origin, as on the systems the documents describe.
      await p.goto(page.origin + '/page');
      await p.addScriptTag({ content: page.code });
    }
    await new Promise(() => {}); // until the test is done with us
  } catch (e) {
    report({ failed: String(e && e.stack ? e.stack : e) });
    await browser.close();
    process.exit(1);
  }
})();
