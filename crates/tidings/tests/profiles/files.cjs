// Seed 002 (Cloudreve's file events): the document's example, verbatim but for the site's
// address (this hub's port 5212 instead of https://your-site.com), with what a browser page
// would provide: `localStorage`, and the `accessToken` its app holds (argv[2]). A recorder
// reports every event with its exact data. Run by tests/it/profiles.rs.
const { EventSource: RecordingEventSource, record } = require('./harness.cjs');

const stored = new Map();
const localStorage = {
  getItem: (k) => (stored.has(k) ? stored.get(k) : null),
  setItem: (k, v) => stored.set(k, String(v)),
};
const accessToken = process.argv[2];
// The document's client, and every connection it makes, is recorded as it goes.
class EventSource extends RecordingEventSource {
  constructor(url, init) {
    super(url, init);
    record(this, ['subscribed', 'resumed', 'event', 'keep-alive', 'reconnect-required'], 'doc');
  }
}

// ---- "Example", verbatim but for the address ----
const clientId = localStorage.getItem('clientId') || crypto.randomUUID();
localStorage.setItem('clientId', clientId);
function connect() {
const url = new URL('/api/v4/file/events', 'http://localhost:5212');
url.searchParams.set('uri', 'cloudreve://my');
const eventSource = new EventSource(url, {
headers: {
'Authorization': `Bearer ${accessToken}`,
'X-Cr-Client-Id': clientId
}
});
eventSource.addEventListener('subscribed', (e) => {
console.log('Subscription established');
});
eventSource.addEventListener('resumed', (e) => {
console.log('Subscription resumed');
});
eventSource.addEventListener('event', (e) => {
const events = JSON.parse(e.data);
for (const event of events) {
console.log(`${event.type}: ${event.from} -> ${event.to}`);
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

console.log('clientId', clientId);
