/**
 * An incremental Server-Sent Events decoder following the WHATWG parsing rules (CR, LF and
 * CRLF line ends, `id` persisting across events, `retry` digits only, comments ignored),
 * bounded: a line or an event longer than the limit is an error, never unbounded memory.
 */

import { TidingsError } from "./error.js";

/** One thing decoded from the stream. */
export type SseItem =
  | { kind: "event"; type: string; data: string; lastEventId: string }
  | { kind: "retry"; ms: number };

/** Decodes text (already UTF-8 decoded, BOM removed) into events. */
export class SseDecoder {
  private readonly maxChars: number;
  private line = "";
  /** The previous chunk ended in CR: a leading LF of the next one belongs to it. */
  private afterCR = false;
  private data: string[] = [];
  private dataChars = 0;
  private eventType = "";
  private lastEventId = "";

  constructor(maxChars: number) {
    this.maxChars = maxChars;
  }

  /** Decodes `text`, appending every complete item to `out`. */
  feed(text: string, out: SseItem[]): void {
    let start = 0;
    if (this.afterCR && text.startsWith("\n")) start = 1;
    this.afterCR = false;
    for (;;) {
      let end = -1;
      for (let i = start; i < text.length; i++) {
        const c = text.charCodeAt(i);
        if (c === 10 || c === 13) {
          end = i;
          break;
        }
      }
      if (end < 0) break;
      const piece = text.slice(start, end);
      const fullLine = this.line.length > 0 ? this.line + piece : piece;
      this.line = "";
      if (fullLine.length > this.maxChars) throw tooLong();
      this.processLine(fullLine, out);
      if (text.charCodeAt(end) === 13) {
        if (end + 1 === text.length) {
          this.afterCR = true;
          start = end + 1;
          break;
        }
        if (text.charCodeAt(end + 1) === 10) {
          start = end + 2;
          continue;
        }
      }
      start = end + 1;
    }
    if (start < text.length) {
      this.line += text.slice(start);
      if (this.line.length > this.maxChars) throw tooLong();
    }
  }

  private processLine(line: string, out: SseItem[]): void {
    if (line.length === 0) {
      this.dispatch(out);
      return;
    }
    if (line.charCodeAt(0) === 58 /* ':' */) return;
    const colon = line.indexOf(":");
    let field: string;
    let value: string;
    if (colon < 0) {
      field = line;
      value = "";
    } else {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
    }
    switch (field) {
      case "event":
        this.eventType = value;
        break;
      case "data":
        this.dataChars += value.length + 1;
        if (this.dataChars > this.maxChars) throw tooLong();
        this.data.push(value);
        break;
      case "id":
        if (!value.includes("\0")) this.lastEventId = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) out.push({ kind: "retry", ms: Number(value) });
        break;
      default:
        break;
    }
  }

  private dispatch(out: SseItem[]): void {
    if (this.data.length === 0) {
      this.eventType = "";
      return;
    }
    out.push({
      kind: "event",
      type: this.eventType === "" ? "message" : this.eventType,
      data: this.data.join("\n"),
      lastEventId: this.lastEventId,
    });
    this.data = [];
    this.dataChars = 0;
    this.eventType = "";
  }
}

function tooLong(): TidingsError {
  return new TidingsError(
    "protocol",
    "an SSE line or event from the hub is longer than the frame limit",
  );
}
