/**
 * What the HTTP listener refused or cut off, as Prometheus text: open connections,
 * connections refused at the cap, deadlines that closed connections, malformed requests.
 * @module
 */
import type { HttpListenerCounters } from "./http1.ts";
import { PrometheusWriter } from "./prometheus.ts";

/** The listener's counters and its open connections. */
export interface ListenerStats extends HttpListenerCounters {
  open: number;
}

/** The listener's series (`webgpu_llm_http_*`). */
export function renderListenerMetrics(s: ListenerStats): string {
  return new PrometheusWriter()
    .gauge("http_open_connections", "Client connections open now.", s.open)
    .counter("http_connections_rejected", "Connections answered 503 because the connection cap was reached.", s.connectionsRejected)
    .labelledCounter(
      "http_timeouts",
      "Connections closed by a deadline (headers, body, idle keep-alive, or write: a client that stopped reading).",
      Object.entries(s.timeouts).map(([kind, value]) => ({ labels: { kind }, value })),
    )
    .counter("http_malformed_requests", "Requests refused before routing (malformed, oversized headers).", s.malformed)
    .counter("http_accept_errors", "Failed accepts the listener survived (e.g. out of file descriptors).", s.acceptErrors)
    .toString();
}
