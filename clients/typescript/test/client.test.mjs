// tidings-client under Node against the real `tidings` binary over real sockets: publish
// then subscribe (listeners and async iterator), the headers it sends (token, client id,
// Last-Event-ID), a kill -9 and restart under 10 publishers over SSE and WebSocket (every
// acknowledged event exactly once, in order per topic), reset, reconnect-required on a
// graceful shutdown, the backoff schedule with time controlled, a permanent 401, and
// since: "snapshot" / client.snapshot() handing off to live events exactly.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";

import { TidingsClient, TidingsError, Backoff } from "../dist/index.js";
import { Hub, until, WAIT_MS } from "./support.mjs";

/** The next item of an async iterator within the deadline. */
async function next(iter, what = "an item") {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} in time`)), WAIT_MS);
  });
  try {
    const r = await Promise.race([iter.next(), timeout]);
    assert.equal(r.done, false, `the subscription ended while waiting for ${what}`);
    return r.value;
  } finally {
    clearTimeout(timer);
  }
}

async function nextEvent(iter) {
  for (;;) {
    const item = await next(iter, "an event");
    if (item.kind === "event") return item.event;
    assert.notEqual(item.kind, "reset", "unexpected reset");
  }
}

test("publish then subscribe: listeners, async iterator, parsed data", async () => {
  const hub = await Hub.start(["--durability", "memory"]);
  try {
    const client = new TidingsClient({ url: hub.url });
    const first = await client.publish({
      topic: "downloads/abc-123",
      type: "progress",
      key: "abc-123",
      data: { DownloadID: "abc-123", Downloaded: 52428800, Total: 104857600 },
    });
    assert.match(first, /^[0-9a-f]+-1$/);
    const ids = await client.publish([
      { topic: "downloads/abc-123", type: "complete", data: { Filename: "file.zip" } },
      { topic: "system", type: "system", data: { Message: "hello" } },
    ]);
    assert.equal(ids.length, 2);
    assert.ok(ids[0].endsWith("-2") && ids[1].endsWith("-3"), ids.join());

    const sub = client.subscribe("downloads/*", { since: "earliest" });
    const progress = [];
    const all = [];
    sub.addEventListener("progress", (e) => progress.push(`${e.data.Downloaded}/${e.data.Total}`));
    const off = sub.on("*", (e) => all.push(e.type));
    const iter = sub[Symbol.asyncIterator]();
    const connected = await next(iter);
    assert.equal(connected.kind, "connected");
    assert.equal(connected.connected.resumedFrom, "earliest");
    const e1 = await nextEvent(iter);
    assert.equal(e1.id, first);
    assert.equal(e1.type, "progress");
    assert.deepEqual(e1.data, { DownloadID: "abc-123", Downloaded: 52428800, Total: 104857600 });
    assert.equal(e1.rawData, '{"DownloadID":"abc-123","Downloaded":52428800,"Total":104857600}');
    const e2 = await nextEvent(iter);
    assert.equal(e2.type, "complete");
    assert.equal(e2.id, ids[0]);
    // Live: published after the subscription caught up.
    const live = await client.publish({ topic: "downloads/x", type: "progress", data: { Downloaded: 1, Total: 2 } });
    const e3 = await nextEvent(iter);
    assert.equal(e3.id, live);
    assert.equal(sub.lastEventId, live);
    assert.deepEqual(progress, ["52428800/104857600", "1/2"]);
    assert.deepEqual(all, ["progress", "complete", "progress"]);
    off();
    sub.close();
    assert.deepEqual(await iter.next(), { done: true, value: undefined });
    assert.equal(sub.closed, true);

    // Bad input is a 4xx with the hub's code, not retried.
    await assert.rejects(client.publish({ topic: "", type: "x" }), (e) => {
      assert.ok(e instanceof TidingsError);
      assert.equal(e.code, "invalid_topic");
      assert.equal(e.status, 422);
      assert.equal(e.permanent, true);
      return true;
    });
  } finally {
    await hub.close();
  }
});

test("every request carries the token and client id; a reconnect carries Last-Event-ID", async () => {
  const hub = await Hub.start(["--durability", "durable", "--token", "ts-secret-1:publish=*;subscribe=*"]);
  try {
    // The real fetch, watched: what goes on the wire is what the hub gets.
    const sent = [];
    const watched = (url, init) => {
      sent.push({ url: String(url), headers: { ...init.headers } });
      return fetch(url, init);
    };
    const client = new TidingsClient({ url: hub.url, token: "ts-secret-1", clientId: "dashboard-7", fetch: watched });
    // Another publisher: the hub never echoes a client's own publishes back to its session.
    const publisher = new TidingsClient({ url: hub.url, token: "ts-secret-1", fetch: watched });
    const id = await publisher.publish({ topic: "a", type: "t", data: 1 });
    const sub = client.subscribe("a", { since: "earliest" });
    const iter = sub[Symbol.asyncIterator]();
    assert.equal((await nextEvent(iter)).id, id);
    // The hub drains (graceful restart): the client reconnects from the last id.
    await hub.stop();
    await hub.spawn();
    const later = await publisher.publish({ topic: "a", type: "t", data: 2 });
    assert.equal((await nextEvent(iter)).id, later);
    sub.close();
    const publishes = sent.filter((s) => s.url.endsWith("/publish"));
    const streams = sent.filter((s) => s.url.includes("/events"));
    assert.equal(publishes.length, 2);
    for (const s of sent) assert.equal(s.headers["authorization"], "Bearer ts-secret-1");
    for (const s of streams) assert.equal(s.headers["x-client-id"], "dashboard-7");
    assert.match(publishes[0].headers["idempotency-key"], /^[0-9a-f]{32}$/);
    assert.notEqual(publishes[0].headers["idempotency-key"], publishes[1].headers["idempotency-key"]);
    assert.equal(streams[0].headers["last-event-id"], "earliest");
    assert.equal(streams.at(-1).headers["last-event-id"], id);
    // Over a WebSocket (Node's can send headers): the hub requires the token, so an event
    // arriving proves it was sent; the constructor is watched for the client id.
    const opened = [];
    class Watched extends WebSocket {
      constructor(url, init) {
        opened.push({ url, headers: init?.headers });
        super(url, init);
      }
    }
    const wsClient = new TidingsClient({ url: hub.url, token: "ts-secret-1", clientId: "dashboard-7", WebSocket: Watched });
    const wsSub = wsClient.subscribe("a", { since: { after: id }, transport: "websocket" });
    const wsIter = wsSub[Symbol.asyncIterator]();
    const wsEvent = await nextEvent(wsIter);
    assert.equal(wsEvent.id, later);
    assert.equal(wsEvent.topic, "a");
    wsSub.close();
    assert.equal(opened[0].headers["authorization"], "Bearer ts-secret-1");
    assert.equal(opened[0].headers["x-client-id"], "dashboard-7");
    assert.equal(new URL(opened[0].url).searchParams.get("lastEventId"), id);
    // Errors never carry the token.
    const wrong = new TidingsClient({ url: hub.url, token: "not-the-secret" });
    await assert.rejects(wrong.publish({ topic: "a", type: "t" }), (e) => {
      assert.ok(!String(e.message).includes("not-the-secret"));
      return true;
    });
  } finally {
    await hub.close();
  }
});

for (const transport of ["sse", "websocket"]) {
  test(`kill -9 and restart mid-stream under 10 publishers (${transport}): exactly once, in order`, async () => {
    const PUBLISHERS = 10;
    const hub = await Hub.start(["--durability", "durable"]);
    try {
      const client = new TidingsClient({ url: hub.url });
      const sub = client.subscribe("load/*", { since: "earliest", transport });
      const received = [];
      const disconnects = [];
      sub.on("*", (e) => received.push(e));
      sub.ondisconnect = (d) => disconnects.push(d);

      const acked = [];
      let running = true;
      const publishers = Array.from({ length: PUBLISHERS }, async (_, p) => {
        for (let n = 0; running; n++) {
          try {
            const id = await client.publish({ topic: `load/${p}`, type: "tick", key: `p${p}`, data: { p, n } });
            acked.push({ id, p, n });
          } catch (e) {
            // Retries ran out while the hub was down: not acknowledged; the next goes on.
            assert.ok(e instanceof TidingsError && !e.permanent, String(e));
          }
        }
      });
      await until(() => received.length >= 200, "events before the kill");
      await hub.restart();
      const afterRestart = acked.length;
      await until(() => acked.length >= afterRestart + 200, "publishes after the restart");
      running = false;
      await Promise.all(publishers);
      const ackedIds = new Set(acked.map((a) => a.id));
      await until(() => {
        const got = new Set(received.map((e) => e.id));
        for (const id of ackedIds) if (!got.has(id)) return false;
        return true;
      }, "every acknowledged event");
      sub.close();

      const ids = received.map((e) => e.id);
      assert.equal(new Set(ids).size, ids.length, "no event twice");
      const last = new Map();
      for (const e of received) {
        const { p, n } = e.data;
        if (transport === "websocket") assert.equal(e.topic, `load/${p}`);
        const before = last.get(p) ?? -1;
        assert.ok(n > before, `topic load/${p}: ${n} after ${before}`);
        last.set(p, n);
      }
      assert.ok(disconnects.some((d) => d.cause === "failed"), "the kill was seen");
    } finally {
      await hub.close();
    }
  });
}

test("a cursor the hub cannot honour yields a reset, then the stream goes on", async () => {
  const hub = await Hub.start(["--durability", "memory"]);
  try {
    const client = new TidingsClient({ url: hub.url });
    await client.publish({ topic: "a", type: "t", data: 1 });
    const { epoch } = await hub.readyz();
    // An id far ahead of this hub's head: it cannot have been issued here.
    const sub = client.subscribe("a", { since: { after: `${epoch}-999999` } });
    const resets = [];
    sub.addEventListener("reset", (r) => resets.push(r));
    const iter = sub[Symbol.asyncIterator]();
    let item;
    do item = await next(iter, "a reset");
    while (item.kind !== "reset");
    assert.equal(item.reset.reason, "cursor_ahead");
    assert.ok(item.reset.cursor.startsWith(`${epoch}-`), item.reset.cursor);
    assert.deepEqual(resets, [item.reset]);
    assert.equal(sub.lastEventId, item.reset.cursor);
    const live = await client.publish({ topic: "a", type: "t", data: 2 });
    assert.equal((await nextEvent(iter)).id, live);
    sub.close();
  } finally {
    await hub.close();
  }
});

test("reconnect-required on a graceful shutdown: followed at once, resumed after the restart", async () => {
  const hub = await Hub.start(["--durability", "durable"]);
  try {
    const delays = [];
    const client = new TidingsClient({
      url: hub.url,
      sleep: (ms, signal) => {
        delays.push(ms);
        return new Promise((r, j) => {
          const t = setTimeout(r, Math.min(ms, 50));
          signal.addEventListener("abort", () => (clearTimeout(t), j(signal.reason)), { once: true });
        });
      },
    });
    const before = await client.publish({ topic: "a", type: "t", data: 1 });
    const sub = client.subscribe("a", { since: "earliest" });
    const iter = sub[Symbol.asyncIterator]();
    assert.equal((await nextEvent(iter)).id, before);
    await hub.stop();
    let item;
    do item = await next(iter, "the disconnect");
    while (item.kind !== "disconnected");
    assert.equal(item.disconnected.cause, "reconnect-required");
    assert.equal(item.disconnected.reason, "shutdown");
    assert.equal(item.disconnected.retryInMs, 0, "at once");
    await hub.spawn();
    const after = await client.publish({ topic: "a", type: "t", data: 2 });
    const e = await nextEvent(iter);
    assert.equal(e.id, after, "resumed after the last id: nothing repeated, nothing lost");
    sub.close();
  } finally {
    await hub.close();
  }
});

/** A loopback port nothing listens on. */
async function deadPort() {
  const srv = createServer();
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

test("backoff with time controlled: 1 s doubling to 32 s, retry: hint, reset after success", async () => {
  // Pure schedule, with jitter in (base/2, base].
  const b = Backoff.reconnect();
  assert.deepEqual([0, 0, 0].map(() => b.nextDelay(0)), [1000, 2000, 4000]);
  const j = b.nextDelay(0.999);
  assert.ok(j > 4000 && j <= 8000, String(j));

  // Against nothing listening: the client asks to wait 1, 2, 4 … 32, 32 s.
  const port = await deadPort();
  const delays = [];
  let release;
  const gate = () => new Promise((r) => (release = r));
  let waiting = gate();
  const sleep = async (ms, signal) => {
    delays.push(ms);
    if (delays.length >= 8) await Promise.race([waiting, new Promise((_, j2) => signal.addEventListener("abort", () => j2(signal.reason)))]);
  };
  const dead = new TidingsClient({ url: `http://127.0.0.1:${port}`, sleep, random: () => 0 });
  const sub = dead.subscribe("a");
  await until(() => delays.length >= 8, "eight attempts");
  assert.deepEqual(delays.slice(0, 8), [1000, 2000, 4000, 8000, 16000, 32000, 32000, 32000]);
  sub.close();
  release();

  // A hub whose retry: hint is 3 s: after a successful connection breaks, the schedule
  // starts from the hint again, doubling.
  const hub = await Hub.start(["--durability", "memory", "--sse-retry", "3s"]);
  try {
    // A clock the test controls: a wait returns at once while fewer than `limit` were
    // asked for, else it holds until the test raises the limit.
    const seen = [];
    let limit = Infinity;
    let opened = 0;
    const client = new TidingsClient({
      url: hub.url,
      random: () => 0,
      sleep: async (ms, signal) => {
        seen.push(ms);
        await until(() => signal.aborted || seen.length < limit + 1, "the test's clock", 60_000);
      },
    });
    const s = client.subscribe("a");
    s.onopen = () => (opened += 1);
    await until(() => opened === 1, "the first connection");
    limit = 3;
    await hub.kill9();
    await until(() => seen.length >= 3, "three failed attempts");
    assert.deepEqual(seen.slice(0, 3), [3000, 6000, 12000]);
    await hub.spawn();
    limit = Infinity;
    await until(() => opened === 2, "the reconnect");
    limit = seen.length + 1;
    const count = seen.length;
    await hub.kill9();
    await until(() => seen.length >= count + 1, "a failure after the reconnect");
    assert.equal(seen[count], 3000, "a success resets the schedule");
    s.close();
  } finally {
    await hub.close();
  }
});

