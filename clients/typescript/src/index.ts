/**
 * tidings-client: publish to a Tidings hub and subscribe with every guarantee on by default
 * (resume by `Last-Event-ID`, backoff 1 s → 32 s with jitter, `reset`, `reconnect-required`,
 * keep-alive timeout, client id). Browsers and Node 20+, no runtime dependencies.
 */

export { Backoff } from "./backoff.js";
export { TidingsError, type ErrorKind } from "./error.js";
export {
  TidingsClient,
  type ClientOptions,
  type NewEvent,
  type PublishOptions,
  type Snapshot,
  type Ticket,
  type WebSocketConstructor,
} from "./client.js";
export {
  Subscription,
  type Connected,
  type Disconnected,
  type EventListenerFn,
  type Item,
  type ResetNotice,
  type SessionNotice,
  type Since,
  type SnapshotEnd,
  type SubscribeOptions,
  type TidingsEvent,
} from "./subscription.js";
export { SseDecoder, type SseItem } from "./sse.js";
