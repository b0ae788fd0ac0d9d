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

/** The text after a bar: what is done of what, in bytes by default. */
export type ProgressDetail = (done: number, total: number) => string;

const bytesDetail: ProgressDetail = (done, total) => `${formatBytes(done)}/${formatBytes(total)}`;

/** Renders a bar: `label [#####.....]  42% 1.0 MiB/2.4 MiB`. */
export function renderBar(label: string, done: number, total: number, width = 30, detail: ProgressDetail = bytesDetail): string {
  const frac = total > 0 ? Math.min(1, done / total) : 0;
  const fill = Math.round(frac * width);
  const pct = `${Math.floor(frac * 100)}`.padStart(3);
  return `${label} [${"#".repeat(fill)}${".".repeat(width - fill)}] ${pct}% ${detail(done, total)}`;
}

/** A progress bar writing to a sink (stderr by default). */
export class ProgressBar {
  #label: string;
  #write: (text: string) => void;
  #tty: boolean;
  #lastDraw = 0;
  #lastPct = -1;
  #done = false;

  #detail: ProgressDetail;
  #plainEveryPct: number;

  /**
   * `detail` renders what follows the percentage (bytes by default); without a terminal a
   * plain line is written every `plainEveryPct` percent (default 25).
   */
  constructor(
    label: string,
    options: { write?: (text: string) => void; tty?: boolean; detail?: ProgressDetail; plainEveryPct?: number } = {},
  ) {
    this.#label = label;
    this.#write = options.write ?? writeStderr;
    this.#tty = options.tty ?? stderrIsTerminal();
    this.#detail = options.detail ?? bytesDetail;
    this.#plainEveryPct = options.plainEveryPct ?? 25;
  }

  /** Reports progress; redraws at most every 100 ms (every 25% without a terminal). */
  update(done: number, total: number): void {
    if (this.#done) return;
    const now = performance.now();
    const pct = total > 0 ? Math.floor((done / total) * 100) : 0;
    if (this.#tty) {
      if (now - this.#lastDraw < 100 && done < total) return;
      this.#lastDraw = now;
      this.#write(`\r${renderBar(this.#label, done, total, 30, this.#detail)}`);
    } else if (
      Math.floor(pct / this.#plainEveryPct) !== Math.floor(this.#lastPct / this.#plainEveryPct) ||
      (done >= total && this.#lastPct < 100)
    ) {
      this.#write(`${renderBar(this.#label, done, total, 30, this.#detail)}\n`);
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
