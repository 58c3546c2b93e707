/**
 * The reconnect and retry schedule, kept pure (no clock, no randomness of its own) so it can
 * be tested exactly. The n-th consecutive failure waits a time in `(base/2, base]`, where
 * `base = initial · 2ⁿ` capped at `max` ("equal jitter"); a success resets n. The same
 * schedule as the Rust client's `Backoff`.
 */

/** An exponential backoff schedule with jitter. */
export class Backoff {
  private initial: number;
  readonly maxMs: number;
  /** Consecutive failures since the last success. */
  failures = 0;

  /** A schedule starting at `initialMs` and doubling up to `maxMs`. */
  constructor(initialMs: number, maxMs: number) {
    this.maxMs = maxMs;
    this.initial = Math.min(initialMs, maxMs);
  }

  /** The schedule every subscription starts with: 1 s doubling to 32 s. */
  static reconnect(): Backoff {
    return new Backoff(1000, 32000);
  }

  /** Replaces the initial delay, as the hub's SSE `retry:` hint asks (capped at the max). */
  setInitial(ms: number): void {
    this.initial = Math.min(ms, this.maxMs);
  }

  /**
   * The delay in milliseconds before the next attempt, given a uniform random `jitter` in
   * `[0, 1)`: jitter 0 gives the full base, jitter near 1 half of it. Counts one failure.
   */
  nextDelay(jitter: number): number {
    const base = this.base();
    this.failures += 1;
    const j = Math.min(Math.max(jitter, 0), 1);
    return base * (1 - j / 2);
  }

  /** The un-jittered delay the next failure would wait. */
  base(): number {
    return Math.min(this.initial * 2 ** Math.min(this.failures, 31), this.maxMs);
  }

  /** A success: the next failure starts from the initial delay again. */
  reset(): void {
    this.failures = 0;
  }
}
