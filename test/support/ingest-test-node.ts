/**
 * An in-process gRPC server of the Ingest service for client tests. It keeps the
 * contract with an in-memory map per batch id: a batch is stored (durable) before its
 * acknowledgement, a batch id seen before is answered with its first acknowledgement
 * and never counted again, and acknowledgements go out in a shuffled order. It judges
 * events like a node would in the simplest way (empty user id, no event time, an event
 * time more than 5 minutes, or the given skew, past its receive time). It misbehaves on request: it drops a
 * stream after some requests without acknowledging them, holds acknowledgements, is
 * stopped and restarted on the same port (keeping what it stored), refuses batches, or
 * acknowledges with wrong counts.
 */
import * as grpc from '@grpc/grpc-js';

import {
  addSpeedlayerService,
  loadSpeedlayerProtos,
  type EventBatchRequestWire,
  type IngestAckWire,
  type IngestHandlers,
  type RejectionWire,
} from '../../src/transport/proto.js';
import { errorDetailTrailer } from '../../src/transport/status-details.js';
import { rng } from './events.js';

const WEEK_MS = 7 * 24 * 3_600_000;
/** Monday 1970-01-05, the start of an ISO week. */
const FIRST_MONDAY_MS = 4 * 24 * 3_600_000;

export interface TestIngestNodeOptions {
  /** Allowed lateness added to the end of the ISO week by Finish. @default 10 min */
  readonly allowedLatenessMs?: number;
  /** How far past its receive time an event time may be. @default 5 min */
  readonly maxFutureSkewMs?: number;
  /** Largest random delay before an acknowledgement, so that they come out of order. @default 5 */
  readonly maxAckDelayMs?: number;
  readonly seed?: number;
}

type Duplex = grpc.ServerDuplexStream<EventBatchRequestWire, IngestAckWire>;

export class TestIngestNode {
  /** The first arrival of each batch id with its acknowledgement. */
  readonly stored = new Map<string, { request: EventBatchRequestWire; ack: IngestAckWire }>();
  /** Every batch id received, resends included, in order of arrival. */
  readonly arrivals: string[] = [];
  /** Batch ids sent again with other content than their first arrival. */
  readonly mismatches: string[] = [];
  /** Batches received and not yet acknowledged on their stream, at most, over all streams. */
  maxInFlight = 0;
  streamsOpened = 0;
  finishCalls = 0;
  /** Each new stream takes the next number: it fails (UNAVAILABLE) on that request, unacknowledged. */
  readonly dropStreamsAt: number[] = [];
  /** While set, acknowledgements wait; {@link release} sends them. */
  holdAcks = false;
  /** When set, every SendStream fails with this status (and an ErrorDetail saying whether to retry). */
  refuse: { code: grpc.status; retryable: boolean } | null = null;
  /** Acknowledge with one accepted event too many. */
  wrongCounts = false;
  /** Called on every request as it arrives. */
  onRequest: ((request: EventBatchRequestWire) => void) | null = null;

  private server: grpc.Server | null = null;
  private readonly held: (() => void)[] = [];
  private readonly random: () => number;
  private latestEventMs = Number.NEGATIVE_INFINITY;

  private constructor(
    private port: number,
    private readonly options: TestIngestNodeOptions,
  ) {
    this.random = rng(options.seed ?? 7);
  }

