// What every profile script shares: the npm packages (from TIDINGS_TEST_NODE_MODULES, the
// directory scripts/test installs them into), and reports to the Rust test as JSON lines on
// stdout. The seed documents' code runs unchanged around it: its console.log and
// console.error lines are reported as `{"log": [...args]}`, each EventSource says when it is
// open, and `record` reports every event of the names given with its exact data.
const path = require('path');
const modules = process.env.TIDINGS_TEST_NODE_MODULES;
if (!modules) throw new Error('TIDINGS_TEST_NODE_MODULES is not set (scripts/test sets it)');
const NpmEventSource = require(path.join(modules, 'eventsource'));
const WebSocket = require(path.join(modules, 'ws'));

const report = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const plain = (a) => {
  if (typeof a === 'string') return a;
  try {
    return JSON.parse(JSON.stringify(a));
  } catch (_) {
    return String(a);
  }
};
console.log = (...args) => report({ log: args.map(plain) });
console.error = (...args) => report({ error: args.map(plain) });

// npm's eventsource 2 takes the documents' `{ headers }`; like the WHATWG constructor, this
// one also takes a URL object (Cloudreve's example passes one), and it reports its opening.
class EventSource extends NpmEventSource {
  constructor(url, init) {
    super(String(url), init);
    const where = String(url);
    this.addEventListener('open', () => report({ open: where }));
  }
}

// WHATWG's `onerror`, `onopen` and `onmessage` are one handler each beside the listeners;
// eventsource 2's setters remove every listener of the type instead, which would silently
// drop the download manager's `addEventListener('error', …)` when its example sets
// `onerror`. These behave as a browser's do.
for (const name of ['open', 'error', 'message']) {
  const slot = Symbol(name);
  Object.defineProperty(EventSource.prototype, 'on' + name, {
    get() {
      return this[slot] ? this[slot].handler : null;
    },
    set(handler) {
      if (this[slot]) this.removeEventListener(name, this[slot].listener);
      this[slot] = null;
      if (typeof handler === 'function') {
        const listener = (e) => handler.call(this, e);
        this[slot] = { handler, listener };
        this.addEventListener(name, listener);
      }
    },
  });
}

// Reports each event named in `names` on `es`: its name, data (the exact text) and id.
function record(es, names, label) {
  for (const name of names) {
    es.addEventListener(name, (e) => {
      if (e.data === undefined) return; // the connection's own `error`, not an event
      report({ label, event: name, data: e.data, id: e.lastEventId });
    });
  }
}

process.on('uncaughtException', (e) => {
  report({ failed: String(e && e.stack ? e.stack : e) });
  process.exit(1);
});

module.exports = { EventSource, WebSocket, report, record };
