/**
 * `TidingsClient`: the hub's address, credential and client id, and the requests that are
 * not streams: `publish` (an `Idempotency-Key` per call, reused on its bounded retries) and
 * the connect-ticket helper for pages that prefer the browser's native `EventSource`.
 */

import { Backoff } from "./backoff.js";
import { TidingsError } from "./error.js";
import { Subscription, appendSelectors, type SubscribeOptions, type TidingsEvent } from "./subscription.js";

/** A WebSocket constructor: the global one, or one a runtime provides. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocket;

/** Settings for a client. Only `url` is required. */
export interface ClientOptions {
  /** The hub's base URL, e.g. `http://127.0.0.1:1700` (a path prefix is kept). */
  url: string;
  /** A bearer token sent as `Authorization: Bearer …` on every request. */
  token?: string;
  /**
   * A stable client id sent as `X-Client-Id`, so the hub can recognise this client across
   * its connections (and, where it supports it, not echo its own publishes back).
   */
  clientId?: string;
  /** Longest wait for a publish answer or a stream's response head [default: 30 000 ms]. */
  requestTimeoutMs?: number;
  /** Attempts per publish call, the first included [default: 6]. */
  publishAttempts?: number;
  /** The hub's keep-alive interval [default: 30 000 ms]. */
  keepAliveMs?: number;
  /** A stream silent for this many keep-alive intervals is dropped and reopened [default: 3]. */
  keepAliveMisses?: number;
  /** Longest SSE line or event, or WebSocket message, accepted [default: 16 MiB]. */
  maxFrameChars?: number;
  /** The `fetch` to use [default: the global one]. */
  fetch?: typeof fetch;
  /** The WebSocket constructor to use [default: the global one]. */
  WebSocket?: WebSocketConstructor;
  /** Waits `ms`, or rejects when `signal` aborts. Tests inject one to control time. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** A uniform random number in `[0, 1)` for jitter [default: `Math.random`]. */
  random?: () => number;
}

/** An event to publish. */
export interface NewEvent {
  /** The topic, e.g. `downloads/abc-123`. */
  topic: string;
  /** The event type, e.g. `progress` (the SSE `event:` name subscribers see). */
  type: string;
  /** The entity it is about, e.g. a download id. */
  key?: string;
  /** Any JSON value [default: null]. */
  data?: unknown;
}

/** Options of one publish call. */
export interface PublishOptions {
  /** The idempotency key [default: a fresh random one per call, reused on its retries]. */
  idempotencyKey?: string;
  /** Aborts the call (and its retries). */
  signal?: AbortSignal;
}

/** The current state under a selector (`GET /snapshot`). */
export interface Snapshot {
  /** The last stored event it reflects: subscribe with `since: { after: cursor }` to continue. */
  cursor: string;
  /** The newest event of each key, oldest first, each with its topic and key. */
  events: TidingsEvent[];
}

/** A connect ticket: single use, valid for one connection within `expiresIn` seconds. */
export interface Ticket {
  ticket: string;
  expiresIn: number;
}

/** Settings every request and subscription of one client uses, resolved. */
export interface ResolvedOptions {
  base: string;
  token: string | undefined;
  clientId: string | undefined;
  requestTimeoutMs: number;
  publishAttempts: number;
  keepAliveMs: number;
  keepAliveMisses: number;
  maxFrameChars: number;
  fetch: typeof fetch;
  WebSocket: WebSocketConstructor | undefined;
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  random: () => number;
}

/** Bound on an answer body read (publish ids, error messages). */
const MAX_ANSWER_CHARS = 16 << 20;

/** A client of one hub. */
export class TidingsClient {
  /** @internal */
  readonly options: ResolvedOptions;

  constructor(options: ClientOptions) {
    let base: URL;
    try {
      base = new URL(options.url);
    } catch (e) {
      throw new TidingsError("invalid_input", "url: not an absolute URL", { cause: e });
    }
    if (base.protocol !== "http:" && base.protocol !== "https:") {
      throw new TidingsError("invalid_input", "url: must be http: or https:");
    }
    for (const [what, value] of [
      ["token", options.token],
      ["clientId", options.clientId],
    ] as const) {
      if (value !== undefined && (value === "" || /[\0-\x1f\x7f]/.test(value))) {
        throw new TidingsError("invalid_input", `${what}: must be non-empty, without control characters`);
      }
    }
    const f = options.fetch ?? globalThis.fetch;
    if (typeof f !== "function") {
      throw new TidingsError("invalid_input", "fetch: this runtime has no fetch; pass one");
    }
    this.options = {
      base: base.href.replace(/\/+$/, ""),
      token: options.token,
      clientId: options.clientId,
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
      publishAttempts: Math.max(1, options.publishAttempts ?? 6),
      keepAliveMs: options.keepAliveMs ?? 30_000,
      keepAliveMisses: Math.max(1, options.keepAliveMisses ?? 3),
      maxFrameChars: options.maxFrameChars ?? 16 << 20,
      fetch: f.bind(globalThis),
      WebSocket: options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket,
      sleep: options.sleep ?? sleep,
      random: options.random ?? Math.random,
    };
  }

