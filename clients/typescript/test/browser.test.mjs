// tidings-client in Debian's Chromium, driven by playwright-core (never a downloaded
// browser): a page on the hub's own origin (its /healthz) loads the built module, publishes from the page,
// and holds an SSE and a WebSocket subscription while the hub is killed with -9 and
// restarted under 10 publishers; both see every acknowledged event exactly once, in order
// per topic. A second page trades its token for a connect ticket and opens the browser's
// native EventSource with it. Only the module's files are served by the test; every request
// to the hub goes over a real socket.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

import { TidingsClient, TidingsError } from "../dist/index.js";
import { Hub, until } from "./support.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const dist = resolve(here, "../dist");
const CHROMIUM = process.env.TIDINGS_CHROMIUM ?? "/usr/bin/chromium";


/** Debian's Chromium, headless, never a downloaded browser. */
function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    timeout: 60_000,
  });
}

/**
 * A page whose document is a real answer from the hub (its /healthz, so Chromium places it in
 * the loopback address space, as a page served by the hub's host would be), with the built
 * module as `window.tidings`; only the module's files are handed to the page by the test.
 * Returns the page and the errors it throws.
 */
async function hubPage(browser, hub) {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.route(`${hub.url}/__test__/**`, async (route) => {
    const path = new URL(route.request().url()).pathname.slice("/__test__/".length);
    if (/^dist\/[a-z]+\.js$/.test(path)) {
      const body = await readFile(resolve(dist, path.slice("dist/".length)), "utf8");
      await route.fulfill({ status: 200, contentType: "text/javascript", body });
    } else {
      await route.fulfill({ status: 404, body: "" });
    }
  });
  await page.goto(`${hub.url}/healthz`);
  await page.addScriptTag({
    type: "module",
    content: 'import * as tidings from "/__test__/dist/index.js"; window.tidings = tidings; window.ready = true;',
  });
  await page.waitForFunction(() => window.ready === true, null, { timeout: 30_000 });
  return { page, errors };
}


test("in Chromium: publish, SSE and WebSocket through a kill -9 and restart", async () => {
  const hub = await Hub.start(["--durability", "durable"]);
  const browser = await launch();
  try {
    const { page, errors } = await hubPage(browser, hub);
    const log = [];
    page.on("console", (m) => log.push(m.text()));

    // From the page: publish, then subscribe twice from the earliest event.
    const first = await page.evaluate(async () => {
      const client = new window.tidings.TidingsClient({ url: location.origin });
      const id = await client.publish({ topic: "load/page", type: "hello", data: { from: "chromium", n: 0 } });
      window.got = { sse: [], websocket: [] };
      window.subs = ["sse", "websocket"].map((transport) => {
        const sub = client.subscribe("load/*", { since: "earliest", transport });
        sub.on("*", (e) => window.got[transport].push({ id: e.id, type: e.type, data: e.data }));
        sub.ondisconnect = (d) => console.log(`${transport} disconnected: ${d.cause} ${d.reason ?? d.error?.message}`);
        sub.onopen = () => console.log(`${transport} open`);
        return sub;
      });
      return id;
    });
    const seen = (transport) => page.evaluate((t) => window.got[t].length, transport);
    await until(async () => (await seen("sse")) >= 1 && (await seen("websocket")) >= 1, "the page's own event").catch((e) => {
      throw new Error(`${e.message}; the page said: ${log.join(" | ")}`);
    });

    // 10 publishers from Node; the hub dies and comes back mid-stream.
    const client = new TidingsClient({ url: hub.url });
    const acked = [];
    let running = true;
    const publishers = Array.from({ length: 10 }, async (_, p) => {
      for (let n = 0; running; n++) {
        try {
          acked.push(await client.publish({ topic: `load/${p}`, type: "tick", data: { p, n } }));
        } catch (e) {
          assert.ok(e instanceof TidingsError && !e.permanent, String(e));
        }
      }
    });
    await until(async () => (await seen("sse")) >= 100 && (await seen("websocket")) >= 100, "events before the kill");
    await hub.restart();
    const after = acked.length;
    await until(() => acked.length >= after + 100, "publishes after the restart");
    running = false;
    await Promise.all(publishers);

    const want = new Set([first, ...acked]);
    await until(async () => {
      const got = await page.evaluate(() => window.got);
      return ["sse", "websocket"].every((t) => {
        const ids = new Set(got[t].map((e) => e.id));
        for (const id of want) if (!ids.has(id)) return false;
        return true;
      });
    }, "every acknowledged event in the page", 30_000);
    const got = await page.evaluate(() => {
      for (const s of window.subs) s.close();
      return window.got;
    });
    for (const t of ["sse", "websocket"]) {
      const ids = got[t].map((e) => e.id);
      assert.equal(new Set(ids).size, ids.length, `${t}: no event twice`);
      assert.deepEqual(got[t][0], { id: first, type: "hello", data: { from: "chromium", n: 0 } });
      const last = new Map();
      for (const e of got[t].slice(1)) {
        const before = last.get(e.data.p) ?? -1;
        assert.ok(e.data.n > before, `${t}: load/${e.data.p}: ${e.data.n} after ${before}`);
        last.set(e.data.p, e.data.n);
      }
    }
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await hub.close();
  }
});

test("in Chromium: a connect ticket opens the browser's native EventSource, once", async () => {
  const hub = await Hub.start(["--durability", "memory", "--token", "ts-ticket-1:publish=*;subscribe=*"]);
  const browser = await launch();
  try {
    const { page, errors } = await hubPage(browser, hub);

    // The page trades its token for a ticket (POST /tickets) and opens a native EventSource
    // with it: no Authorization header is involved in the stream itself.
    const url = await page.evaluate(async () => {
      const client = new window.tidings.TidingsClient({ url: location.origin, token: "ts-ticket-1" });
      window.got = [];
      window.es = await client.nativeEventSource("tick/*");
      window.es.addEventListener("tick", (e) => window.got.push({ id: e.lastEventId, data: JSON.parse(e.data) }));
      await new Promise((ok, fail) => {
        window.es.onopen = ok;
        window.es.onerror = () => fail(new Error(`EventSource failed, readyState ${window.es.readyState}`));
      });
      return window.es.url;
    });
    assert.match(url, /[?&]ticket=/);
    assert.doesNotMatch(url, /ts-ticket-1/, "the token never appears in the stream's URL");

    const publisher = new TidingsClient({ url: hub.url, token: "ts-ticket-1" });
    const id = await publisher.publish({ topic: "tick/1", type: "tick", data: { n: 1 } });
    await until(async () => (await page.evaluate(() => window.got.length)) >= 1, "the event in the native EventSource");
    assert.deepEqual(await page.evaluate(() => window.got), [{ id, data: { n: 1 } }]);

    // A ticket is single use: the same URL again is refused while the first stream lives.
    const again = await page.evaluate(async (u) => (await fetch(u)).status, url);
    assert.equal(again, 401);
    await page.evaluate(() => window.es.close());
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await hub.close();
  }
});
