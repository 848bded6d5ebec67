/**
 * A client of the Coordinator service: `Status` from any process that serves it (a
 * coordinator, leading or standing by), as a {@link StatusView}. A failure is thrown as a
 * {@link StatusCallError} carrying the server's stable code when it sent one.
 */
import * as grpc from '@grpc/grpc-js';

import { CLIENT_KEEPALIVE_OPTIONS } from './keepalive.js';
import { loadSpeedlayerProtos, type StatusResponseWire } from './proto.js';
import { readErrorDetail } from './status-details.js';
import { STATUS_ERROR_CODES, statusFromWire, type StatusView } from './status-service.js';

export interface StatusClientOptions {
  /** How long to wait for the channel and the answer together. @default 5_000 */
  readonly timeoutMs?: number;
  /** @default insecure (plaintext) */
  readonly credentials?: grpc.ChannelCredentials;
}

/** A failed Status call: `code` is the server's stable code, or SL-STATUS-001 when unreachable. */
export class StatusCallError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly retryable: boolean,
    options?: ErrorOptions,
  ) {
    super(message.startsWith(`[${code}]`) ? message : `[${code}] ${message}`, options);
    this.name = 'StatusCallError';
  }
}

/** Asks the Coordinator service at `target` (`host:port`) for the status. */
export async function fetchStatus(
  target: string,
  options: StatusClientOptions = {},
): Promise<StatusView> {
  const { Client } = loadSpeedlayerProtos().coordinator;
  const client = new Client(
    target,
    options.credentials ?? grpc.credentials.createInsecure(),
    CLIENT_KEEPALIVE_OPTIONS,
  );
  const deadline = Date.now() + (options.timeoutMs ?? 5_000);

  try {
    const wire = await new Promise<StatusResponseWire>((resolve, reject) => {
      client.Status({}, new grpc.Metadata(), { deadline }, (error, response) => {
        if (error !== null || response === undefined) {
          reject(error ?? new Error('Coordinator.Status answered without a message'));
          return;
        }

        resolve(response);
      });
    });

    return statusFromWire(wire);
  } catch (error) {
    throw toStatusCallError(error, target);
  } finally {
    client.close();
  }
}

function toStatusCallError(error: unknown, target: string): StatusCallError {
  const service = error as Partial<grpc.ServiceError>;
  const detail = readErrorDetail(service.metadata);
  if (detail !== undefined) {
    return new StatusCallError(detail.code, detail.message, detail.retryable, { cause: error });
  }

  const why = error instanceof Error ? error.message : String(error);
  if (service.code === grpc.status.UNIMPLEMENTED) {
    // Something answers there, but not the Coordinator service: a `serve-query` port, say.
    return new StatusCallError(
      STATUS_ERROR_CODES.internal,
      `${target} does not serve the Coordinator service; point --target at a shard or a coordinator (not serve-query): ${why}`,
      false,
      { cause: error },
    );
  }

  const unreachable =
    service.code === grpc.status.UNAVAILABLE || service.code === grpc.status.DEADLINE_EXCEEDED;
  const message = unreachable
    ? `cannot reach the coordinator service at ${target}: ${why}`
    : `Coordinator.Status at ${target} failed: ${why}`;
  const code = unreachable ? STATUS_ERROR_CODES.unavailable : STATUS_ERROR_CODES.internal;

  return new StatusCallError(code, message, unreachable, { cause: error });
}
