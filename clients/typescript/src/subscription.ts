/**
 * `Subscription`: one logical subscription that outlives any single connection. The loop,
 * one connection at a time: connect (SSE over `fetch` with `Last-Event-ID`, or a WebSocket
 * with `lastEventId`), read frames until the connection ends, goes silent past the
 * keep-alive, or the hub says `reconnect-required`; then wait per the backoff (not at all
 * after `reconnect-required`) and connect again. A permanent error ends it. Items go to
 * `addEventListener` listeners and to every async iterator, which applies back-pressure.
 */

import { Backoff } from "./backoff.js";
import { asError, type TidingsClient } from "./client.js";
import { TidingsError } from "./error.js";
import { SseDecoder, type SseItem } from "./sse.js";

/** Where a subscription starts. */
export type Since =
  /** Only events published from now on [default]. */
  | "now"
  /** Everything the hub still retains, then live. */
  | "earliest"
  /** Everything after this event id, then live. */
  | { after: string }
  /**
   * The current state first (`snapshot=1`: the newest event per key, as ordinary events),
   * then a `snapshot` item with the cursor, then live events from exactly there. A reconnect
   * resumes from the last id received, so the hub does not send the snapshot twice. The hub
   * refuses it with a client id.
   */
  | "snapshot";

/** What to subscribe to, and how. */
export interface SubscribeOptions {
  /** Only events of these types. */
  types?: string[];
  /** Where to start [default: "now"]. */
  since?: Since;
  /**
   * The wire: `sse` (a `fetch` stream, so `Authorization` and `X-Client-Id` headers work;
   * the default) or `websocket` (one JSON frame per event; carries topic and key too).
   */
  transport?: "sse" | "websocket";
  /** The subscribe route [default: `/events`]. */
  path?: string;
  /**
   * Extra query parameters on the subscribe URL, e.g. `{ ticket }` for a WebSocket from a
   * browser, which cannot send headers.
   */
  query?: Record<string, string>;
  /** Closes the subscription when it aborts. */
  signal?: AbortSignal;
}

/** An event received. `T` is the type of its `data`. */
export interface TidingsEvent<T = unknown> {
  /** Its id, `<epoch>-<seq>`: what the client resumes from. */
  id: string;
  /** Its type (the SSE `event:` name). */
  type: string;
  /** Its topic (WebSocket only; SSE frames do not carry it). */
  topic: string | undefined;
  /** The entity it is about (WebSocket only). */
  key: string | undefined;
  /** The payload, parsed from JSON. */
  data: T;
  /** The payload as the hub sent it (compact JSON text). */
  rawData: string;
}

/** The `reset` notice: what was missed cannot be replayed, so refetch your state. */
/** The end of a snapshot: what came before reflects every event up to `cursor`. */
export interface SnapshotEnd {
  /** The snapshot's cursor: the stream continues after it. */
  cursor: string;
}

export interface ResetNotice {
  /** `cursor_expired`, `epoch_mismatch`, `cursor_ahead` or `invalid_cursor`. */
  reason: string;
  /** The id the stream continues after (resumed from from now on). */
  cursor: string;
}

/**
 * The hub's answer to a client id (`subscribed`: a new session; `resumed`: the session was
 * found and what the client missed follows), under the hub's default names.
 */
export interface SessionNotice {
  /** True for `resumed`, false for `subscribed`. */
  resumed: boolean;
  /** The client id the hub keeps the session under. */
  clientId: string;
  /** The id the stream continues after. */
  cursor: string;
}

/** A connection opened. */
export interface Connected {
  /** The id this connection resumed from (`earliest` for all history), if any. */
  resumedFrom: string | undefined;
  /** How many connections this subscription opened before this one. */
  openedBefore: number;
}

