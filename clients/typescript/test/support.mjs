// Test support: runs the real `tidings` binary (TIDINGS_BIN, else the workspace's
// target/debug/tidings) on a loopback port with a fresh data directory, and kills, stops and
// restarts it on the same port and data.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.TIDINGS_BIN ?? resolve(here, "../../../target/debug/tidings");
export const WAIT_MS = 15_000;

if (!existsSync(BIN)) {
  throw new Error(`no tidings binary at ${BIN}: run \`cargo build -p tidings\` or set TIDINGS_BIN`);
}

/** A running hub. `args` are extra `tidings serve` flags. */
export class Hub {
  constructor(args = []) {
    this.args = args;
    this.dir = mkdtempSync(join(tmpdir(), "tidings-ts-"));
    this.listen = "127.0.0.1:0";
    this.child = undefined;
    this.addr = undefined;
    this.log = "";
  }

  static async start(args = []) {
    const hub = new Hub(args);
    await hub.spawn();
    // Restarts come back where clients know the hub: the same port.
    hub.listen = hub.addr;
    return hub;
  }

  get url() {
    return `http://${this.addr}`;
  }

  async spawn() {
    const child = spawn(
      BIN,
      ["serve", "--listen", this.listen, "--data-dir", join(this.dir, "data"), ...this.args],
      { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, NO_COLOR: "1" } },
    );
    this.child = child;
    this.exited = new Promise((r) => child.once("exit", (code, signal) => r({ code, signal })));
    const addr = await new Promise((resolveAddr, reject) => {
      const timer = setTimeout(() => reject(new Error(`tidings did not report listening:\n${this.log}`)), WAIT_MS);
      let pending = "";
      child.stderr.setEncoding("utf8");
      child.stderr.on("data", (text) => {
        this.log += text;
        pending += text;
        let nl;
        while ((nl = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, nl).replace(/\x1b\[[0-9;]*m/g, "");
          pending = pending.slice(nl + 1);
          const m = line.includes("Tidings is listening.") && /addr=("?)([0-9.:[\]]+)\1/.exec(line);
          if (m) {
            clearTimeout(timer);
            resolveAddr(m[2]);
          }
        }
      });
      child.once("exit", () => {
        clearTimeout(timer);
        reject(new Error(`tidings exited before listening:\n${this.log}`));
      });
    });
    this.addr = addr;
  }

  /** kill -9, and wait for the process to be gone. */
  async kill9() {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill("SIGKILL");
      await this.exited;
    }
  }

  /** SIGTERM: a graceful shutdown (streams get reconnect-required). Resolves on exit. */
  async stop() {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill("SIGTERM");
      return await this.exited;
    }
    return undefined;
  }

  async restart() {
    await this.kill9();
    await this.spawn();
  }

  async readyz() {
    const r = await fetch(`${this.url}/readyz`);
    return await r.json();
  }

  async close() {
    await this.kill9();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Polls `check` until it returns a truthy value, or fails after `ms` with `what`. */
export async function until(check, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
