/**
 * The cluster harness's two lines into a running cluster:
 *
 * - {@link BatchSender}: one IngestClient stream to the ingest node, fed batch by batch, so
 *   that batches are judged in the order the harness sends them, and every batch that is
 *   not acknowledged (its node or an owner is down) is sent again with its batch id until
 *   it is;
 * - {@link RoundWatch}: the leading coordinator's Coordinator.Status, polled until its rounds
 *   have caught up with what the harness sent.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import * as grpc from '@grpc/grpc-js';

import { silentLogger } from '../../src/observability/index.js';
import {
  IngestClient,
  type BatchOutcome,
  type IngestTotals,
} from '../../src/transport/ingest-client.js';
import {
  loadSpeedlayerProtos,
  type CoordinatorClient,
  type EventBatchRequestWire,
  type StatusResponseWire,
} from '../../src/transport/proto.js';
import { statusFromWire, type StatusView } from '../../src/transport/status-service.js';

// --- ingest ------------------------------------------------------------------------------

interface Waiter {
  resolve(outcome: BatchOutcome): void;
  reject(err: unknown): void;
}

/** One ordered stream of batches to the ingest node, for the life of a replay. */
export class BatchSender {
  private readonly client: IngestClient;
  private readonly queue: EventBatchRequestWire[] = [];
  private readonly waiters = new Map<string, Waiter>();
  private readonly run: Promise<IngestTotals>;
  private wake: (() => void) | undefined;
  private ended = false;
  private failure: unknown;

  constructor(address: string) {
    // A restarted node is back within seconds: retry soon, and wait long for acknowledgements
    // that an owner being restarted holds back.
    this.client = new IngestClient(address, silentLogger(), {
      initialBackoffMs: 100,
      maxBackoffMs: 1_000,
      ackTimeoutMs: 60_000,
      stallTimeoutMs: 120_000,
    });
    this.run = this.client.send(this.input(), {
      onAck: (outcome) => {
        this.waiters.get(outcome.batchId)?.resolve(outcome);
        this.waiters.delete(outcome.batchId);
      },
    });
    this.run.catch((err: unknown) => {
      this.failure = err;
      for (const waiter of this.waiters.values()) waiter.reject(err);
      this.waiters.clear();
    });
  }

  /** Queues `request` behind every batch sent before it; resolves with its acknowledgement. */
  send(request: EventBatchRequestWire): Promise<BatchOutcome> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.ended) return Promise.reject(new Error('the batch sender is closed'));

    const acknowledged = new Promise<BatchOutcome>((resolve, reject) => {
      this.waiters.set(request.batch_id, { resolve, reject });
    });
    this.queue.push(request);
    this.wake?.();

    return acknowledged;
  }

  /** Asks the node to close every period it has seen; resolves with its watermark. */
  finish(): Promise<number | null> {
    return this.client.finish();
  }

  /** Ends the stream once every batch is acknowledged, and closes the client. */
  async close(): Promise<void> {
    this.ended = true;
    this.wake?.();
    try {
      await this.run;
    } finally {
      this.client.close();
    }
  }

  /** Closes at once, giving up on batches not acknowledged (after a failed replay). */
  abandon(): void {
    this.ended = true;
    this.wake?.();
    this.client.close();
  }

  private async *input(): AsyncGenerator<EventBatchRequestWire> {
    for (;;) {
      const next = this.queue.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.ended) return;

      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }
}

// --- the leader's rounds -----------------------------------------------------------------

/** How often the leader's status is asked while waiting. */
const POLL_MS = 20;

/** What a caught-up round must have seen. */
export interface RoundTarget {
  /** The global watermark must have reached this (every partition reported it). */
  readonly watermarkMs?: number;
  /**
   * A round must have started after this instant (epoch ms on this machine's clock): then
   * it saw every batch acknowledged before it, late events included.
   */
  readonly startedAfterMs?: number;
}

/** The leading coordinator's status, as the harness waits for its rounds. */
export class RoundWatch {
  private client: CoordinatorClient | undefined;
  private target: string | undefined;

  /**
   * @param statusAddress the Coordinator service address of a coordinator, by name
   * @param leader the coordinator that leads now, by name
   */
  constructor(
    private readonly statusAddress: (name: string) => string,
    private readonly leader: () => Promise<string | undefined>,
  ) {}

  /**
   * Resolves once a round of the leader has caught up with `target`; rejects after
   * `timeoutMs` with what the leader said last.
   */
  async caughtUp(target: RoundTarget, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let firstRoundEndMs: number | undefined;
    let last = 'no answer';

    while (Date.now() < deadline) {
      const status = await this.leaderStatus().catch((err: unknown) => {
        last = err instanceof Error ? err.message : String(err);
        return undefined;
      });
      if (status !== undefined) {
        last = describe(status);
        const endMs = status.lastRoundAtMs;
        const after = target.startedAfterMs;
        // A round that ended after the instant may have started before it; the next one did not.
        if (after !== undefined && firstRoundEndMs === undefined && endMs !== undefined) {
          if (endMs > after) firstRoundEndMs = endMs;
        }
        const roundDone =
          after === undefined ||
          (firstRoundEndMs !== undefined && endMs !== undefined && endMs > firstRoundEndMs);
        const watermark = status.globalWatermarkMs ?? Number.NEGATIVE_INFINITY;
        if (roundDone && watermark >= (target.watermarkMs ?? Number.NEGATIVE_INFINITY)) return;
      }
      await sleep(POLL_MS);
    }

    const wanted = `watermark ${iso(target.watermarkMs)}, a round after ${iso(target.startedAfterMs)}`;
    throw new Error(`the leader's rounds did not catch up in ${timeoutMs} ms (${wanted}): ${last}`);
  }

  close(): void {
    this.client?.close();
    this.client = undefined;
  }

  /** The leader's own status (a standby answers from etcd, which lags); undefined meanwhile. */
  private async leaderStatus(): Promise<StatusView | undefined> {
    if (this.target === undefined) {
      const name = await this.leader();
      if (name === undefined) return undefined;
      this.connect(this.statusAddress(name));
    }

    const status = await this.call();
    if (status.leaderId === '' || status.answeredBy !== status.leaderId) {
      this.target = undefined; // Leadership moved: ask etcd again.
      return undefined;
    }

    return status;
  }

  private connect(address: string): void {
    this.close();
    const { Client } = loadSpeedlayerProtos().coordinator;
    this.client = new Client(address, grpc.credentials.createInsecure());
    this.target = address;
  }

  private call(): Promise<StatusView> {
    const client = this.client as CoordinatorClient;
    const deadline = Date.now() + 2_000;

    return new Promise<StatusView>((resolve, reject) => {
      client.Status({}, new grpc.Metadata(), { deadline }, (error, response) => {
        if (error !== null || response === undefined) {
          this.target = undefined;
          reject(error ?? new Error('Coordinator.Status answered without a message'));
          return;
        }

        resolve(statusFromWire(response satisfies StatusResponseWire));
      });
    });
  }
}

function describe(s: StatusView): string {
  const missing =
    s.missingPartitions.length > 0 ? `, missing ${s.missingPartitions.join(',')}` : '';

  return `leader ${s.leaderId}, global watermark ${iso(s.globalWatermarkMs)}, last round ${iso(s.lastRoundAtMs)}${missing}`;
}

function iso(ms: number | undefined): string {
  return ms === undefined || !Number.isFinite(ms) ? 'none' : new Date(ms).toISOString();
}
