/**
 * A cluster in one process for the Ingest tests: two shards (a partition host behind a
 * Shard server each) under a fixed ring of P = 4, one of them also serving Ingest through
 * an IngestRouter, a PGlite warehouse for rows and dead letters, and a Coordinator over
 * GrpcPartitionsPort. Plus a client of the Ingest service and the events the tests send.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import * as grpc from '@grpc/grpc-js';

import { Coordinator } from '../../src/coordinator/coordinator.js';
import { silentLogger, type Logger } from '../../src/observability/index.js';
import type { Ring } from '../../src/ring/index.js';
import { PartitionHost } from '../../src/shard/partition-host.js';
import { Warehouse } from '../../src/sink/warehouse.js';
import { GrpcPartitionsPort } from '../../src/transport/grpc-partitions.js';
import {
  IngestRouter,
  type IngestRouterOptions,
  type IngestSettings,
} from '../../src/transport/ingest-router.js';
import { ingestService } from '../../src/transport/ingest-server.js';
import {
  loadSpeedlayerProtos,
  type EventBatchRequestWire,
  type EventWire,
  type FinishResponseWire,
  type IngestAckWire,
  type IngestClient,
} from '../../src/transport/proto.js';
import { RingView } from '../../src/transport/routing-table.js';
import type { ServedService } from '../../src/transport/served-service.js';
import type { ShardMetrics } from '../../src/transport/shard-metrics.js';
import { ShardServer } from '../../src/transport/shard-server.js';

export const MIN = 60_000;
export const HOUR = 60 * MIN;
export const DAY = 24 * HOUR;
export const P = 4;
export const RING: Ring = {
  epoch: 1,
  partitions: P,
  owners: ['shard-a', 'shard-b', 'shard-a', 'shard-b'],
};
export const SETTINGS: IngestSettings = {
  partitions: P,
  allowedLatenessMs: 10 * MIN,
  restatementHorizonMs: 35 * DAY,
  maxFutureSkewMs: 5 * MIN,
  maxOutOfOrdernessMs: 10 * MIN,
};
export const MEMORY_BUDGET = 1024 ** 3;
/** The wall clock of the tests: after every event, so that none is future by the clock. */
export const NOW = Date.UTC(2030, 0, 1);

/** Cleanups of everything the helpers open, run in reverse by the test file. */
export const cleanups: (() => Promise<void> | void)[] = [];

export async function tempDir(prefix: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));

  return dir;
}

/** A shard in miniature: a partition host behind a Shard server, maybe with other services. */
export class TestShard {
  private stopped = false;

  private constructor(
    readonly host: PartitionHost,
    readonly server: ShardServer,
  ) {
    cleanups.push(() => this.stop());
  }

  static async start(
    stateDir: string,
    partitions: readonly number[],
    options: {
      port?: number;
      services?: readonly ServedService[];
      metrics?: ShardMetrics;
      senderSilenceMs?: number;
      logger?: Logger;
    } = {},
  ): Promise<TestShard> {
    const host = await PartitionHost.open({
      stateDir,
      partitionCount: P,
      partitions,
      ringEpoch: RING.epoch,
      allowedLatenessMs: SETTINGS.allowedLatenessMs,
      ...(options.senderSilenceMs === undefined
        ? {}
        : { senderSilenceMs: options.senderSilenceMs }),
      memoryBudgetBytes: MEMORY_BUDGET,
      logger: options.logger ?? silentLogger(),
    });
    const server = await ShardServer.start({
      host,
      address: `127.0.0.1:${options.port ?? 0}`,
      logger: silentLogger(),
      services: options.services,
      shutdownGraceMs: 500,
      metrics: options.metrics,
    });
    options.metrics?.observeHost(() => server.host);

    return new TestShard(host, server);
  }

  get address(): string {
    return this.server.address;
  }

  /** Stops serving and closes the store: what was acknowledged is already durable. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;

    await this.server.close();
    await this.host.close();
  }
}

/** Two shards, Ingest on shard-a, a warehouse and a coordinator. */
export class IngestCluster {
  private constructor(
    readonly dir: string,
    readonly a: TestShard,
    public b: TestShard,
    readonly router: IngestRouter,
    readonly ring: RingView,
    readonly warehouse: Warehouse,
    readonly coordinator: Coordinator,
  ) {}

