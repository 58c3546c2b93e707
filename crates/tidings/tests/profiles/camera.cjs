// Seed 001 (the camera server's /api/events): the document's example, verbatim, plus
// recorders of every event name on /api/events and on one camera's stream
// (/api/cameras/SN42/events). Run by tests/it/profiles.rs.
const { EventSource, record } = require('./harness.cjs');

// ---- "Example", verbatim ----
const events = new EventSource("http://localhost:8080/api/events");
events.addEventListener("downloadComplete", (e) => {
console.log("File saved:", JSON.parse(e.data).savedPath);
});
events.addEventListener("propertyChanged", (e) => {
const { codes } = JSON.parse(e.data);
// Refresh affected properties via getProperty / getAllProperties
});

// ---- the recorders ----
const names = ['connected', 'disconnected', 'propertyChanged', 'afStatus', 'downloadComplete',
  'transferProgress', 'contentsTransfer', 'operationResult', 'error'];
record(new EventSource('http://localhost:8080/api/events'), names, 'all');
record(new EventSource('http://localhost:8080/api/cameras/SN42/events'), names, 'SN42');