/** A connection ended and will be reopened after `retryInMs`. */
export interface Disconnected {
  /**
   * `reconnect-required` when the hub asked (with its `reason`: `shutdown`,
   * `slow_consumer`, …), `failed` when the connection could not be opened, broke or went
   * silent (see `error`).
   */
  cause: "reconnect-required" | "failed";
  /** The hub's reason for `reconnect-required`. */
  reason: string | undefined;
  /** The failure, for `failed`. */
  error: TidingsError | undefined;
  /** How long the client waits before reconnecting. */
  retryInMs: number;
}

/** One item of a subscription, as its async iterator yields them. */
export type Item =
  | { kind: "event"; event: TidingsEvent }
  | { kind: "reset"; reset: ResetNotice }
  | { kind: "session"; session: SessionNotice }
  | { kind: "snapshot"; snapshot: SnapshotEnd }
  | { kind: "connected"; connected: Connected }
  | { kind: "disconnected"; disconnected: Disconnected };

/**
 * A listener for a hub event type. `data` is `any` unless typed (`addEventListener<T>`), as
 * `JSON.parse` gives in an `EventSource` listener.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type EventListenerFn<T = any> = (event: TidingsEvent<T>) => void;

/** One thing the hub said on a connection. */
type Frame =
  | { kind: "event"; event: TidingsEvent }
  | { kind: "reset"; reset: ResetNotice }
  | { kind: "session"; session: SessionNotice }
  | { kind: "snapshot"; snapshot: SnapshotEnd }
  | { kind: "reconnect"; reason: string }
  | { kind: "retry"; ms: number };

/** One open connection. `next` resolves to the frames of the next read, or rejects. */
interface Connection {
  next(): Promise<Frame[]>;
  close(): void;
}

/** An iterator's queue: above this many items, the subscription stops reading. */
const HIGH_WATER = 1024;

/** WebSocket close code: the message was too big (retrying the same cannot help). */
const CLOSE_TOO_BIG = 1009;

/** A subscription. It starts at once and reconnects on its own until `close()`. */
export class Subscription implements AsyncIterable<Item> {
  private readonly client: TidingsClient;
  private readonly url: string | TidingsError;
  private readonly transport: "sse" | "websocket";
  private readonly abort = new AbortController();
  private readonly backoff = Backoff.reconnect();
  private readonly listeners = new Map<string, Set<EventListenerFn<never>>>();
  private readonly resetListeners = new Set<(reset: ResetNotice) => void>();
  private readonly snapshotListeners = new Set<(end: SnapshotEnd) => void>();
  private readonly queues = new Set<Queue>();
  private drained: (() => void) | undefined;
  private cursor: string | undefined;
  private openedCount = 0;
  private closedWith: { error: TidingsError | undefined } | undefined;
  /** Resolves (with no frames) when the subscription is closed: ends any wait for a read. */
  private readonly closing: Promise<Frame[]>;

  /** Called when a connection opens. */
  onopen: ((connected: Connected) => void) | null = null;
  /** Called when a connection ends; the subscription reconnects after `retryInMs`. */
  ondisconnect: ((disconnected: Disconnected) => void) | null = null;
  /** Called once when the subscription ends: by `close()`, or with a permanent error. */
  onclose: ((error: TidingsError | undefined) => void) | null = null;

  /** @internal Use `client.subscribe`. */
  constructor(client: TidingsClient, selectors: string[], options: SubscribeOptions) {
    this.client = client;
    this.transport = options.transport ?? "sse";
    this.closing = new Promise<Frame[]>((resolve) =>
      this.abort.signal.addEventListener("abort", () => resolve([]), { once: true }),
    );
    this.url = subscribeUrl(client.url, selectors, options);
    const since = options.since ?? "now";
    this.cursor =
      since === "now" || since === "snapshot" ? undefined : since === "earliest" ? "earliest" : since.after;
    if (options.signal !== undefined) {
      if (options.signal.aborted) this.abort.abort();
      else options.signal.addEventListener("abort", () => this.close(), { once: true });
    }
    void this.run();
  }

  /** The id the next connection resumes from: the last event's id (or a reset's cursor). */
  get lastEventId(): string | undefined {
    return this.cursor;
  }

