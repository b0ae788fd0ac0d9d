/**
 * Client-side latency of one streamed request: time to first token, inter-token gaps (a
 * delta carrying k tokens after a gap g counts k gaps of g / k, as the engine does) and
 * end-to-end latency, all in seconds from when the request was sent.
 * @module
 */

/** Latencies of one finished request. */
export interface RequestTiming {
  ttft: number;
  itl: number[];
  e2e: number;
  outputTokens: number;
}

/** Accumulates token arrivals of one request. */
export class RequestClock {
  #sent: number;
  #last = 0;
  #first = -1;
  #tokens = 0;
  #itl: number[] = [];

  /** `sent` is performance.now() when the request left. */
  constructor(sent: number) {
    this.#sent = sent;
  }

  /** Records `tokens` new tokens arriving at `now` (ms). */
  tokens(tokens: number, now: number): void {
    if (tokens <= 0) return;
    if (this.#first < 0) {
      this.#first = now;
      // Tokens that came with the first one arrived together: zero gaps.
      for (let i = 1; i < tokens; i++) this.#itl.push(0);
    } else {
      const gap = (now - this.#last) / 1000 / tokens;
      for (let i = 0; i < tokens; i++) this.#itl.push(gap);
    }
    this.#last = now;
    this.#tokens += tokens;
  }

  /** The request's timing when it ended at `now` (ms). */
  finish(now: number): RequestTiming {
    return {
      ttft: this.#first < 0 ? NaN : (this.#first - this.#sent) / 1000,
      itl: this.#itl,
      e2e: (now - this.#sent) / 1000,
      outputTokens: this.#tokens,
    };
  }
}
