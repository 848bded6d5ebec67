/**
 * Keepalive on the Query service's long call, WatchVersions, through a proxy that goes
 * silent while keeping its connections open (a lost node, a network partition):
 * - the client's pings find the dead path and end the watch with a retryable
 *   UNAVAILABLE, so `speedlayer watch` reconnects instead of waiting for good;
 * - the server's pings find the client gone and close its stream, which stops polling
 *   the warehouse;
 * - a stream the server ends with OK is reported as lost too.
 * Each side's pings are made fast in turn while the other side's are too slow to matter.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Warehouse } from '../../src/sink/index.js';
import { loadSpeedlayerProtos } from '../../src/transport/index.js';
import { QueryClient } from '../../src/transport/query-client.js';
import { QueryError } from '../../src/transport/query-errors.js';
import { startQueryServer, type QueryServer } from '../../src/transport/query-server.js';
import { FreezableProxy } from '../support/frozen-proxy.js';
import { warehouseBackends } from '../support/warehouse-places.js';

const [backend] = warehouseBackends('speedlayer-keepalive-');
const FAST = { 'grpc.keepalive_time_ms': 300, 'grpc.keepalive_timeout_ms': 300 };
const SLOW = { 'grpc.keepalive_time_ms': 3_600_000, 'grpc.keepalive_timeout_ms': 3_600_000 };

async function waitFor(check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not true within ${timeoutMs} ms`);
    await sleep(25);
  }
}

interface Watched {
  readonly errors: unknown[];
  ready: boolean;
  cancel: () => void;
}

function watch(client: QueryClient): Watched {
  const watched: Watched = { errors: [], ready: false, cancel: () => {} };
  watched.cancel = client.watch(() => {}, {
    onReady: () => (watched.ready = true),
    onError: (error) => watched.errors.push(error),
  });

  return watched;
}

describe('keepalive on WatchVersions', () => {
  let warehouse: Warehouse;

  beforeAll(async () => {
    warehouse = await Warehouse.open((await backend!.place()).options);
  });

  afterAll(async () => {
    await warehouse?.close();
    await backend?.tearDown();
  });

  async function serve(serverOptions: grpc.ServerOptions): Promise<QueryServer> {
    return startQueryServer({ warehouse, pollIntervalMs: 50, serverOptions });
  }

  it("ends the client's watch with a retryable UNAVAILABLE once the path goes silent", async () => {
    const server = await serve(SLOW);
    const proxy = await FreezableProxy.start(server.address);
    const client = await QueryClient.connect(proxy.address, { channelOptions: FAST });
    try {
      const watched = watch(client);
      await waitFor(() => watched.ready);
      // Pings pass while the path is alive: the stream stays open across many of them.
      await sleep(1_500);
      expect(watched.errors).toEqual([]);

      proxy.freeze();
      await waitFor(() => watched.errors.length > 0);

      expect(watched.errors).toHaveLength(1);
      expect(watched.errors[0]).toBeInstanceOf(QueryError);
      expect(watched.errors[0]).toMatchObject({ kind: 'unavailable', retryable: true });
    } finally {
      client.close();
      await proxy.close();
      await server.close();
    }
  });

  it('closes the stream of a client that went silent, so that it stops polling', async () => {
    const server = await serve(FAST);
    const proxy = await FreezableProxy.start(server.address);
    const client = await QueryClient.connect(proxy.address, { channelOptions: SLOW });
    try {
      const watched = watch(client);
      await waitFor(() => watched.ready);
      await sleep(1_500);
      expect(server.openWatches).toBe(1);
      expect(watched.errors).toEqual([]);

      proxy.freeze();
      await waitFor(() => server.openWatches === 0);
    } finally {
      client.close();
      await proxy.close();
      await server.close();
    }
  });

  it('reports a stream that the server ended with OK as lost', async () => {
    const { Client } = loadSpeedlayerProtos().query;
    const server = new grpc.Server();
    server.addService(Client.service, {
      WatchVersions: (call: grpc.ServerWritableStream<unknown, unknown>) => {
        call.sendMetadata(new grpc.Metadata());
        setTimeout(() => call.end(), 200);
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) =>
        error === null ? resolve(bound) : reject(error),
      ),
    );
    const client = await QueryClient.connect(`127.0.0.1:${port}`);
    try {
      const watched = watch(client);
      await waitFor(() => watched.errors.length > 0);

      expect(watched.ready).toBe(true);
      expect(watched.errors).toHaveLength(1);
      expect(watched.errors[0]).toMatchObject({
        kind: 'unavailable',
        retryable: true,
        message: expect.stringContaining('the server ended the WatchVersions stream'),
      });
    } finally {
      client.close();
      server.forceShutdown();
    }
  });
});
