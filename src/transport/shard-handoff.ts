/**
 * The Shard service's handoff methods, which move a partition's state from its owner to
 * the shard that the next ring names (docs/cluster.md, "Partition handoff"):
 *
 * - Release, on the owner: marks the partition released under its ring epoch (durably,
 *   with a checkpoint), so that every later call for it is refused as 'partition-moving',
 *   then streams the partition's range in chunks;
 * - Adopt, on the next owner: calls the owner's Release and writes the stream over its
 *   own range of the partition, answering once the complete copy is durable.
 */
import { once } from 'node:events';

import type * as grpc from '@grpc/grpc-js';

import type { Logger } from '../observability/index.js';
import { ShardError, isShardError } from '../shard/errors.js';
import type { AdoptOutcome } from '../shard/partition-copy.js';
import type { PartitionHost } from '../shard/partition-host.js';
import {
  partitionChunkToWire,
  type AdoptRequestWire,
  type AdoptResponseWire,
  type PartitionChunkWireInput,
  type ReleaseRequestWire,
  type ShardHandlers,
} from './proto.js';
import { ShardRpcClient, type ShardRpcClientOptions } from './shard-client.js';
import { toGrpcStatus } from './shard-errors.js';

export interface ShardHandoffOptions {
  /** How an adopting shard reaches the owner. */
  readonly client?: ShardRpcClientOptions;
  /** How long the owner's Release stream may take. @default 600000 */
  readonly copyDeadlineMs?: number;
}

/** Adopt and Release over the host that `hostOf` returns for each call. */
export function shardHandoffHandlers(
  hostOf: () => PartitionHost,
  logger: Logger,
  options: ShardHandoffOptions = {},
): Pick<ShardHandlers, 'Adopt' | 'Release'> {
  return {
    Adopt: (call, callback) => {
      const cancelled = new AbortController();
      call.on('cancelled', () => cancelled.abort());

      adopt(hostOf(), call.request, cancelled.signal, options).then(
        (outcome) => callback(null, outcome satisfies AdoptResponseWire),
        (err: unknown) => {
          logFailure(logger, 'Adopt', call.request.partition, err);
          callback(toGrpcStatus(err));
        },
      );
    },

    Release: (call) => {
      release(hostOf(), call).catch((err: unknown) => {
        logFailure(logger, 'Release', call.request.partition, err);
        call.emit('error', toGrpcStatus(err));
      });
    },
  };
}

async function adopt(
  host: PartitionHost,
  request: AdoptRequestWire,
  signal: AbortSignal,
  options: ShardHandoffOptions,
): Promise<AdoptOutcome> {
  if (request.from === '' || request.to === '') {
    throw new ShardError(
      'invalid-argument',
      'an adoption must name the owner (from) and the adopting shard (to)',
      { partition: request.partition },
    );
  }

  const owner = new ShardRpcClient(request.from, options.client);
  try {
    const release = {
      ringEpoch: request.ring_epoch,
      partition: request.partition,
      newOwner: request.to,
    };
    const chunks = owner.release(release, options.copyDeadlineMs ?? 600_000, signal);

    // The host checks the adoption before it reads the first chunk, which starts the release.
    return await host.adopt(request.partition, request.ring_epoch, chunks);
  } finally {
    owner.close();
  }
}

async function release(
  host: PartitionHost,
  call: grpc.ServerWritableStream<ReleaseRequestWire, PartitionChunkWireInput>,
): Promise<void> {
  const { ring_epoch: ringEpoch, partition, new_owner: newOwner } = call.request;
  if (ringEpoch !== host.ringEpoch) {
    throw new ShardError(
      'epoch-mismatch',
      `release asked under ring epoch ${ringEpoch}; this shard holds ring epoch ${host.ringEpoch}`,
      { partition, ringEpoch: host.ringEpoch },
    );
  }
  if (newOwner === '') {
    throw new ShardError('invalid-argument', 'a release must name the next owner', { partition });
  }

  await host.release(partition, newOwner);

  const cancelled = new AbortController();
  call.on('cancelled', () => cancelled.abort());
  for await (const chunk of host.releasedChunks(partition)) {
    if (cancelled.signal.aborted) return;
    if (!call.write(partitionChunkToWire(chunk))) {
      await once(call, 'drain', { signal: cancelled.signal }).catch(() => undefined);
    }
  }

  call.end();
}

function logFailure(logger: Logger, method: string, partition: number, err: unknown): void {
  if (isShardError(err) && err.kind !== 'internal') {
    logger.warn({ method, partition, err }, 'partition handoff call refused');
  } else {
    logger.error({ method, partition, err }, 'partition handoff call failed');
  }
}