  /** Whether the subscription has ended. */
  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /**
   * Calls `listener` for every hub event of `type` (`"*"`: every event), like
   * `EventSource.addEventListener`, with `data` already parsed. `"reset"` gets the reset
   * notice instead, and `"snapshot"` the end of a `since: "snapshot"` subscription's snapshot. Connection state is not an event here: see `onopen`, `ondisconnect`,
   * `onclose` (so a hub event type named `error`, as in the downloads API, is just an event).
   */
  addEventListener(type: "reset", listener: (reset: ResetNotice) => void): void;
  addEventListener(type: "snapshot", listener: (end: SnapshotEnd) => void): void;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  addEventListener<T = any>(type: string, listener: EventListenerFn<T>): void;
  addEventListener(
    type: string,
    listener: EventListenerFn<never> | ((r: ResetNotice) => void) | ((s: SnapshotEnd) => void),
  ): void {
    if (type === "reset") {
      this.resetListeners.add(listener as (r: ResetNotice) => void);
      return;
    }
    if (type === "snapshot") {
      this.snapshotListeners.add(listener as (s: SnapshotEnd) => void);
      return;
    }
    let set = this.listeners.get(type);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(type, set);
    }
    set.add(listener as EventListenerFn<never>);
  }

  /** Removes a listener added with `addEventListener`. */
  removeEventListener(
    type: string,
    listener: EventListenerFn<never> | ((r: ResetNotice) => void) | ((s: SnapshotEnd) => void),
  ): void {
    if (type === "reset") this.resetListeners.delete(listener as (r: ResetNotice) => void);
    else if (type === "snapshot") this.snapshotListeners.delete(listener as (s: SnapshotEnd) => void);
    else this.listeners.get(type)?.delete(listener as EventListenerFn<never>);
  }

  /** Shorthand for `addEventListener`; returns a function that removes the listener. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  on<T = any>(type: string, listener: EventListenerFn<T>): () => void {
    this.addEventListener<T>(type, listener);
    return () => this.removeEventListener(type, listener as EventListenerFn<never>);
  }

  /** Ends the subscription and its connection. */
  close(): void {
    this.finish(undefined);
  }

  /**
   * Every item in order: events, resets, connects and disconnects. Ends after `close()`;
   * throws the permanent error that ended the subscription. While an iterator lags more
   * than 1,024 items behind, the subscription stops reading from the hub.
   */
  [Symbol.asyncIterator](): AsyncIterator<Item> {
    const queue = new Queue();
    if (this.closedWith !== undefined) queue.end(this.closedWith.error);
    else this.queues.add(queue);
    return {
      next: async (): Promise<IteratorResult<Item>> => {
        const r = await queue.take();
        this.maybeDrained();
        return r;
      },
      return: async (): Promise<IteratorResult<Item>> => {
        this.queues.delete(queue);
        this.maybeDrained();
        return { done: true, value: undefined };
      },
    };
  }

  /** Only the events, as an async iterable (resets and connection changes skipped). */
  async *events<T = unknown>(): AsyncGenerator<TidingsEvent<T>> {
    for await (const item of this) {
      if (item.kind === "event") yield item.event as TidingsEvent<T>;
    }
  }

  private async run(): Promise<void> {
    let wait: number | undefined;
    let idleReconnect = false;
    const signal = this.abort.signal;
    while (!signal.aborted) {
      if (wait !== undefined) {
        try {
          await this.client.options.sleep(wait, signal);
        } catch {
          break;
        }
        wait = undefined;
      }
      if (this.url instanceof TidingsError) {
        this.finish(this.url);
        return;
      }
      let conn: Connection;
      try {
        conn =
          this.transport === "websocket"
            ? await this.openWebSocket(this.url)
            : await this.openSse(this.url);
      } catch (e) {
        if (signal.aborted) break;
        wait = this.failed(asError(e));
        if (wait === undefined) return;
        continue;
      }
      this.backoff.reset();
      const connected: Connected = { resumedFrom: this.cursor, openedBefore: this.openedCount };
      this.openedCount += 1;
      this.emit({ kind: "connected", connected });
      let received = 0;
      try {
        let reconnect: string | undefined;
        while (reconnect === undefined) {
          const frames = await this.withSilenceLimit(conn);
          for (const frame of frames) {
            if (frame.kind === "event") {
              received += 1;
              if (frame.event.id !== "") this.cursor = frame.event.id;
              this.emit(frame);
            } else if (frame.kind === "reset") {
              this.cursor = frame.reset.cursor;
              this.emit(frame);
            } else if (frame.kind === "session") {
              this.cursor = frame.session.cursor;
              this.emit(frame);
            } else if (frame.kind === "snapshot") {
              this.cursor = frame.snapshot.cursor;
              this.emit(frame);
            } else if (frame.kind === "retry") {
              this.backoff.setInitial(frame.ms);
            } else {
              reconnect = frame.reason;
              break;
            }
          }
          if (this.queueFull()) await new Promise<void>((r) => (this.drained = r));
          if (signal.aborted) break;
        }
        conn.close();
        if (signal.aborted) break;
        // At once, unless the hub keeps asking without delivering anything (still draining,
        // say): then the backoff applies, so the client never spins.
        const idle = received === 0;
        const retryInMs = idle && idleReconnect ? this.backoff.nextDelay(this.client.options.random()) : 0;
        idleReconnect = idle;
        wait = retryInMs;
        this.emit({
          kind: "disconnected",
          disconnected: { cause: "reconnect-required", reason: reconnect, error: undefined, retryInMs },
        });
      } catch (e) {
        conn.close();
        if (signal.aborted) break;
        idleReconnect = false;
        wait = this.failed(asError(e));
        if (wait === undefined) return;
      }
    }
    this.finish(undefined);
  }

  /** A failed attempt or a broken connection: the wait before the next, or undefined (ended). */
  private failed(error: TidingsError): number | undefined {
    if (error.permanent) {
      this.finish(error);
      return undefined;
    }
    const retryInMs = this.backoff.nextDelay(this.client.options.random());
    this.emit({
      kind: "disconnected",
      disconnected: { cause: "failed", reason: undefined, error, retryInMs },
    });
    return retryInMs;
  }

  private async withSilenceLimit(conn: Connection): Promise<Frame[]> {
    const { keepAliveMs, keepAliveMisses } = this.client.options;
    const limit = keepAliveMs * keepAliveMisses;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const silence = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new TidingsError("timeout", `no bytes from the hub for ${limit} ms: the connection is dead`),
          ),
        limit,
      );
    });
    try {
      return await Promise.race([conn.next(), silence, this.closing]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async openSse(url: string): Promise<Connection> {
    const { options } = this.client;
    const connAbort = new AbortController();
    const stop = (): void => connAbort.abort();
    this.abort.signal.addEventListener("abort", stop, { once: true });
    const headers: Record<string, string> = { ...this.client.headers(), accept: "text/event-stream" };
    if (this.cursor !== undefined) headers["last-event-id"] = this.cursor;
    const timer = setTimeout(stop, options.requestTimeoutMs);
    let resp: Response;
    try {
      resp = await options.fetch(url, { headers, signal: connAbort.signal, cache: "no-store" });
    } catch (e) {
      this.abort.signal.removeEventListener("abort", stop);
      if (connAbort.signal.aborted && !this.abort.signal.aborted) {
        throw new TidingsError("timeout", "the hub did not answer the subscription in time", { cause: e });
      }
      throw new TidingsError("connect", "the hub could not be reached", { cause: e });
    } finally {
      clearTimeout(timer);
    }
    const close = (): void => {
      this.abort.signal.removeEventListener("abort", stop);
      connAbort.abort();
    };
    if (resp.status !== 200 || resp.body === null) {
      const text = await readSome(resp, 64 << 10).catch(() => "");
      close();
      throw TidingsError.fromAnswer(resp.status, text);
    }
    const reader = resp.body.getReader();
    const text = new TextDecoder();
    const decoder = new SseDecoder(options.maxFrameChars);
    const items: SseItem[] = [];
    return {
      next: async (): Promise<Frame[]> => {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (e) {
          throw new TidingsError("connect", "the stream broke", { cause: e });
        }
        if (chunk.done) throw new TidingsError("connect", "the hub closed the stream");
        decoder.feed(text.decode(chunk.value, { stream: true }), items);
        const frames = items.map(sseFrame);
        items.length = 0;
        return frames;
      },
      close: () => {
        reader.cancel().catch(() => undefined);
        close();
      },
    };
  }

  private openWebSocket(httpUrl: string): Promise<Connection> {
    const { options } = this.client;
    const Ctor = options.WebSocket;
    if (Ctor === undefined) {
      return Promise.reject(
        new TidingsError("invalid_input", "this runtime has no WebSocket; pass one in the client options"),
      );
    }
    const url = new URL(httpUrl);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (this.cursor !== undefined) url.searchParams.set("lastEventId", this.cursor);
    const headers = this.client.headers();
    let socket: WebSocket;
    try {
      socket = Object.keys(headers).length > 0 ? withHeaders(Ctor, url.href, headers) : new Ctor(url.href);
    } catch (e) {
      return Promise.reject(asError(e));
    }
    return new Promise((resolve, reject) => {
      const pending: Frame[] = [];
      let failure: TidingsError | undefined;
      let wake: (() => void) | undefined;
      let opened = false;
      const timer = setTimeout(() => {
        socket.close();
        reject(new TidingsError("timeout", "the hub did not answer the WebSocket upgrade in time"));
      }, options.requestTimeoutMs);
      socket.onopen = () => {
        clearTimeout(timer);
        opened = true;
        resolve({
          next: async () => {
            while (pending.length === 0 && failure === undefined) {
              await new Promise<void>((r) => (wake = r));
            }
            if (pending.length > 0) return pending.splice(0, pending.length);
            throw failure;
          },
          close: () => socket.close(1000),
        });
      };
      socket.onmessage = (m: MessageEvent) => {
        if (typeof m.data !== "string") return;
        if (m.data.length > options.maxFrameChars) {
          failure ??= new TidingsError("protocol", "a WebSocket message from the hub is longer than the frame limit");
          socket.close();
        } else {
          try {
            pending.push(jsonFrame(m.data));
          } catch (e) {
            failure ??= asError(e);
            socket.close();
          }
        }
        wake?.();
      };
      socket.onerror = () => {
        // The close event follows with the code; nothing to add here.
      };
      socket.onclose = (c: CloseEvent) => {
        clearTimeout(timer);
        const error = new TidingsError(
          c.code === CLOSE_TOO_BIG ? "rejected" : "connect",
          opened
            ? `the hub closed the WebSocket (${c.code}${c.reason ? ` ${c.reason}` : ""})`
            : "the WebSocket could not be opened",
        );
        if (!opened) reject(error);
        failure ??= error;
        wake?.();
      };
    });
  }

  private emit(item: Item): void {
    for (const q of this.queues) q.push(item);
    try {
      if (item.kind === "event") {
        for (const type of [item.event.type, "*"]) {
          for (const l of this.listeners.get(type) ?? []) call(() => (l as EventListenerFn)(item.event));
        }
      } else if (item.kind === "reset") {
        for (const l of this.resetListeners) call(() => l(item.reset));
      } else if (item.kind === "snapshot") {
        for (const l of this.snapshotListeners) call(() => l(item.snapshot));
      } else if (item.kind === "session") {
        // Not a data event; seen through the iterator of items.
      } else if (item.kind === "connected") {
        const f = this.onopen;
        if (f) call(() => f(item.connected));
      } else {
        const f = this.ondisconnect;
        if (f) call(() => f(item.disconnected));
      }
    } catch {
      // `call` reports listener errors itself.
    }
  }

  private queueFull(): boolean {
    for (const q of this.queues) if (q.length >= HIGH_WATER) return true;
    return false;
  }

  private maybeDrained(): void {
    if (this.drained !== undefined && !this.queueFull()) {
      const d = this.drained;
      this.drained = undefined;
      d();
    }
  }

  private finish(error: TidingsError | undefined): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = { error };
    this.abort.abort();
    this.maybeDrainedForce();
    for (const q of this.queues) q.end(error);
    this.queues.clear();
    const f = this.onclose;
    if (f) call(() => f(error));
  }

  private maybeDrainedForce(): void {
    const d = this.drained;
    this.drained = undefined;
    d?.();
  }
}