  /** Starts on `port` (0: any free one) of 127.0.0.1. */
  static async start(options: TestIngestNodeOptions = {}, port = 0): Promise<TestIngestNode> {
    const node = new TestIngestNode(port, options);
    await node.listen();

    return node;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Distinct batch ids stored. */
  get batchIds(): string[] {
    return [...this.stored.keys()];
  }

  /** Sends the acknowledgements held back while {@link holdAcks} was set. */
  release(): void {
    this.holdAcks = false;
    for (const send of this.held.splice(0)) send();
  }

  /** Stops at once: open streams break as on a crash. What was stored stays. */
  stop(): void {
    this.server?.forceShutdown();
    this.server = null;
  }

  /** Starts again on the same port, with what it had stored. */
  async restart(): Promise<void> {
    this.stop();
    await this.listen();
  }

  private async listen(): Promise<void> {
    const server = new grpc.Server();
    const handlers: IngestHandlers = {
      Send: (call, callback) => callback(null, this.accept(call.request)),
      SendStream: (call) => this.serveStream(call),
      Finish: (_call, callback) => {
        this.finishCalls++;
        callback(null, this.finishWatermark());
      },
    };
    addSpeedlayerService(server, loadSpeedlayerProtos().ingest, handlers);
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${this.port}`, grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    this.server = server;
  }

  private serveStream(call: Duplex): void {
    this.streamsOpened++;
    if (this.refuse !== null) {
      const { code, retryable } = this.refuse;
      const detail = { code: 'SL-TEST-001', message: 'refused by the test', retryable };
      call.emit('error', {
        code,
        details: detail.message,
        metadata: errorDetailTrailer(code, { ...detail, ring_epoch: 0, owner_hint: '' }),
      });
      return;
    }

    const dropAt = this.dropStreamsAt.shift();
    const timers = new Set<NodeJS.Timeout>();
    let received = 0;
    let inFlight = 0;
    let open = true;

    call.on('data', (request: EventBatchRequestWire) => {
      if (!open) return;
      received++;
      this.arrivals.push(request.batch_id);
      this.onRequest?.(request);
      const ack = this.accept(request);
      if (received === dropAt) {
        open = false;
        for (const t of timers) clearTimeout(t);
        call.emit('error', {
          code: grpc.status.UNAVAILABLE,
          details: 'stream dropped by the test',
        });
        return;
      }

      inFlight++;
      this.maxInFlight = Math.max(this.maxInFlight, inFlight);
      const send = (): void => {
        const delay = Math.floor(this.random() * ((this.options.maxAckDelayMs ?? 5) + 1));
        const timer = setTimeout(() => {
          timers.delete(timer);
          if (!open) return;
          inFlight--;
          call.write(this.wrongCounts ? { ...ack, accepted: ack.accepted + 1 } : ack);
        }, delay);
        timers.add(timer);
      };
      if (this.holdAcks) this.held.push(send);
      else send();
    });
    call.on('end', () => {
      const finish = (): void => {
        if (timers.size === 0 || !open) {
          if (open) call.end();
          return;
        }
        setTimeout(finish, 5);
      };
      finish();
    });
    call.on('cancelled', () => {
      open = false;
      for (const t of timers) clearTimeout(t);
    });
    call.on('error', () => {
      open = false;
    });
  }

  /** Stores a batch the first time its id arrives; answers with its first acknowledgement. */
  private accept(request: EventBatchRequestWire): IngestAckWire {
    const known = this.stored.get(request.batch_id);
    if (known !== undefined) {
      if (JSON.stringify(known.request) !== JSON.stringify(request)) {
        this.mismatches.push(request.batch_id);
      }

      return known.ack;
    }

    const rejected: RejectionWire[] = [];
    request.events.forEach((event, index) => {
      const receivedMs = event.received_time_ms ?? Date.now();
      if (event.user_id.trim() === '') {
        rejected.push({
          index,
          reason: 'REJECT_REASON_INVALID_USER_ID',
          detail: 'user id is empty',
        });
      } else if (event.event_time_ms === undefined) {
        rejected.push({ index, reason: 'REJECT_REASON_INVALID_TIME', detail: 'no event time' });
      } else if (event.event_time_ms > receivedMs + (this.options.maxFutureSkewMs ?? 5 * 60_000)) {
        rejected.push({
          index,
          reason: 'REJECT_REASON_FUTURE',
          detail: 'ahead of its receive time',
        });
      } else {
        this.latestEventMs = Math.max(this.latestEventMs, event.event_time_ms);
      }
    });
    const ack = {
      batch_id: request.batch_id,
      accepted: request.events.length - rejected.length,
      rejected,
    };
    this.stored.set(request.batch_id, { request, ack });

    return ack;
  }

  /** Past the end of the ISO week of the latest accepted event, plus the allowed lateness. */
  private finishWatermark(): { watermark_ms?: number } {
    if (this.latestEventMs === Number.NEGATIVE_INFINITY) return {};

    const weekEnd =
      FIRST_MONDAY_MS +
      (Math.floor((this.latestEventMs - FIRST_MONDAY_MS) / WEEK_MS) + 1) * WEEK_MS;

    return { watermark_ms: weekEnd + (this.options.allowedLatenessMs ?? 10 * 60_000) };
  }
}