test("a 401 is permanent: the subscription ends with it, publish does not retry", async () => {
  const hub = await Hub.start(["--durability", "memory", "--token", "right-secret-1:publish=*;subscribe=*"]);
  try {
    let calls = 0;
    const counted = (url, init) => {
      calls += 1;
      return fetch(url, init);
    };
    const client = new TidingsClient({ url: hub.url, token: "wrong-secret-1", fetch: counted });
    await assert.rejects(client.publish({ topic: "a", type: "t" }), (e) => e.kind === "unauthorized" && e.permanent);
    assert.equal(calls, 1, "no retry");
    calls = 0;
    const sub = client.subscribe("a");
    let closedWith;
    sub.onclose = (e) => (closedWith = e);
    const iter = sub[Symbol.asyncIterator]();
    await assert.rejects(iter.next(), (e) => e instanceof TidingsError && e.kind === "unauthorized" && e.status === 401);
    assert.equal(closedWith?.kind, "unauthorized");
    assert.equal(sub.closed, true);
    assert.equal(calls, 1, "no reconnect after a permanent error");
    assert.deepEqual(await iter.next(), { done: true, value: undefined });
  } finally {
    await hub.close();
  }
});

/** Publishes `progress` for keys k0..k{keys-1}, `rounds` times over; returns the ids. */
async function publishKeyed(client, keys, rounds, from) {
  const ids = [];
  for (let n = from; n < from + keys * rounds; n++) {
    const key = `k${n % keys}`;
    ids.push(await client.publish({ topic: "snap/t", type: "progress", key, data: { n, key } }));
  }
  return ids;
}

