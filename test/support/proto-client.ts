/**
 * A client of the Query service built the way a user outside the project builds one:
 * straight from the `.proto` files in `proto/` with @grpc/proto-loader, sharing no code
 * with `src/transport`. Tests read a cluster's numbers through it.
 */
import path from 'node:path';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const PROTO_ROOT = path.resolve(import.meta.dirname, '../../proto');

export interface WirePeriod {
  readonly type: string;
  readonly start_ms: number;
}

export interface WireCurrentRow {
  readonly period: WirePeriod;
  readonly distinct_users: number;
  readonly version: number;
  readonly status: string;
}

export interface WireVersionRow {
  readonly period: WirePeriod;
  readonly version: number;
  readonly distinct_users: number;
  readonly status: string;
  readonly reason: string;
  readonly written_at_ms: number;
  readonly ring_epoch: number;
  readonly fencing_token: number;
}

export interface WireRejectSummary {
  readonly reason: string;
  readonly count: number;
}

type Unary<Req, Res> = (
  request: Req,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response?: Res) => void,
) => grpc.ClientUnaryCall;

type QueryStub = grpc.Client & {
  Current: Unary<object, { rows: WireCurrentRow[] }>;
  History: Unary<object, { rows: WireVersionRow[] }>;
  Rejects: Unary<{ examples_per_reason: number }, { reasons: WireRejectSummary[] }>;
  WatchVersions(request: object): grpc.ClientReadableStream<WireVersionRow>;
};

let constructor: grpc.ServiceClientConstructor | undefined;

function queryConstructor(): grpc.ServiceClientConstructor {
  if (constructor !== undefined) return constructor;

  const definition = protoLoader.loadSync('speedlayer/v1/query.proto', {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const root = grpc.loadPackageDefinition(definition);
  const v1 = (root.speedlayer as grpc.GrpcObject).v1 as grpc.GrpcObject;
  constructor = v1.Query as grpc.ServiceClientConstructor;

  return constructor;
}

/** A stream of WatchVersions: the rows it delivered so far, until cancelled. */
export interface VersionWatch {
  readonly rows: WireVersionRow[];
  /** Resolves once the server has accepted the call (its metadata arrived). */
  readonly opened: Promise<void>;
  /** Resolves when the stream ended for a reason other than cancel(); never rejects. */
  readonly failed: Promise<Error>;
  cancel(): void;
}

/** The Query service at `address` (`host:port`). */
export class ProtoQueryClient {
  private readonly stub: QueryStub;

  constructor(readonly address: string) {
    const Client = queryConstructor();
    this.stub = new Client(address, grpc.credentials.createInsecure()) as unknown as QueryStub;
  }

  current(): Promise<WireCurrentRow[]> {
    return this.unary(this.stub.Current, {}).then((r) => r.rows);
  }

  history(): Promise<WireVersionRow[]> {
    return this.unary(this.stub.History, {}).then((r) => r.rows);
  }

  rejects(): Promise<WireRejectSummary[]> {
    return this.unary(this.stub.Rejects, { examples_per_reason: 1 }).then((r) => r.reasons);
  }

  /** Opens WatchVersions over every period, from now on. */
  watch(): VersionWatch {
    const call = this.stub.WatchVersions({});
    const rows: WireVersionRow[] = [];
    let cancelled = false;
    call.on('data', (row: WireVersionRow) => rows.push(row));
    const opened = new Promise<void>((resolve) => call.once('metadata', () => resolve()));
    const failed = new Promise<Error>((resolve) => {
      call.on('error', (err) => {
        if (!cancelled) resolve(err);
      });
      call.on('end', () => {
        if (!cancelled) resolve(new Error('WatchVersions ended'));
      });
    });

    return {
      rows,
      opened,
      failed,
      cancel: () => {
        cancelled = true;
        call.cancel();
      },
    };
  }

  close(): void {
    this.stub.close();
  }

  private unary<Req, Res>(method: Unary<Req, Res>, request: Req): Promise<Res> {
    return new Promise((resolve, reject) => {
      method.call(this.stub, request, { deadline: Date.now() + 30_000 }, (error, response) => {
        if (error !== null || response === undefined) reject(error ?? new Error('no response'));
        else resolve(response);
      });
    });
  }
}