  /** The hub's base URL. */
  get url(): string {
    return this.options.base;
  }

  /** @internal The headers every request carries. */
  headers(): Record<string, string> {
    const h: Record<string, string> = {};
    if (this.options.token !== undefined) h["authorization"] = `Bearer ${this.options.token}`;
    if (this.options.clientId !== undefined) h["x-client-id"] = this.options.clientId;
    return h;
  }

  /**
   * Publishes one event and resolves to its id, or a batch (stored all or nothing) and
   * resolves to the ids in order. Network failures and 5xx are retried with the same
   * `Idempotency-Key` and body, so a retried publish is stored once; 4xx are not retried.
   */
  publish(event: NewEvent, options?: PublishOptions): Promise<string>;
  publish(events: NewEvent[], options?: PublishOptions): Promise<string[]>;
  async publish(
    events: NewEvent | NewEvent[],
    options: PublishOptions = {},
  ): Promise<string | string[]> {
    const batch = Array.isArray(events);
    const list = batch ? events : [events];
    if (list.length === 0) throw new TidingsError("invalid_input", "events: the batch is empty");
    const body = JSON.stringify(
      batch ? list.map(wireEvent) : wireEvent(list[0] as NewEvent),
    );
    const key = options.idempotencyKey ?? randomKey();
    const backoff = new Backoff(250, 4000);
    for (;;) {
      let error: TidingsError;
      try {
        const ids = await this.postPublish(body, key, options.signal);
        if (ids.length === list.length) return batch ? ids : (ids[0] as string);
        error = new TidingsError(
          "protocol",
          `the hub answered ${ids.length} ids for ${list.length} events`,
        );
      } catch (e) {
        if (options.signal?.aborted) throw options.signal.reason;
        error = asError(e);
      }
      if (error.permanent || backoff.failures + 1 >= this.options.publishAttempts) throw error;
      const wait = backoff.nextDelay(this.options.random());
      await this.options.sleep(wait, options.signal ?? new AbortController().signal);
    }
  }

  private async postPublish(body: string, key: string, signal?: AbortSignal): Promise<string[]> {
    const { status, text } = await this.request(
      "/publish",
      {
        method: "POST",
        headers: { ...this.headers(), "content-type": "application/json", "idempotency-key": key },
        body,
      },
      signal,
    );
    if (status !== 200) throw TidingsError.fromAnswer(status, text);
    let answer: unknown;
    try {
      answer = JSON.parse(text);
    } catch (e) {
      throw new TidingsError("protocol", 'the publish answer is not {"ids":[…]}', { cause: e });
    }
    const ids = (answer as { ids?: unknown }).ids;
    if (!Array.isArray(ids) || !ids.every((i) => typeof i === "string")) {
      throw new TidingsError("protocol", 'the publish answer is not {"ids":[…]}');
    }
    return ids as string[];
  }

