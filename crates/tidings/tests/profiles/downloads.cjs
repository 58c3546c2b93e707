// Seed 000 (the download manager's /events): the document's two examples, verbatim but for
// the block braces that keep their `const eventSource`s apart, plus a recorder that reports
// every one of the ten event types with its exact data. Run by tests/it/profiles.rs.
const { EventSource, record } = require('./harness.cjs');

// ---- "Examples", verbatim ----
{
const eventSource = new EventSource('http://localhost:1700/events', {
  headers: {
    'Authorization': 'Bearer YOUR_TOKEN'
  }
});

eventSource.addEventListener('progress', (e) => {
  const data = JSON.parse(e.data);
  console.log(`Progress: ${data.Downloaded}/${data.Total} bytes`);
});

eventSource.addEventListener('complete', (e) => {
  const data = JSON.parse(e.data);
  console.log(`Download complete: ${data.Filename}`);
});

eventSource.addEventListener('error', (e) => {
  const data = JSON.parse(e.data);
  console.error(`Download error: ${data.Err}`);
});

eventSource.onerror = (error) => {
  console.error('SSE connection error:', error);
};
}

// ---- "Building a Real-time Dashboard", verbatim ----
{
const downloads = new Map();

const eventSource = new EventSource('http://localhost:1700/events', {
  headers: { 'Authorization': 'Bearer YOUR_TOKEN' }
});

// Track all downloads
eventSource.addEventListener('queued', (e) => {
  const data = JSON.parse(e.data);
  downloads.set(data.DownloadID, {
    id: data.DownloadID,
    filename: data.Filename,
    status: 'queued',
    progress: 0
  });
  updateUI();
});

eventSource.addEventListener('started', (e) => {
  const data = JSON.parse(e.data);
  const download = downloads.get(data.DownloadID);
  if (download) {
    download.status = 'downloading';
    download.total = data.Total;
    updateUI();
  }
});

eventSource.addEventListener('progress', (e) => {
  const data = JSON.parse(e.data);
  const download = downloads.get(data.DownloadID);
  if (download) {
    download.downloaded = data.Downloaded;
    download.speed = data.Speed;
    download.progress = (data.Downloaded / data.Total) * 100;
    updateUI();
  }
});

eventSource.addEventListener('complete', (e) => {
  const data = JSON.parse(e.data);
  const download = downloads.get(data.DownloadID);
  if (download) {
    download.status = 'complete';
    download.progress = 100;
    updateUI();
  }
});

eventSource.addEventListener('paused', (e) => {
  const data = JSON.parse(e.data);
  const download = downloads.get(data.DownloadID);
  if (download) {
    download.status = 'paused';
    updateUI();
  }
});

function updateUI() {
  // Update your UI with the downloads Map
  console.log('Active downloads:', downloads.size);
}
}

// ---- the recorder ----
const recorder = new EventSource('http://localhost:1700/events', {
  headers: { 'Authorization': 'Bearer YOUR_TOKEN' }
});
record(recorder, ['progress', 'started', 'complete', 'error', 'paused', 'resumed', 'queued',
  'removed', 'request', 'system'], 'recorder');
