/**
 * A client of one shard's Shard service, with domain types in and out and typed errors:
 * every failed call is rethrown through {@link rethrowGrpcError}.
 */
import * as grpc from '@grpc/grpc-js';

import type { PartitionAck } from '../coordinator/coordinator.js';
import type { AdoptOutcome, PartitionChunk } from '../shard/partition-copy.js';
import type { PartitionCounts, RouteOutcome } from '../shard/partition-host.js';
import type { RouteStamp } from '../shard/partition-ledger.js';
import type { PartitionBatch, PartitionReport } from '../shard/types.js';
import type { WriterFence } from '../sink/types.js';
import { CLIENT_KEEPALIVE_OPTIONS } from './keepalive.js';
import { rethrowGrpcError } from './shard-errors.js';
import {
  loadSpeedlayerProtos,
  partitionAckToWire,
  partitionBatchToWire,
  partitionChunkFromWire,
  partitionCountsFromWire,
  periodKeyToWire,
  reportFromWire,
  type AckResponseWire,
  type AdoptResponseWire,
  type CheckpointResponseWire,
  type CountsResponseWire,
  type PartitionChunkWire,
  type ReportResponseWire,
  type RouteAckWire,
  type ShardClient,
} from './proto.js';

/** A partition batch carries the columns of a whole router batch; 4 MiB (gRPC's default) is tight. */
export const SHARD_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/**
 * Retries, in one place: grpc-js resends a call that failed with a listed code, after a
 * capped exponential backoff with jitter, within the call's deadline. Every Shard method
 * may be sent again: Report, Counts and Checkpoint change no count, Route is applied once
 * per (sender, sequence) and Acknowledge once per (fencing token, round).
 *
 * Only UNAVAILABLE is listed: the connection was refused or dropped, or the shard is
 * closing or restarting. DEADLINE_EXCEEDED is not: the deadline covers every attempt.
 * FAILED_PRECONDITION and the rest are answers that the same call cannot change.
 */
const SHARD_SERVICE_CONFIG = {
  methodConfig: [
    {
      name: [{ service: 'speedlayer.v1.Shard' }],
      retryPolicy: {
        maxAttempts: 4,
        initialBackoff: '0.1s',
        maxBackoff: '1s',
        backoffMultiplier: 2,
        retryableStatusCodes: ['UNAVAILABLE'],
      },
    },
  ],
};

/** Channel options of a shard client, before the caller's own. */
export const DEFAULT_SHARD_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.service_config': JSON.stringify(SHARD_SERVICE_CONFIG),
  // Shards are on the cluster network: reconnect to a restarted one within a round, not
  // after gRPC's default of up to two minutes.
  'grpc.initial_reconnect_backoff_ms': 200,
  'grpc.max_reconnect_backoff_ms': 2000,
  'grpc.max_send_message_length': SHARD_MAX_MESSAGE_BYTES,
  'grpc.max_receive_message_length': SHARD_MAX_MESSAGE_BYTES,
  ...CLIENT_KEEPALIVE_OPTIONS,
};

export interface ShardRpcClientOptions {
  /** @default insecure */
  readonly credentials?: grpc.ChannelCredentials;
  /** Merged over {@link DEFAULT_SHARD_CHANNEL_OPTIONS}. */
  readonly channelOptions?: grpc.ChannelOptions;
}

/** One partition batch on its way to the partition's owner. */
export interface RouteCall {
  /** The ring epoch the sender routed under. */
  readonly ringEpoch: number;
  readonly stamp: RouteStamp;
  readonly batch: PartitionBatch;
}

/** A partition to take over from its owner (see {@link ShardRpcClient.adopt}). */
export interface AdoptCall {
  /** The ring epoch the owner holds the partition under. */
  readonly ringEpoch: number;
  readonly partition: number;
  /** Where the owner listens. */
  readonly from: string;
  /** Where the adopting shard is registered; the owner names it to senders. */
  readonly to: string;
}

/** A partition whose owner is to stop serving it (see {@link ShardRpcClient.release}). */
export interface ReleaseCall {
  readonly ringEpoch: number;
  readonly partition: number;
  /** Where the next owner listens. */
  readonly newOwner: string;
}

type Start<Res> = (
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: grpc.requestCallback<Res>,
) => void;

/** The Shard service of one shard. */
export class ShardRpcClient {
  private readonly client: ShardClient;

  constructor(
    /** `host:port` of the shard. */
    readonly address: string,
    options: ShardRpcClientOptions = {},
  ) {
    const { shard } = loadSpeedlayerProtos();
    this.client = new shard.Client(
      address,
      options.credentials ?? grpc.credentials.createInsecure(),
      { ...DEFAULT_SHARD_CHANNEL_OPTIONS, ...options.channelOptions },
    );
  }

