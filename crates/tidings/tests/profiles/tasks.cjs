// Seed 003 (NZB Flow's WebSocket server): the document's "Basic Monitoring" example,
// verbatim, with npm's `ws` as WebSocket, plus a recorder of every message's exact text.
// Run by tests/it/profiles.rs.
const { WebSocket, report } = require('./harness.cjs');

// ---- "Basic Monitoring", verbatim ----
const ws = new WebSocket('ws://localhost:3001?token=YOUR_TOKEN');

ws.onmessage = (event) => {
  const response = JSON.parse(event.data);

  if (response.success) {
    switch (response.data.type) {
      case 'queue-update':
        console.log('Queue status:', response.data);
        break;
      case 'command-progress':
        console.log(`Task ${response.data.id}: ${response.data.percentage}%`);
        break;
      case 'task-finished':
        console.log('Task completed:', response.data.taskConfig.name);
        break;
    }
  }
};

// ---- the recorder ----
ws.addEventListener('open', () => report({ open: 'ws://localhost:3001' }));
ws.addEventListener('message', (event) => report({ message: String(event.data) }));
ws.addEventListener('close', (event) => report({ close: event.code }));
