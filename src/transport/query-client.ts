/**
 * A typed client of the Query service: domain rows in, domain rows out, and every failure
 * as a {@link QueryError} (through {@link rethrowGrpcError}).
 *
 * No call is retried here. The reads are idempotent and a caller may repeat them when an
 * error says `retryable`; CreateFiling is not, and must not be repeated blindly.
 */
import * as grpc from '@grpc/grpc-js';

import type {
  CurrentRow,
  DeadLetterSummary,
  FileCurrentArgs,
  FilingRow,
  FilingView,
  PeriodRange,
  VersionRow,
} from '../sink/index.js';
import { CLIENT_KEEPALIVE_OPTIONS } from './keepalive.js';
import {
  currentRowFromWire,
  filingRowFromWire,
  filingViewFromWire,
  loadSpeedlayerProtos,
  periodRangeToWire,
  periodToWire,
  rejectSummaryFromWire,
  versionRowFromWire,
  type QueryClient as QueryStub,
  type UnaryClientMethod,
  type VersionRowWire,
} from './proto.js';
import { QueryError, rethrowGrpcError, toQueryError } from './query-errors.js';

/** Largest reply the client takes: years of hourly rows, or every filing. */
export const QUERY_MAX_REPLY_BYTES = 256 * 1024 * 1024;

export interface QueryClientOptions {
  /** How long {@link QueryClient.connect} waits for the channel to be ready. @default 5_000 */
  readonly connectTimeoutMs?: number;
  /** Deadline of each unary call. @default 30_000 */
  readonly callTimeoutMs?: number;
  /** @default insecure (plaintext) */
  readonly credentials?: grpc.ChannelCredentials;
  /** Merged over {@link CLIENT_KEEPALIVE_OPTIONS}. */
  readonly channelOptions?: grpc.ChannelOptions;
}

export interface WatchOptions {
  /** Which periods; all when left out. */
  readonly range?: PeriodRange;
  /** Replay the versions written at or after this instant (epoch ms) before the new ones. */
  readonly sinceWrittenAtMs?: number;
  /** Called once the server has read its starting point; later versions all arrive. */
  readonly onReady?: () => void;
  /**
   * Called once when the stream ends other than by cancel(): a server that drains ends it
   * with a retryable `unavailable`; resume with `sinceWrittenAtMs`.
   */
  readonly onError?: (error: unknown) => void;
}

/** A connection to the Query service at one target. */
export class QueryClient {
  private closed = false;

  private constructor(
    private readonly stub: QueryStub,
    private readonly callTimeoutMs: number,
  ) {}

  /** Connects to `target` (`host:port`) and waits until the channel is ready. */
  static async connect(target: string, options: QueryClientOptions = {}): Promise<QueryClient> {
    const { Client } = loadSpeedlayerProtos().query;
    const stub = new Client(target, options.credentials ?? grpc.credentials.createInsecure(), {
      ...CLIENT_KEEPALIVE_OPTIONS,
      // gRPC's default of 4 MiB is too small for those.
      'grpc.max_receive_message_length': QUERY_MAX_REPLY_BYTES,
      ...options.channelOptions,
    });
    const deadline = Date.now() + (options.connectTimeoutMs ?? 5_000);

    try {
      await new Promise<void>((resolve, reject) => {
        stub.waitForReady(deadline, (error) => (error === undefined ? resolve() : reject(error)));
      });
    } catch (error) {
      stub.close();
      const why = error instanceof Error ? error.message : String(error);
      throw new QueryError('unavailable', `cannot reach the query service at ${target}: ${why}`, {
        cause: error,
      });
    }

    return new QueryClient(stub, options.callTimeoutMs ?? 30_000);
  }

  /** The current row of each period in `range`, by type and then start. */
  async current(range: PeriodRange = {}): Promise<CurrentRow[]> {
    const response = await this.unary('Current', this.stub.Current, {
      range: periodRangeToWire(range),
    });

    return response.rows.map(currentRowFromWire);
  }

  /** Every published version in `range`, by type, start and version. */
  async history(range: PeriodRange = {}): Promise<VersionRow[]> {
    const response = await this.unary('History', this.stub.History, {
      range: periodRangeToWire(range),
    });

    return response.rows.map(versionRowFromWire);
  }

  /** Every filing, oldest first, beside its period's current number. */
  async filings(): Promise<FilingView[]> {
    const response = await this.unary('ListFilings', this.stub.ListFilings, {});

    return response.filings.map(filingViewFromWire);
  }

  /**
   * Files the period's current published version. Not idempotent: each success adds a
   * filing. A period without a published version fails with kind `not-published`.
   */
  async file(args: FileCurrentArgs): Promise<FilingRow> {
    const response = await this.unary('CreateFiling', this.stub.CreateFiling, {
      period: periodToWire({ type: args.periodType, startMs: args.periodStartMs }),
      filed_by: args.filedBy,
      ...(args.note === undefined ? {} : { note: args.note }),
    });

    return filingRowFromWire(response.filing);
  }

  /**
   * Dead-letter counts per reason with the first few examples of each. The wire cannot
   * ask for 0 examples: 0 means the server's default, 3.
   */
  async rejects(examplesPerReason = 3): Promise<DeadLetterSummary> {
    const response = await this.unary('Rejects', this.stub.Rejects, {
      examples_per_reason: examplesPerReason,
    });

    return rejectSummaryFromWire(response.reasons);
  }

  /** Streams the versions as they are written, until the returned function cancels it. */
  watch(onVersion: (row: VersionRow) => void, options: WatchOptions = {}): () => void {
    const stream = this.stub.WatchVersions({
      range: periodRangeToWire(options.range ?? {}),
      ...(options.sinceWrittenAtMs === undefined
        ? {}
        : { since_written_at_ms: options.sinceWrittenAtMs }),
    });
    let ended = false;
    const end = (error: unknown): void => {
      if (ended) return;

      ended = true;
      stream.cancel();
      options.onError?.(error);
    };

    stream.on('metadata', () => options.onReady?.());
    stream.on('data', (wire: VersionRowWire) => {
      try {
        onVersion(versionRowFromWire(wire));
      } catch (error) {
        end(error);
      }
    });
    stream.on('error', (error: unknown) => end(toQueryError(error, 'WatchVersions')));
    // A stream never ends by itself; one ended with OK (a proxy closing it, say) is lost.
    stream.on('status', (status: grpc.StatusObject) => {
      if (status.code === grpc.status.OK) {
        end(new QueryError('unavailable', 'the server ended the WatchVersions stream'));
      }
    });

    return () => {
      ended = true;
      stream.cancel();
    };
  }

  /** Closes the channel; calls in flight fail with `cancelled`. Safe to call twice. */
  close(): void {
    if (this.closed) {
      return;
    }

    this.closed = true;
    this.stub.close();
  }

  private async unary<Req, Res>(
    method: string,
    invoke: UnaryClientMethod<Req, Res>,
    request: Req,
  ): Promise<Res> {
    const options = { deadline: Date.now() + this.callTimeoutMs };

    try {
      return await new Promise<Res>((resolve, reject) => {
        invoke.call(this.stub, request, new grpc.Metadata(), options, (error, response) => {
          if (error !== null || response === undefined) {
            reject(error ?? new Error(`Query.${method} answered without a message`));
            return;
          }

          resolve(response);
        });
      });
    } catch (error) {
      rethrowGrpcError(error, method);
    }
  }
}