test('since: "snapshot" on SSE and WebSocket, and client.snapshot(): state, then live, no gap or duplicate', async () => {
  const hub = await Hub.start(["--durability", "durable"]);
  try {
    const client = new TidingsClient({ url: hub.url });
    const keys = 5;
    const before = await publishKeyed(client, keys, 4, 0);
    const newest = before.slice(-keys);

    const snap = await client.snapshot("snap/*");
    assert.equal(snap.cursor, before.at(-1));
    assert.deepEqual(snap.events.map((e) => e.id), newest);
    assert.deepEqual(
      { topic: snap.events[0].topic, key: snap.events[0].key, data: snap.events[0].data },
      { topic: "snap/t", key: "k0", data: { n: 15, key: "k0" } },
    );
    await assert.rejects(client.snapshot(""), (e) => e instanceof TidingsError && e.kind === "invalid_input");

    const subs = ["sse", "websocket"].map((transport) => {
      const sub = client.subscribe("snap/*", { since: "snapshot", transport });
      const ends = [];
      sub.addEventListener("snapshot", (end) => ends.push(end.cursor));
      return { transport, sub, ends, iter: sub[Symbol.asyncIterator]() };
    });
    const afterCursor = client.subscribe("snap/*", { since: { after: snap.cursor } });
    const afterIter = afterCursor[Symbol.asyncIterator]();
    // Publishers keep going while the snapshots are taken.
    const publishing = publishKeyed(client, keys, 6, 1000);
    const cursors = [];
    for (const { transport, iter } of subs) {
      const got = [];
      let cursor;
      while (cursor === undefined) {
        const item = await next(iter, `${transport}: the snapshot`);
        assert.notEqual(item.kind, "reset", `${transport}: unexpected reset`);
        if (item.kind === "event") got.push(item.event.id);
        if (item.kind === "snapshot") cursor = item.snapshot.cursor;
      }
      assert.equal(got.length, keys, `${transport}: ${got}`);
      assert.equal(got.at(-1), cursor, transport);
      cursors.push(cursor);
    }
    const later = await publishing;
    const all = [...before, ...later];
    subs.forEach(({ transport, iter, sub, ends }, i) => {
      assert.deepEqual(ends, [cursors[i]], `${transport}: the "snapshot" listener`);
      assert.equal(sub.lastEventId !== undefined, true);
      subs[i].check = (async () => {
        const live = [];
        while (live.at(-1) !== all.at(-1)) live.push((await nextEvent(iter)).id);
        const at = all.indexOf(cursors[i]);
        assert.ok(at >= 0, `${transport}: cursor ${cursors[i]} was not published`);
        assert.deepEqual(live, all.slice(at + 1), `${transport}: a gap or a duplicate`);
      })();
    });
    await Promise.all(subs.map((s) => s.check));
    const live = [];
    while (live.at(-1) !== all.at(-1)) live.push((await nextEvent(afterIter)).id);
    assert.deepEqual(live, later, "after client.snapshot()'s cursor: exactly the later events");
    for (const { sub } of subs) sub.close();
    afterCursor.close();
  } finally {
    await hub.close();
  }
});
