// The SSE decoder on the WHATWG parsing rules, fed in every split of its input: line ends
// (LF, CR, CRLF, also split between chunks), multi-line data, comments, `id` persisting and
// NUL ids ignored, `retry` digits only, an event without data dispatching nothing, and the
// frame bound.

import { test } from "node:test";
import assert from "node:assert/strict";

import { SseDecoder, TidingsError } from "../dist/index.js";

const STREAM =
  ": keepalive\r\nretry: 2000\r\nretry: 2s\r\n\r\n" +
  "id: e-1\nevent: progress\ndata: {\"a\":1}\n\n" +
  "event: complete\rdata: line one\rdata: line two\r\r" +
  "id: bad\0id\ndata\ndata:  two spaces\n\n" +
  "event: nothing\nid: e-9\n\n" +
  "data: last\r\n\r\n";

const WANT = [
  { kind: "retry", ms: 2000 },
  { kind: "event", type: "progress", data: '{"a":1}', lastEventId: "e-1" },
  { kind: "event", type: "complete", data: "line one\nline two", lastEventId: "e-1" },
  { kind: "event", type: "message", data: "\n two spaces", lastEventId: "e-1" },
  { kind: "event", type: "message", data: "last", lastEventId: "e-9" },
];

test("every split of the stream decodes to the same items", () => {
  for (let cut = 0; cut <= STREAM.length; cut++) {
    const d = new SseDecoder(1 << 20);
    const out = [];
    d.feed(STREAM.slice(0, cut), out);
    d.feed(STREAM.slice(cut), out);
    assert.deepEqual(out, WANT, `split at ${cut}`);
  }
  const d = new SseDecoder(1 << 20);
  const out = [];
  for (const c of STREAM) d.feed(c, out);
  assert.deepEqual(out, WANT, "one character at a time");
});

test("a line or an event longer than the bound is a protocol error", () => {
  const long = new SseDecoder(16);
  assert.throws(() => long.feed("data: " + "x".repeat(20), []), (e) => e instanceof TidingsError && e.kind === "protocol");
  const many = new SseDecoder(16);
  assert.throws(() => many.feed("data: 12345\n".repeat(4), []), (e) => e instanceof TidingsError && e.kind === "protocol");
});