  static async start(
    dir: string,
    options: Partial<Pick<IngestRouterOptions, 'watermark' | 'delivery'>> = {},
  ): Promise<IngestCluster> {
    const b = await TestShard.start(path.join(dir, 'shard-b'), [1, 3]);
    const warehouse = await Warehouse.open({ dataDir: path.join(dir, 'warehouse') });
    cleanups.push(() => warehouse.close());
    const ring = new RingView({ ring: RING, addresses: [['shard-b', b.address]] });
    const local: { shard?: TestShard } = {};
    const router = await IngestRouter.open({
      ...SETTINGS,
      nodeId: 'shard-a',
      watermark: options.watermark ?? 'event-time',
      ring,
      localHost: () => local.shard?.server.host,
      deadLetters: warehouse,
      dataDir: path.join(dir, 'node-a'),
      logger: silentLogger(),
      now: () => NOW,
      delivery: { initialBackoffMs: 50, maxBackoffMs: 300, ...options.delivery },
    });
    cleanups.push(() => router.close());
    const service = ingestService({ router, logger: silentLogger() });
    local.shard = await TestShard.start(path.join(dir, 'shard-a'), [0, 2], {
      services: [service],
    });
    const a = local.shard;

    const coordinator = await fencedCoordinator(warehouse, (owner) =>
      owner === 'shard-a' ? a.address : b.address,
    );

    return new IngestCluster(dir, a, b, router, ring, warehouse, coordinator);
  }

  /** Stops shard-b and starts it again on the same port and data directory. */
  async stopB(): Promise<() => Promise<void>> {
    const port = this.b.server.port;
    await this.b.stop();

    return async () => {
      this.b = await TestShard.start(path.join(this.dir, 'shard-b'), [1, 3], { port });
    };
  }
}

/**
 * A coordinator over the shards of {@link RING} (`addressOf` names each owner's address),
 * with fencing token 1 claimed in `warehouse`.
 */
export async function fencedCoordinator(
  warehouse: Warehouse,
  addressOf: (owner: string) => string,
): Promise<Coordinator> {
  const fence = { ringEpoch: RING.epoch, fencingToken: 1 };
  await warehouse.claimFence(fence);
  // A loaded machine must not make a shard miss a round's report deadline.
  const port = new GrpcPartitionsPort({
    addresses: RING.owners.map(addressOf),
    fence,
    reportDeadlineMs: 15_000,
    logger: silentLogger(),
  });
  cleanups.push(() => port.close());

  return new Coordinator(port, warehouse, {
    allowedLatenessMs: SETTINGS.allowedLatenessMs,
    fence,
    logger: silentLogger(),
  });
}

/** A client of the Ingest service. */
export class Ingest {
  readonly client: IngestClient;

  constructor(address: string) {
    const { ingest } = loadSpeedlayerProtos();
    this.client = new ingest.Client(address, grpc.credentials.createInsecure());
    cleanups.push(() => this.client.close());
  }

  send(request: EventBatchRequestWire, deadlineMs = 30_000): Promise<IngestAckWire> {
    return new Promise((resolve, reject) =>
      this.client.Send(
        request,
        new grpc.Metadata(),
        { deadline: Date.now() + deadlineMs },
        (err, ack) => (err ? reject(err) : resolve(ack as IngestAckWire)),
      ),
    );
  }

  finish(): Promise<FinishResponseWire> {
    return new Promise((resolve, reject) =>
      this.client.Finish({}, (err, response) =>
        err ? reject(err) : resolve(response as FinishResponseWire),
      ),
    );
  }

  stream(): IngestStream {
    return new IngestStream(this.client);
  }
}

/** One SendStream call: acknowledgements are matched to batches by batch id. */
export class IngestStream {
  readonly acks: IngestAckWire[] = [];
  private readonly call: grpc.ClientDuplexStream<EventBatchRequestWire, IngestAckWire>;
  private readonly waiting = new Map<string, (ack: IngestAckWire) => void>();
  private readonly ended: Promise<void>;

  constructor(client: IngestClient) {
    this.call = client.SendStream();
    this.call.on('data', (ack: IngestAckWire) => {
      this.acks.push(ack);
      this.waiting.get(ack.batch_id)?.(ack);
    });
    this.ended = new Promise((resolve, reject) => {
      this.call.on('end', resolve);
      this.call.on('error', reject);
    });
    cleanups.push(() => this.call.cancel());
  }

  send(request: EventBatchRequestWire): Promise<IngestAckWire> {
    const ack = new Promise<IngestAckWire>((resolve) =>
      this.waiting.set(request.batch_id, resolve),
    );
    this.call.write(request);

    return ack;
  }

  /** Half-closes the stream; resolves when the server ends it. */
  end(): Promise<void> {
    this.call.end();

    return this.ended;
  }
}

/** An event as the tests describe it, with what the node must answer for it. */
export interface WireEvent extends EventWire {
  /** The independent verdict: undefined when counted. */
  readonly expected?: 'invalid_user_id' | 'invalid_time' | 'future' | 'too_old';
}

/** An event on the wire, without the test's fields. */
export function wire(event: WireEvent): EventWire {
  const { expected: _, ...rest } = event;

  return rest;
}