  /**
   * One request with the client's timeout, its answer read up to a bound.
   * @internal
   */
  async request(
    path: string,
    init: RequestInit,
    signal?: AbortSignal,
  ): Promise<{ status: number; text: string }> {
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), this.options.requestTimeoutMs);
    const onAbort = (): void => timeout.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const resp = await this.options.fetch(this.options.base + path, {
        ...init,
        signal: timeout.signal,
      });
      const text = await readCapped(resp, MAX_ANSWER_CHARS);
      return { status: resp.status, text };
    } catch (e) {
      if (e instanceof TidingsError) throw e;
      if (timeout.signal.aborted && !signal?.aborted) {
        throw new TidingsError("timeout", "the hub did not answer in time", { cause: e });
      }
      throw new TidingsError("connect", "the hub could not be reached", { cause: e });
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Subscribes to topics matching `selectors` (`*`, a prefix such as `downloads/*`, or an
   * exact topic; none means everything). The subscription starts at once; listen with
   * `addEventListener(type, …)` or iterate it with `for await`.
   */
  subscribe(selectors: string | string[] = [], options: SubscribeOptions = {}): Subscription {
    return new Subscription(this, typeof selectors === "string" ? [selectors] : selectors, options);
  }

  /**
   * The newest event per key under `selectors` (of `types`, when given), with the cursor a
   * subscription continues from (`GET /snapshot`). A snapshot over the hub's
   * `snapshot.max_bytes` is refused (`snapshot_too_large`): narrow the selector.
   */
  async snapshot(
    selectors: string | string[] = [],
    options: { types?: string[]; signal?: AbortSignal } = {},
  ): Promise<Snapshot> {
    const url = new URL(this.options.base + "/snapshot");
    const list = typeof selectors === "string" ? [selectors] : selectors;
    const bad = appendSelectors(url, list, options.types ?? []);
    if (bad !== undefined) throw bad;
    const init: RequestInit = { method: "GET", headers: this.headers() };
    const { status, text } = await this.request(url.pathname + url.search, init, options.signal);
    if (status !== 200) throw TidingsError.fromAnswer(status, text);
    const malformed = 'the snapshot answer is not {"cursor":…,"events":[…]}';
    let answer: { cursor?: unknown; events?: unknown };
    try {
      answer = JSON.parse(text) as typeof answer;
    } catch (e) {
      throw new TidingsError("protocol", malformed, { cause: e });
    }
    if (typeof answer.cursor !== "string" || !Array.isArray(answer.events)) {
      throw new TidingsError("protocol", malformed);
    }
    const events = answer.events.map((raw: unknown): TidingsEvent => {
      const e = raw as Record<string, unknown>;
      if (e === null || typeof e !== "object" || typeof e["id"] !== "string" || typeof e["type"] !== "string" || typeof e["topic"] !== "string") {
        throw new TidingsError("protocol", malformed);
      }
      return {
        id: e["id"],
        type: e["type"],
        topic: e["topic"],
        key: typeof e["key"] === "string" ? e["key"] : undefined,
        data: e["data"] ?? null,
        rawData: JSON.stringify(e["data"] ?? null),
      };
    });
    return { cursor: answer.cursor, events };
  }

  /**
   * Asks the hub for a one-time connect ticket (`POST /tickets`, authenticated with this
   * client's token), optionally narrowed to `topics`. A ticket is good for one connection
   * within `expiresIn` seconds.
   */
  async ticket(options: { topics?: string[]; signal?: AbortSignal } = {}): Promise<Ticket> {
    const body = options.topics === undefined ? undefined : JSON.stringify({ topics: options.topics });
    const headers: Record<string, string> = { ...this.headers() };
    if (body !== undefined) headers["content-type"] = "application/json";
    const init: RequestInit = { method: "POST", headers };
    if (body !== undefined) init.body = body;
    const { status, text } = await this.request("/tickets", init, options.signal);
    if (status !== 200 && status !== 201) throw TidingsError.fromAnswer(status, text);
    let answer: { ticket?: unknown; expires_in?: unknown };
    try {
      answer = JSON.parse(text) as typeof answer;
    } catch (e) {
      throw new TidingsError("protocol", 'the ticket answer is not {"ticket":…}', { cause: e });
    }
    if (typeof answer.ticket !== "string" || typeof answer.expires_in !== "number") {
      throw new TidingsError("protocol", 'the ticket answer is not {"ticket":…,"expires_in":…}');
    }
    return { ticket: answer.ticket, expiresIn: answer.expires_in };
  }

  /**
   * The URL of a subscription carrying `ticket` (`?ticket=…`), for the browser's native
   * `EventSource`, which cannot send an `Authorization` header.
   */
  eventSourceUrl(ticket: string, selectors: string | string[] = [], options: { types?: string[]; path?: string } = {}): string {
    const url = new URL(this.options.base + (options.path ?? "/events"));
    for (const s of typeof selectors === "string" ? [selectors] : selectors) url.searchParams.append("topic", s);
    for (const t of options.types ?? []) url.searchParams.append("type", t);
    url.searchParams.set("ticket", ticket);
    return url.href;
  }

  /**
   * Gets a ticket narrowed to `selectors` and opens a native `EventSource` with it. A ticket
   * is single use: when the `EventSource` closes (`readyState === 2`), call this again for a
   * fresh one, resuming with `lastEventId` if you kept it.
   */
  async nativeEventSource(
    selectors: string | string[] = [],
    options: { types?: string[]; path?: string; lastEventId?: string; withCredentials?: boolean } = {},
  ): Promise<EventSource> {
    const Native = (globalThis as { EventSource?: typeof EventSource }).EventSource;
    if (Native === undefined) {
      throw new TidingsError("invalid_input", "this runtime has no EventSource; use subscribe()");
    }
    const list = typeof selectors === "string" ? [selectors] : selectors;
    const { ticket } = await this.ticket(list.length > 0 ? { topics: list } : {});
    const url = new URL(this.eventSourceUrl(ticket, list, options));
    if (options.lastEventId !== undefined) url.searchParams.set("lastEventId", options.lastEventId);
    return new Native(url.href, { withCredentials: options.withCredentials ?? false });
  }
}

function wireEvent(e: NewEvent): Record<string, unknown> {
  if (typeof e.topic !== "string" || typeof e.type !== "string") {
    throw new TidingsError("invalid_input", "event: topic and type must be strings");
  }
  const out: Record<string, unknown> = { topic: e.topic, type: e.type };
  if (e.key !== undefined) out["key"] = e.key;
  out["data"] = e.data === undefined ? null : e.data;
  return out;
}

/** 128 random bits, hex. `crypto.getRandomValues` works outside secure contexts too. */
function randomKey(): string {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** @internal */
export function asError(e: unknown): TidingsError {
  if (e instanceof TidingsError) return e;
  return new TidingsError("connect", "the hub could not be reached", { cause: e });
}

/** Reads a body as text, up to `max` characters; more is a protocol error. */
async function readCapped(resp: Response, max: number): Promise<string> {
  if (resp.body === null) return "";
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
    if (text.length > max) {
      await reader.cancel().catch(() => undefined);
      throw new TidingsError("protocol", `the hub's answer is longer than ${max} characters`);
    }
  }
  return text + decoder.decode();
}

/** Waits `ms` milliseconds, or rejects with the signal's reason when it aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