  /** Sends a batch; resolves once it is durable on the shard. */
  async route(call: RouteCall, deadlineMs: number): Promise<RouteOutcome> {
    const request = {
      ring_epoch: call.ringEpoch,
      sender_id: call.stamp.senderId,
      sequence: call.stamp.sequence,
      batch: partitionBatchToWire(call.batch),
    };
    const ack = await this.invoke<RouteAckWire>('Route', deadlineMs, (m, o, cb) =>
      this.client.Route(request, m, o, cb),
    );

    return {
      partition: ack.partition,
      sequence: ack.sequence,
      duplicate: ack.duplicate,
      watermarkMs: ack.watermark_ms ?? Number.NEGATIVE_INFINITY,
    };
  }

  /** The reports of `partitions` (empty: all the shard holds). */
  async reports(
    ringEpoch: number,
    partitions: readonly number[],
    deadlineMs: number,
  ): Promise<PartitionReport[]> {
    const request = { ring_epoch: ringEpoch, partitions: [...partitions] };
    const response = await this.invoke<ReportResponseWire>('Report', deadlineMs, (m, o, cb) =>
      this.client.Report(request, m, o, cb),
    );

    return response.reports.map(reportFromWire);
  }

  /** Current counts of the periods in `partitions` (empty: all the shard holds). */
  async counts(
    ringEpoch: number,
    keys: readonly string[],
    partitions: readonly number[],
    deadlineMs: number,
  ): Promise<PartitionCounts[]> {
    const request = {
      ring_epoch: ringEpoch,
      periods: keys.map(periodKeyToWire),
      partitions: [...partitions],
    };
    const response = await this.invoke<CountsResponseWire>('Counts', deadlineMs, (m, o, cb) =>
      this.client.Counts(request, m, o, cb),
    );

    return response.partitions.map(partitionCountsFromWire);
  }

  /** Acknowledges what the coordinator of `fence` published in `round`. */
  async acknowledge(
    fence: WriterFence,
    round: number,
    acks: readonly PartitionAck[],
    deadlineMs: number,
  ): Promise<void> {
    const request = {
      ring_epoch: fence.ringEpoch,
      fencing_token: fence.fencingToken,
      round,
      acks: acks.map(partitionAckToWire),
    };
    await this.invoke<AckResponseWire>('Acknowledge', deadlineMs, (m, o, cb) =>
      this.client.Acknowledge(request, m, o, cb),
    );
  }

  /** Makes the shard's state durable; resolves with the partitions it holds. */
  async checkpoint(ringEpoch: number, deadlineMs: number): Promise<number[]> {
    const request = { ring_epoch: ringEpoch };
    const response = await this.invoke<CheckpointResponseWire>(
      'Checkpoint',
      deadlineMs,
      (m, o, cb) => this.client.Checkpoint(request, m, o, cb),
    );

    return [...response.partitions];
  }

  /**
   * Asks the shard to take a partition over from its owner; resolves once the copy is
   * durable. `signal` cancels the call (the shard then drops what it copied).
   */
  async adopt(call: AdoptCall, deadlineMs: number, signal?: AbortSignal): Promise<AdoptOutcome> {
    const request = {
      ring_epoch: call.ringEpoch,
      partition: call.partition,
      from: call.from,
      to: call.to,
    };
    let running: grpc.ClientUnaryCall | undefined;
    const cancel = (): void => running?.cancel();
    signal?.addEventListener('abort', cancel, { once: true });

    try {
      signal?.throwIfAborted();
      const response = await this.invoke<AdoptResponseWire>('Adopt', deadlineMs, (m, o, cb) => {
        running = this.client.Adopt(request, m, o, cb);
      });

      return { partition: response.partition, entries: response.entries, bytes: response.bytes };
    } finally {
      signal?.removeEventListener('abort', cancel);
    }
  }

  /**
   * Asks the owner to stop serving a partition and yields its state as it streams in.
   * Failures are rethrown typed; ending the iteration early, or `signal`, cancels the
   * stream.
   */
  async *release(
    call: ReleaseCall,
    deadlineMs: number,
    signal?: AbortSignal,
  ): AsyncGenerator<PartitionChunk> {
    const request = {
      ring_epoch: call.ringEpoch,
      partition: call.partition,
      new_owner: call.newOwner,
    };
    const stream = this.client.Release(request, new grpc.Metadata(), {
      deadline: Date.now() + deadlineMs,
    });
    const cancel = (): void => stream.cancel();
    signal?.addEventListener('abort', cancel, { once: true });

    try {
      for await (const wire of stream as AsyncIterable<PartitionChunkWire>) {
        yield partitionChunkFromWire(wire);
      }
    } catch (err) {
      rethrowGrpcError(err, `Release to shard ${this.address}`);
    } finally {
      signal?.removeEventListener('abort', cancel);
      stream.cancel();
    }
  }

  /** Closes the channel; calls in flight fail. Safe to call twice. */
  close(): void {
    this.client.close();
  }

  private async invoke<Res>(method: string, deadlineMs: number, start: Start<Res>): Promise<Res> {
    try {
      return await new Promise<Res>((resolve, reject) =>
        start(new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, response) =>
          err ? reject(err) : resolve(response as Res),
        ),
      );
    } catch (err) {
      rethrowGrpcError(err, `${method} to shard ${this.address}`);
    }
  }
}
