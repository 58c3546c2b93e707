/**
 * `TidingsError`: every failure the client reports, with its kind, the hub's HTTP status and
 * stable error code when it answered, and whether retrying can help (`permanent`).
 */

/** What went wrong, broadly. */
export type ErrorKind =
  /** The caller's input cannot be sent (bad selector, bad URL). Permanent. */
  | "invalid_input"
  /** 401: the credential is missing or wrong. Permanent. */
  | "unauthorized"
  /** 403: the credential may not do this. Permanent. */
  | "forbidden"
  /** Another 4xx: the hub refused the request as it is. Permanent. */
  | "rejected"
  /** 5xx, 408 or 429: the hub could not serve it now. Retried. */
  | "unavailable"
  /** The hub could not be reached, or the connection broke. Retried. */
  | "connect"
  /** The hub did not answer in time, or a stream went silent. Retried. */
  | "timeout"
  /** The hub sent something the client cannot read. Retried. */
  | "protocol";

const PERMANENT: ReadonlySet<ErrorKind> = new Set<ErrorKind>([
  "invalid_input",
  "unauthorized",
  "forbidden",
  "rejected",
]);

/** A failure, with enough detail to decide what to do. Never carries the token. */
export class TidingsError extends Error {
  readonly kind: ErrorKind;
  /** The HTTP status the hub answered with, if it answered. */
  readonly status: number | undefined;
  /** The hub's stable error code (`invalid_topic`, `unauthorized`, …), if it sent one. */
  readonly code: string | undefined;

  constructor(
    kind: ErrorKind,
    message: string,
    options: { status?: number; code?: string; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "TidingsError";
    this.kind = kind;
    this.status = options.status;
    this.code = options.code;
  }

  /** Whether retrying the same request cannot help (401, 403, other 4xx, bad input). */
  get permanent(): boolean {
    return PERMANENT.has(this.kind);
  }

  /** An error from a hub's non-2xx answer and its body (the `{"error":{…}}` shape). */
  static fromAnswer(status: number, body: string): TidingsError {
    let kind: ErrorKind;
    if (status === 401) kind = "unauthorized";
    else if (status === 403) kind = "forbidden";
    else if (status === 408 || status === 429) kind = "unavailable";
    else if (status >= 400 && status < 500) kind = "rejected";
    else kind = "unavailable";
    try {
      const parsed = JSON.parse(body) as { error?: { code?: unknown; message?: unknown } };
      const e = parsed.error;
      if (e && typeof e.code === "string" && typeof e.message === "string") {
        return new TidingsError(kind, `${e.message} (${e.code})`, { status, code: e.code });
      }
    } catch {
      // Not the hub's JSON: fall through to the raw text.
    }
    return new TidingsError(kind, `HTTP ${status}: ${body.slice(0, 200).trim()}`, { status });
  }
}
