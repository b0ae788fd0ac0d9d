/**
 * A raw TCP client for hostile-client tests: sends exact bytes (malformed requests, half-sent
 * headers or bodies) and reports what came back and whether the server closed the connection.
 */
import net from "node:net";

/** What one raw exchange produced. */
export interface RawResult {
  /** Status codes of the responses read (several for pipelined requests; 100 excluded). */
  statuses: number[];
  /** Everything received, as latin1 text. */
  text: string;
  /** The server closed the connection (before `waitMs` ran out). */
  closedByServer: boolean;
  /** A connection error (reset, refused), if any. */
  error: string | null;
}

/** Options of {@link rawExchange}. */
export interface RawOptions {
  /** How long to wait for the server after sending (default 5000 ms). */
  waitMs?: number;
  /** Close our side right after sending (a drop mid-request). */
  dropAfterSend?: boolean;
  /** Stop waiting once this many responses have arrived (default: wait for close or waitMs). */
  responses?: number;
  /** Pause between the parts (slow clients). */
  gapMs?: number;
}

/** Status codes of the HTTP responses in `text` (informational 1xx left out). */
export function responseStatuses(text: string): number[] {
  return [...text.matchAll(/(?:^|\r\n)HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1])).filter((s) => s >= 200);
}

/** Connects, sends `parts` (bytes or text), and collects the answer. */
export function rawExchange(port: number, parts: (string | Uint8Array)[], options: RawOptions = {}): Promise<RawResult> {
  const waitMs = options.waitMs ?? 5000;
  return new Promise((resolve) => {
    let text = "";
    let error: string | null = null;
    let done = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const sock = net.connect(port, "127.0.0.1");
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ statuses: responseStatuses(text), text, closedByServer, error });
    };
    sock.on("data", (d: Uint8Array) => {
      text += new TextDecoder("latin1").decode(d);
      if (options.responses && responseStatuses(text).length >= options.responses && /\r\n\r\n/.test(text)) {
        // Give the body a moment to arrive, then stop.
        setTimeout(() => finish(false), 50);
      }
    });
    sock.on("error", (e: Error & { code?: string }) => (error = e.code ?? e.message));
    sock.on("close", () => finish(!options.dropAfterSend));
    sock.on("connect", async () => {
      for (const [i, p] of parts.entries()) {
        if (i > 0 && options.gapMs) await new Promise((r) => setTimeout(r, options.gapMs));
        if (sock.destroyed) return;
        sock.write(typeof p === "string" ? new TextEncoder().encode(p) : p);
      }
      if (options.dropAfterSend) {
        setTimeout(() => finish(false), 20);
        return;
      }
      timer = setTimeout(() => finish(false), waitMs);
    });
  });
}

/** Opens a connection, sends `head` and leaves it open; `close()` drops it, `closed` tells if the server did. */
export function halfOpen(port: number, head: string): Promise<{ close(): void; closedByServer: () => boolean; received: () => string }> {
  return new Promise((resolve) => {
    let closedByServer = false;
    let received = "";
    let ours = false;
    const sock = net.connect(port, "127.0.0.1");
    const handle = {
      close: () => {
        ours = true;
        sock.destroy();
      },
      closedByServer: () => closedByServer,
      received: () => received,
    };
    sock.on("data", (d: Uint8Array) => (received += new TextDecoder("latin1").decode(d)));
    sock.on("close", () => {
      closedByServer = !ours;
      resolve(handle); // refused or reset before connecting
    });
    sock.on("error", () => {});
    sock.on("connect", () => {
      sock.write(head);
      resolve(handle);
    });
    // A full accept backlog leaves connect pending: report the handle anyway.
    setTimeout(() => resolve(handle), 3000);
  });
}
