/**
 * A one-line progress bar on stderr: redrawn in place on a terminal, a few plain lines
 * otherwise (logs stay readable).
 * @module
 */
import { stderrIsTerminal, writeStderr } from "../runtime/runtime.ts";

/** Formats a byte count. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

/** Renders a bar: `label [#####.....]  42% 1.0 MiB/2.4 MiB`. */
export function renderBar(label: string, done: number, total: number, width = 30): string {
  const frac = total > 0 ? Math.min(1, done / total) : 0;
  const fill = Math.round(frac * width);
  const pct = `${Math.floor(frac * 100)}`.padStart(3);
  return `${label} [${"#".repeat(fill)}${".".repeat(width - fill)}] ${pct}% ${formatBytes(done)}/${formatBytes(total)}`;
}

/** A progress bar writing to a sink (stderr by default). */
export class ProgressBar {
  #label: string;
  #write: (text: string) => void;
  #tty: boolean;
  #lastDraw = 0;
  #lastPct = -1;
  #done = false;

  constructor(label: string, options: { write?: (text: string) => void; tty?: boolean } = {}) {
    this.#label = label;
    this.#write = options.write ?? writeStderr;
    this.#tty = options.tty ?? stderrIsTerminal();
  }

  /** Reports progress; redraws at most every 100 ms (every 25% without a terminal). */
  update(done: number, total: number): void {
    if (this.#done) return;
    const now = performance.now();
    const pct = total > 0 ? Math.floor((done / total) * 100) : 0;
    if (this.#tty) {
      if (now - this.#lastDraw < 100 && done < total) return;
      this.#lastDraw = now;
      this.#write(`\r${renderBar(this.#label, done, total)}`);
    } else if (Math.floor(pct / 25) !== Math.floor(this.#lastPct / 25) || (done >= total && this.#lastPct < 100)) {
      this.#write(`${renderBar(this.#label, done, total)}\n`);
    }
    this.#lastPct = pct;
  }

  /** Ends the bar's line. */
  finish(): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#tty) this.#write("\n");
  }
}