/** An iterator's buffer of items, and its end. */
class Queue {
  private items: Item[] = [];
  private ended: { error: TidingsError | undefined } | undefined;
  private waiter: (() => void) | undefined;

  get length(): number {
    return this.items.length;
  }

  push(item: Item): void {
    this.items.push(item);
    this.wakeUp();
  }

  end(error: TidingsError | undefined): void {
    this.ended = { error };
    this.wakeUp();
  }

  async take(): Promise<IteratorResult<Item>> {
    while (this.items.length === 0 && this.ended === undefined) {
      await new Promise<void>((r) => (this.waiter = r));
    }
    const item = this.items.shift();
    if (item !== undefined) return { done: false, value: item };
    const ended = this.ended as { error: TidingsError | undefined };
    if (ended.error !== undefined) {
      const e = ended.error;
      ended.error = undefined;
      throw e;
    }
    return { done: true, value: undefined };
  }

  private wakeUp(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
}

/** Runs a listener; an exception in it is reported, never breaks the subscription. */
function call(f: () => void): void {
  try {
    f();
  } catch (e) {
    const report = (globalThis as { reportError?: (e: unknown) => void }).reportError;
    if (report) report(e);
    else console.error(e);
  }
}

function subscribeUrl(base: string, selectors: string[], options: SubscribeOptions): string | TidingsError {
  let url: URL;
  try {
    url = new URL(base + (options.path ?? "/events"));
  } catch (e) {
    return new TidingsError("invalid_input", "path: not a valid path", { cause: e });
  }
  const bad = appendSelectors(url, selectors, options.types ?? []);
  if (bad !== undefined) return bad;
  if (options.since === "snapshot") url.searchParams.set("snapshot", "1");
  for (const [k, v] of Object.entries(options.query ?? {})) url.searchParams.set(k, v);
  return url.href;
}

/**
 * Appends `topic` and `type` parameters to `url`, or says which selector or type is not
 * one (empty, or with control characters).
 * @internal
 */
export function appendSelectors(url: URL, selectors: string[], types: string[]): TidingsError | undefined {
  for (const s of selectors) {
    if (s === "" || /[\0-\x1f\x7f]/.test(s)) {
      return new TidingsError("invalid_input", `selector \`${s}\`: must be non-empty, without control characters`);
    }
    url.searchParams.append("topic", s);
  }
  for (const t of types) {
    if (t === "" || /[\0-\x1f\x7f]/.test(t)) {
      return new TidingsError("invalid_input", `type \`${t}\`: must be non-empty, without control characters`);
    }
    url.searchParams.append("type", t);
  }
  return undefined;
}

/** Opens a WebSocket with headers where the runtime allows it (Node's), else refuses. */
function withHeaders(Ctor: WebSocketConstructor2, url: string, headers: Record<string, string>): WebSocket {
  const node = (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node;
  if (node === undefined) {
    throw new TidingsError(
      "invalid_input",
      "a browser WebSocket cannot send Authorization or X-Client-Id: use a ticket (query: { ticket }) or a cookie",
    );
  }
  return new (Ctor as unknown as new (url: string, init: { headers: Record<string, string> }) => WebSocket)(url, {
    headers,
  });
}

type WebSocketConstructor2 = new (url: string, protocols?: string | string[]) => WebSocket;

function parseData(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

function notice<T>(what: string, raw: string, fields: (keyof T)[]): T {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (e) {
    throw new TidingsError("protocol", `a \`${what}\` notice is malformed`, { cause: e });
  }
  const o = v as Record<string, unknown>;
  if (o === null || typeof o !== "object" || !fields.every((f) => typeof o[f as string] === "string")) {
    throw new TidingsError("protocol", `a \`${what}\` notice is malformed`);
  }
  return o as T;
}

/** A `subscribed` / `resumed` notice's frame. */
function sessionFrame(type: string, raw: string): Frame {
  const n = notice<{ clientId: string; cursor: string }>(type, raw, ["clientId", "cursor"]);
  return { kind: "session", session: { resumed: type === "resumed", clientId: n.clientId, cursor: n.cursor } };
}

/** A `snapshot` notice's frame. */
function snapshotFrame(raw: string): Frame {
  return { kind: "snapshot", snapshot: { cursor: notice<SnapshotEnd>("snapshot", raw, ["cursor"]).cursor } };
}

/**
 * Whether `raw` has the shape of the hub's session notice (`{"clientId","cursor"}`): an
 * endpoint may rename its session events and let publishers use `resumed` for their own
 * (the download manager's `resumed` download), which is then an ordinary event.
 */
function isSessionNotice(raw: string): boolean {
  try {
    const o = JSON.parse(raw) as Record<string, unknown> | null;
    return o !== null && typeof o === "object" && typeof o["clientId"] === "string" && typeof o["cursor"] === "string";
  } catch {
    return false;
  }
}

function sseFrame(item: SseItem): Frame {
  if (item.kind === "retry") return { kind: "retry", ms: item.ms };
  if (item.type === "snapshot") return snapshotFrame(item.data);
  if ((item.type === "subscribed" || item.type === "resumed") && isSessionNotice(item.data)) {
    return sessionFrame(item.type, item.data);
  }
  if (item.type === "reset") {
    const n = notice<ResetNotice>("reset", item.data, ["reason", "cursor"]);
    return { kind: "reset", reset: { reason: n.reason, cursor: n.cursor } };
  }
  if (item.type === "reconnect-required") {
    const n = notice<{ reason: string }>("reconnect-required", item.data, ["reason"]);
    return { kind: "reconnect", reason: n.reason };
  }
  return {
    kind: "event",
    event: {
      id: item.lastEventId,
      type: item.type,
      topic: undefined,
      key: undefined,
      data: parseData(item.data),
      rawData: item.data,
    },
  };
}

/** A WebSocket frame: `{id, topic, type, key?, data}`, or a control frame without a topic. */
function jsonFrame(text: string): Frame {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new TidingsError("protocol", "a stream message is not an event", { cause: e });
  }
  if (v === null || typeof v !== "object" || typeof v["type"] !== "string") {
    throw new TidingsError("protocol", "a stream message is not an event");
  }
  const type = v["type"];
  if (typeof v["topic"] !== "string") {
    const data = JSON.stringify(v["data"] ?? null);
    if (type === "reset") {
      const n = notice<ResetNotice>("reset", data, ["reason", "cursor"]);
      return { kind: "reset", reset: { reason: n.reason, cursor: n.cursor } };
    }
    if (type === "reconnect-required") {
      return { kind: "reconnect", reason: notice<{ reason: string }>("reconnect-required", data, ["reason"]).reason };
    }
    if (type === "subscribed" || type === "resumed") return sessionFrame(type, data);
    if (type === "snapshot") return snapshotFrame(data);
    throw new TidingsError("protocol", `a stream message of type \`${type}\` has no topic`);
  }
  return {
    kind: "event",
    event: {
      id: typeof v["id"] === "string" ? v["id"] : "",
      type,
      topic: v["topic"],
      key: typeof v["key"] === "string" ? v["key"] : undefined,
      data: v["data"] ?? null,
      rawData: JSON.stringify(v["data"] ?? null),
    },
  };
}

/** Reads up to `max` characters of a body (an error answer), then stops. */
async function readSome(resp: Response, max: number): Promise<string> {
  if (resp.body === null) return "";
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (text.length < max) {
    const { done, value } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  await reader.cancel().catch(() => undefined);
  return text.slice(0, max);
}
