/**
 * The replicator's HTTP endpoints, on node's own `http` (three routes need no framework):
 * - `GET /healthz`: 200 while the process runs (liveness: restart me if this stops answering);
 * - `GET /readyz`: 200 while streaming or backfilling, else 503, with a JSON body saying why;
 * - `GET /metrics`: Prometheus text exposition.
 * It starts before the pipeline, so liveness holds while the first connection is being retried.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { StatusReport } from './service-status.js';

export interface HttpEndpoints {
  status(): StatusReport;
  metrics(): Promise<{ contentType: string; body: string }>;
  /** Applied to every body before it is sent (removes secrets). */
  redact?: (text: string) => string;
  /** A request failed inside a handler (e.g. collecting metrics). */
  onError?: (error: unknown) => void;
}

export class HttpServer {
  readonly #server: Server;
  readonly #endpoints: HttpEndpoints;

  constructor(endpoints: HttpEndpoints) {
    this.#endpoints = endpoints;
    this.#server = createServer((request, response) => {
      this.#handle(request, response).catch((error: unknown) => {
        endpoints.onError?.(error);
        if (!response.headersSent) send(response, 500, 'text/plain; charset=utf-8', 'internal error\n');
        else response.destroy();
      });
    });
    // Probes and scrapers reconnect for each request; idle keep-alive sockets must not delay a stop.
    this.#server.keepAliveTimeout = 5_000;
  }

  /** Listens; rejects (e.g. EADDRINUSE) if the port cannot be bound. */
  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      this.#server.once('error', onError);
      this.#server.listen(port, host, () => {
        this.#server.off('error', onError);
        resolve(this.#server.address() as AddressInfo);
      });
    });
  }

  /** Stops accepting, ends idle connections, and waits for the requests in flight. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.#server.listening) return resolve();
      this.#server.close(() => resolve());
      this.#server.closeIdleConnections();
    });
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.setHeader('Allow', 'GET, HEAD');
      return send(response, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    }
    const redact = this.#endpoints.redact ?? ((text: string) => text);
    switch (path) {
      case '/healthz':
        return send(response, 200, 'text/plain; charset=utf-8', 'ok\n');
      case '/readyz': {
        const status = this.#endpoints.status();
        const body = redact(`${JSON.stringify(status, null, 2)}\n`);
        return send(response, status.ready ? 200 : 503, 'application/json; charset=utf-8', body);
      }
      case '/metrics': {
        const metrics = await this.#endpoints.metrics();
        return send(response, 200, metrics.contentType, redact(metrics.body));
      }
      default:
        return send(
          response,
          404,
          'text/plain; charset=utf-8',
          'not found: try /healthz, /readyz or /metrics\n',
        );
    }
  }
}

function send(response: ServerResponse, status: number, contentType: string, body: string): void {
  response.writeHead(status, { 'Content-Type': contentType, 'Cache-Control': 'no-store' });
  response.end(response.req.method === 'HEAD' ? undefined : body);
}
