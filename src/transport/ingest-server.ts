/**
 * The Ingest service (ingest.proto) over a node's {@link IngestRouter}.
 *
 * - Send: one batch, answered with its acknowledgement.
 * - SendStream: every request is judged as it arrives and gets exactly one
 *   acknowledgement with its batch id, in the order its parts become durable. The stream
 *   stops reading while too many of its batches wait (back-pressure), and ends with the
 *   status of a batch that cannot be taken (malformed, or the node unavailable): the
 *   client sends its unacknowledged batches again, and counts never change twice.
 * - Finish: closes every period the node has seen.
 *
 * A call cancelled by its client, or past its deadline, loses nothing: what was routed
 * is still delivered, and a resent batch is applied once more without changing a count.
 */
import type * as grpc from '@grpc/grpc-js';

import type { Logger } from '../observability/index.js';
import { asIngestError, ingestStatus } from './ingest-errors.js';
import type { IngestRouter } from './ingest-router.js';
import {
  addSpeedlayerService,
  loadSpeedlayerProtos,
  type EventBatchRequestWire,
  type IngestAckWire,
  type IngestHandlers,
} from './proto.js';
import type { ServedService } from './served-service.js';

export const INGEST_SERVICE = 'speedlayer.v1.Ingest';

export interface IngestServiceOptions {
  readonly router: IngestRouter;
  readonly logger: Logger;
  /** Batches of one stream that may wait for their acknowledgement before it stops reading. @default 64 */
  readonly maxPendingPerStream?: number;
}

/** The Ingest service, to be served beside others (see {@link ServedService}). */
export function ingestService(options: IngestServiceOptions): ServedService {
  return {
    name: INGEST_SERVICE,
    protoFile: 'speedlayer/v1/ingest.proto',
    serving: options.router.ready,
    register: (server) =>
      addSpeedlayerService(server, loadSpeedlayerProtos().ingest, ingestHandlers(options)),
  };
}

export function ingestHandlers(options: IngestServiceOptions): IngestHandlers {
  const { router, logger } = options;
  const maxPending = options.maxPendingPerStream ?? 64;

  return {
    Send: (call, callback) => {
      if (call.cancelled) return;
      router.submit(call.request).then(
        (ack) => callback(null, ack),
        (err: unknown) => callback(failedCall('Send', err, logger)),
      );
    },

    SendStream: (call) => sendStream(call, router, logger, maxPending),

    Finish: (call, callback) => {
      router.finish().then(
        (watermarkMs) =>
          callback(null, watermarkMs === undefined ? {} : { watermark_ms: watermarkMs }),
        (err: unknown) => callback(failedCall('Finish', err, logger)),
      );
    },
  };
}

function sendStream(
  call: grpc.ServerDuplexStream<EventBatchRequestWire, IngestAckWire>,
  router: IngestRouter,
  logger: Logger,
  maxPending: number,
): void {
  let pending = 0;
  let inputEnded = false;
  let finished = false;

  const finish = (status?: grpc.StatusObject): void => {
    if (finished) return;
    finished = true;
    if (status === undefined) call.end();
    else call.emit('error', status);
  };
  const settle = (): void => {
    pending--;
    if (pending < maxPending && call.isPaused()) call.resume();
    if (inputEnded && pending === 0) finish();
  };

  call.on('data', (request: EventBatchRequestWire) => {
    if (finished || call.cancelled) return;
    pending++;
    if (pending >= maxPending) call.pause();

    router
      .submit(request)
      .then(
        (ack) => {
          if (!finished && !call.cancelled) call.write(ack);
        },
        (err: unknown) => finish(failedCall('SendStream', err, logger)),
      )
      .finally(settle);
  });
  call.on('end', () => {
    inputEnded = true;
    if (pending === 0) finish();
  });
  call.on('cancelled', () => {
    finished = true;
  });
}

/** The status of a failed call, logged by how much an operator needs to know. */
function failedCall(method: string, error: unknown, logger: Logger): grpc.StatusObject {
  const failure = asIngestError(error);
  const fields = { method, code: failure.code, err: failure };
  if (failure.kind === 'internal') logger.error(fields, 'ingest call failed');
  else logger.debug(fields, 'ingest call refused');

  return ingestStatus(failure);
}
