/**
 * Prometheus metrics: a registry per process and an HTTP endpoint that serves it at
 * `/metrics` (text format 0.0.4). Each role registers its own metrics on the registry
 * (the coordinator's are in `src/coordinator/coordinator-metrics.ts`); nothing here is
 * global, so that tests can run several registries in one process.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from 'pino';

export { Counter, Gauge, Registry } from 'prom-client';

export interface MetricsRegistryOptions {
  /** Also export the process metrics (CPU, memory, event loop lag, ...). @default true */
  readonly processMetrics?: boolean;
  /** Labels added to every series, e.g. `{ role: 'coordinator' }`. */
  readonly labels?: Readonly<Record<string, string>>;
}

/** A fresh registry, with the process metrics unless asked otherwise. */
export function createMetricsRegistry(options: MetricsRegistryOptions = {}): Registry {
  const registry = new Registry();
  if (options.labels !== undefined) registry.setDefaultLabels({ ...options.labels });
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });

  return registry;
}

export interface MetricsServerOptions {
  readonly registry: Registry;
  /** @default '127.0.0.1' */
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** Lifecycle lines and failed scrapes. @default silent */
  readonly logger?: Logger;
}

/** A running metrics endpoint. */
export interface MetricsServer {
  /** `host:port` as bound. */
  readonly address: string;
  readonly port: number;
  /** Stops listening and ends open connections. Safe to call twice. */
  close(): Promise<void>;
}

/** Serves the registry at `GET /metrics`; every other path answers 404. */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const host = options.host ?? '127.0.0.1';
  const server = createServer((request, response) => {
    void answer(options, request, response);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(new Error(`cannot serve metrics on ${host}:${options.port}: ${err.message}`)),
    );
    server.listen(options.port, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const address = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  options.logger?.info({ address }, 'metrics endpoint listening');

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }));

  return { address, port, close };
}

async function answer(
  options: MetricsServerOptions,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  const path = (request.url ?? '/').split('?')[0];
  if (request.method !== 'GET' || path !== '/metrics') {
    response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try GET /metrics\n');
    return;
  }

  try {
    const body = await options.registry.metrics();
    response.writeHead(200, { 'content-type': options.registry.contentType }).end(body);
  } catch (err) {
    options.logger?.error({ err }, 'metrics scrape failed');
    response.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n');
  }
}
