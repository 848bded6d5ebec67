/**
 * The wire contracts in proto/ and their converters. Scenarios:
 * - every proto file loads, and each service has the methods the parts rely on;
 * - every field name is snake_case and survives the loader (keepCase), while
 *   a camelCase name is caught as unknown;
 * - a PartitionBatch with interleaved marks, a PartitionReport (with a known
 *   and an unknown watermark), partition counts and acks, a CurrentRow, a
 *   VersionRow, filings and the dead-letter summary survive protobuf encoding
 *   and decoding, both through protobufjs and through the gRPC method
 *   serializers, and come back as equal domain objects;
 * - messages that break their contract are refused with SL-WIRE-001;
 * - a real grpc-js server on 127.0.0.1:0 answers Query.Current to a client
 *   built from the same definitions.
 */
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { afterEach, describe, expect, it } from 'vitest';

import type { PartitionAck } from '../../src/coordinator/coordinator.js';
import { periodKey, weekStart } from '../../src/periods/index.js';
import type { PartitionBatch, PartitionReport } from '../../src/shard/types.js';
import type {
  CurrentRow,
  DeadLetterSummary,
  FilingView,
  PeriodRange,
  VersionRow,
} from '../../src/sink/index.js';
import {
  PROTO_PACKAGE,
  WIRE_CONVERSION_OPTIONS,
  WireFormatError,
  addSpeedlayerService,
  currentRowFromWire,
  currentRowToWire,
  filingViewFromWire,
  filingViewToWire,
  loadSpeedlayerProtos,
  loadSpeedlayerRoot,
  partitionAckFromWire,
  partitionAckToWire,
  partitionBatchFromWire,
  partitionBatchToWire,
  partitionCountsFromWire,
  partitionCountsToWire,
  periodKeyFromWire,
  periodKeyToWire,
  periodRangeFromWire,
  periodRangeToWire,
  rejectSummaryFromWire,
  rejectSummaryToWire,
  reportFromWire,
  reportToWire,
  versionRowFromWire,
  versionRowToWire,
  type CurrentResponseWire,
  type CurrentRowWire,
  type ErrorDetailWire,
  type PartitionBatchWire,
  type PartitionReportWire,
  type QueryClient,
  type QueryHandlers,
  type VersionRowWire,
} from '../../src/transport/index.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** 2015-03-24T00:00:00Z */
const WATERMARK_MS = 1_427_155_200_000;
const USERS = 247_010;

const protos = loadSpeedlayerProtos();
const root = loadSpeedlayerRoot();

/**
 * Encodes a wire object as message `name` with protobufjs and decodes it as gRPC would,
 * into the type `Received` of that message as a receiver gets it.
 */
function viaProtobuf<Received>(name: string, wire: object): Received {
  const type = root.lookupType(`${PROTO_PACKAGE}.${name}`);
  const bytes = type.encode(type.fromObject(wire as Record<string, unknown>)).finish();

  return type.toObject(type.decode(bytes), WIRE_CONVERSION_OPTIONS) as Received;
}

/** Sends a request through a method's serializers, as grpc-js does. */
function viaRequest<Sent, Received>(
  method: { requestSerialize(value: Sent): Buffer; requestDeserialize(bytes: Buffer): Received },
  request: NoInfer<Sent>,
): Received {
  return method.requestDeserialize(method.requestSerialize(request));
}

/** Sends a response through a method's serializers, as grpc-js does. */
function viaResponse<Sent, Received>(
  method: { responseSerialize(value: Sent): Buffer; responseDeserialize(bytes: Buffer): Received },
  response: NoInfer<Sent>,
): Received {
  return method.responseDeserialize(method.responseSerialize(response));
}

/** Paths of the keys of `value` that message `type` does not declare, at any depth. */
function undeclaredFields(type: protobuf.Type, value: object, at = type.name): string[] {
  const out: string[] = [];
  for (const [key, v] of Object.entries(value)) {
    const field = type.fields[key];
    if (field === undefined) {
      out.push(`${at}.${key}`);
      continue;
    }
    const nested = field.resolve().resolvedType;
    if (nested instanceof protobuf.Type && v !== null && v !== undefined) {
      const items: object[] = field.repeated ? (v as object[]) : [v as object];
      for (const item of items) out.push(...undeclaredFields(nested, item, `${at}.${key}`));
    }
  }

  return out;
}

function messageTypes(ns: protobuf.NamespaceBase): protobuf.Type[] {
  const out: protobuf.Type[] = [];
  for (const nested of ns.nestedArray) {
    if (nested instanceof protobuf.Type) out.push(nested);
    if (nested instanceof protobuf.Namespace) out.push(...messageTypes(nested));
  }

  return out;
}

const batch: PartitionBatch = {
  partition: 7,
  length: 3,
  userIds: ['u1', 'user-42', 'ü-ñ 9'],
  slotHashes: Uint32Array.from([0, 4_294_967_295, 123_456_789]),
  eventTimeMs: Float64Array.from([WATERMARK_MS, WATERMARK_MS + HOUR - 1, WATERMARK_MS + 1]),
  marks: [
    { before: 0, watermarkMs: WATERMARK_MS - HOUR },
    { before: 2, watermarkMs: WATERMARK_MS },
    { before: 3, watermarkMs: WATERMARK_MS + HOUR },
  ],
};

const report: PartitionReport = {
  partition: 3,
  watermarkMs: WATERMARK_MS,
  seals: [
    { key: `hour:${WATERMARK_MS - HOUR}`, count: USERS },
    { key: `day:${WATERMARK_MS - DAY}`, count: USERS },
  ],
  changes: [{ key: `day:${WATERMARK_MS - 2 * DAY}`, lateEvents: 12, newUsers: 3 }],
  openPeriods: [
    `day:${WATERMARK_MS}`,
    periodKey({ type: 'week', startMs: weekStart(WATERMARK_MS) }),
  ],
};

const currentRow: CurrentRow = {
  periodType: 'day',
  periodStartMs: WATERMARK_MS - DAY,
  distinctUsers: USERS,
  version: 2,
  status: 'restated',
  computedAtMs: WATERMARK_MS + 5 * 60_000,
  watermarkMs: WATERMARK_MS,
};

const versionRow: VersionRow = {
  periodType: 'day',
  periodStartMs: WATERMARK_MS - DAY,
  version: 2,
  distinctUsers: USERS,
  status: 'restated',
  reason: 'restated: +3 users from 12 late events in 1 of 16 partitions',
  writtenAtMs: WATERMARK_MS + 5 * 60_000,
  watermarkMs: WATERMARK_MS,
  ringEpoch: 4,
  fencingToken: 7_001_234,
};

describe('loadSpeedlayerProtos', () => {
  it('gives every service the methods the parts rely on', () => {
    const methods = (service: { definition: object }): string[] =>
      Object.keys(service.definition).sort();

    expect(methods(protos.ingest)).toEqual(['Finish', 'Send', 'SendStream']);
    expect(methods(protos.shard)).toEqual([
      'Acknowledge',
      'Adopt',
      'Checkpoint',
      'Counts',
      'Release',
      'Report',
      'Route',
    ]);
    expect(methods(protos.coordinator)).toEqual(['Status']);
    expect(methods(protos.query)).toEqual([
      'CreateFiling',
      'Current',
      'History',
      'ListFilings',
      'Rejects',
      'WatchVersions',
    ]);
    expect(protos.query.name).toBe('speedlayer.v1.Query');
    expect(protos.shard.definition.Route.path).toBe('/speedlayer.v1.Shard/Route');
  });

  it('marks the streaming methods as streams', () => {
    const send = protos.ingest.definition.SendStream;
    const watch = protos.query.definition.WatchVersions;
    const release = protos.shard.definition.Release;

    expect([send.requestStream, send.responseStream]).toEqual([true, true]);
    expect([watch.requestStream, watch.responseStream]).toEqual([false, true]);
    expect([release.requestStream, release.responseStream]).toEqual([false, true]);
    expect(protos.shard.definition.Adopt.responseStream).toBe(false);
    expect(protos.query.definition.Current.responseStream).toBe(false);
  });

  it('loads once per process', () => {
    expect(loadSpeedlayerProtos()).toBe(protos);
  });
});

describe('field names', () => {
  it('are snake_case in every message', () => {
    const notSnake = messageTypes(root)
      .flatMap((type) => type.fieldsArray.map((f) => `${type.name}.${f.name}`))
      .filter((name) => !/^[A-Za-z0-9]+\.[a-z][a-z0-9_]*$/.test(name));

    expect(messageTypes(root).length).toBeGreaterThan(40);
    expect(notSnake).toEqual([]);
  });

  it('keep their case through the loader, and a camelCase name is caught', () => {
    const event = root.lookupType(`${PROTO_PACKAGE}.Event`);
    const sent = {
      batch_id: 'b-1',
      source: 'web',
      events: [{ user_id: 'u1', event_time_ms: WATERMARK_MS }],
    };
    const received = viaRequest(protos.ingest.definition.Send, sent);

    expect(received.events[0]?.user_id).toBe('u1');
    expect(received.events[0]?.event_time_ms).toBe(WATERMARK_MS);
    expect(undeclaredFields(event, { userId: 'u1', event_time_ms: 1 })).toEqual(['Event.userId']);
    // Why the check matters: the loader drops the camelCase field without a word.
    const dropped = viaRequest(protos.ingest.definition.Send, {
      events: [{ userId: 'u1' }],
    } as unknown as typeof sent);
    expect(dropped.events[0]?.user_id).toBe('');
  });

  it('of every converter output are declared in the proto files', () => {
    const outputs: [string, object][] = [
      ['PartitionBatch', partitionBatchToWire(batch)],
      ['PartitionReport', reportToWire(report)],
      ['CurrentRow', currentRowToWire(currentRow)],
      ['VersionRow', versionRowToWire(versionRow)],
      ['PartitionCounts', partitionCountsToWire(1, new Map([[`hour:${WATERMARK_MS}`, USERS]]))],
      ['PeriodRange', periodRangeToWire({ periodType: 'week', fromMs: 0, toMs: WATERMARK_MS })],
    ];

    for (const [name, wire] of outputs) {
      expect(undeclaredFields(root.lookupType(`${PROTO_PACKAGE}.${name}`), wire)).toEqual([]);
    }
  });
});

describe('converters', () => {
  it('carry a PartitionBatch with interleaved marks', () => {
    const wire = partitionBatchToWire(batch);

    expect(partitionBatchFromWire(viaProtobuf('PartitionBatch', wire))).toStrictEqual(batch);
    const route = viaRequest(protos.shard.definition.Route, {
      ring_epoch: 4,
      sender_id: 'node-1',
      sequence: 9,
      batch: wire,
    });
    expect(route.ring_epoch).toBe(4);
    expect(route.sequence).toBe(9);
    expect(partitionBatchFromWire(route.batch)).toStrictEqual(batch);
  });

  it('carry a batch of marks only (idle input)', () => {
    const idle: PartitionBatch = {
      partition: 0,
      length: 0,
      userIds: [],
      slotHashes: new Uint32Array(0),
      eventTimeMs: new Float64Array(0),
      marks: [{ before: 0, watermarkMs: WATERMARK_MS }],
    };

    expect(
      partitionBatchFromWire(viaProtobuf('PartitionBatch', partitionBatchToWire(idle))),
    ).toStrictEqual(idle);
  });

  it('carry a PartitionReport, with a known and an unknown watermark', () => {
    const fresh: PartitionReport = {
      partition: 0,
      watermarkMs: Number.NEGATIVE_INFINITY,
      seals: [],
      changes: [],
      openPeriods: [],
    };
    const response = viaResponse(protos.shard.definition.Report, {
      ring_epoch: 4,
      reports: [reportToWire(report), reportToWire(fresh)],
    });

    expect(reportFromWire(viaProtobuf('PartitionReport', reportToWire(report)))).toStrictEqual(
      report,
    );
    expect(response.reports.map(reportFromWire)).toStrictEqual([report, fresh]);
    expect(response.reports[1]?.watermark_ms).toBeUndefined();
  });

  it('carry partition counts and acknowledgements keyed by period', () => {
    const counts = new Map([
      [`hour:${WATERMARK_MS}`, USERS],
      [`week:${weekStart(WATERMARK_MS)}`, 0],
    ]);
    const ack: PartitionAck = {
      partition: 3,
      seals: [`hour:${WATERMARK_MS - HOUR}`],
      changes: report.changes,
    };
    const response = viaResponse(protos.shard.definition.Counts, {
      ring_epoch: 4,
      partitions: [partitionCountsToWire(3, counts)],
    });
    const request = viaRequest(protos.shard.definition.Acknowledge, {
      ring_epoch: 4,
      fencing_token: 7_001_234,
      round: 12,
      acks: [partitionAckToWire(ack)],
    });

    expect(response.partitions.map(partitionCountsFromWire)).toStrictEqual([
      { partition: 3, counts },
    ]);
    expect(request.acks.map(partitionAckFromWire)).toStrictEqual([ack]);
    expect(request.fencing_token).toBe(7_001_234);
  });

  it('carry a CurrentRow', () => {
    const response = viaResponse(protos.query.definition.Current, {
      rows: [currentRowToWire(currentRow)],
    });

    expect(
      currentRowFromWire(viaProtobuf('CurrentRow', currentRowToWire(currentRow))),
    ).toStrictEqual(currentRow);
    expect(response.rows.map(currentRowFromWire)).toStrictEqual([currentRow]);
    expect(response.rows[0]?.status).toBe('PERIOD_STATUS_RESTATED');
  });

  it('carry a VersionRow', () => {
    const streamed = viaResponse(
      protos.query.definition.WatchVersions,
      versionRowToWire(versionRow),
    );

    expect(
      versionRowFromWire(viaProtobuf('VersionRow', versionRowToWire(versionRow))),
    ).toStrictEqual(versionRow);
    expect(versionRowFromWire(streamed)).toStrictEqual(versionRow);
  });

  it('carry filings, with and without a note', () => {
    const filing: FilingView = {
      filingId: 17,
      periodType: 'day',
      periodStartMs: WATERMARK_MS - DAY,
      version: 1,
      distinctUsers: USERS - 3,
      filedBy: 'finance@example.com',
      note: 'Q1 investor letter',
      filedAtMs: WATERMARK_MS + HOUR,
      currentVersion: 2,
      currentDistinctUsers: USERS,
      currentStatus: 'restated',
      difference: 3,
    };
    const unnoted: FilingView = { ...filing, filingId: 18, note: null };
    const response = viaResponse(protos.query.definition.ListFilings, {
      filings: [filingViewToWire(filing), filingViewToWire(unnoted)],
    });

    expect(response.filings.map(filingViewFromWire)).toStrictEqual([filing, unnoted]);
  });

  it('carry the dead-letter summary', () => {
    const summary: DeadLetterSummary = {
      counts: { invalid_user_id: 2, too_old: 1 },
      examples: {
        invalid_user_id: [
          {
            source: 'logs/a.ndjson',
            line: 3,
            reason: 'invalid_user_id',
            detail: 'user id is empty',
            raw: '{"user_id":""}',
          },
          {
            source: 'logs/a.ndjson',
            line: 9,
            reason: 'invalid_user_id',
            detail: 'no user id',
            raw: '{}',
          },
        ],
        too_old: [
          {
            source: 'logs/b.csv',
            line: 1,
            reason: 'too_old',
            detail: 'event time is 4.0 d behind',
            raw: 'u1,2015',
          },
        ],
      },
    };
    const response = viaResponse(protos.query.definition.Rejects, {
      reasons: rejectSummaryToWire(summary),
    });

    expect(rejectSummaryFromWire(response.reasons)).toStrictEqual(summary);
  });

  it('carry period keys and ranges, where no filter stays no filter', () => {
    const ranges: PeriodRange[] = [{}, { periodType: 'hour' }, { fromMs: 0, toMs: WATERMARK_MS }];
    const request = viaRequest(protos.query.definition.Current, { range: null });

    expect(periodKeyToWire(`week:${weekStart(WATERMARK_MS)}`)).toEqual({
      type: 'PERIOD_TYPE_WEEK',
      start_ms: weekStart(WATERMARK_MS),
    });
    expect(periodKeyFromWire(viaProtobuf('Period', periodKeyToWire(`day:${WATERMARK_MS}`)))).toBe(
      `day:${WATERMARK_MS}`,
    );
    for (const range of ranges) {
      expect(
        periodRangeFromWire(viaProtobuf('PeriodRange', periodRangeToWire(range))),
      ).toStrictEqual(range);
    }
    expect(periodRangeFromWire(request.range)).toStrictEqual({});
  });

  it('carry an ErrorDetail with what a client needs to re-route', () => {
    const detail: ErrorDetailWire = {
      code: 'SL-RING-003',
      message: '[SL-RING-003] partition 7 is owned by shard-2 under ring epoch 12',
      retryable: true,
      ring_epoch: 12,
      owner_hint: '10.0.0.12:7001',
      partition: 7,
    };

    expect(viaProtobuf('ErrorDetail', detail)).toMatchObject(detail);
  });

  it('refuse messages that break their contract', () => {
    const good = viaProtobuf<PartitionBatchWire>('PartitionBatch', partitionBatchToWire(batch));
    const bad: PartitionBatchWire[] = [
      { ...good, event_time_ms: good.event_time_ms.slice(1) },
      {
        ...good,
        marks: [
          { before: 2, watermark_ms: 1 },
          { before: 1, watermark_ms: 2 },
        ],
      },
      { ...good, marks: [{ before: 4, watermark_ms: 1 }] },
    ];
    const unspecified: PartitionReportWire = {
      ...viaProtobuf<PartitionReportWire>('PartitionReport', reportToWire(report)),
      open_periods: [{ type: 'PERIOD_TYPE_UNSPECIFIED', start_ms: WATERMARK_MS }],
    };
    const provisional: VersionRowWire = {
      ...viaProtobuf<VersionRowWire>('VersionRow', versionRowToWire(versionRow)),
      status: 'PERIOD_STATUS_PROVISIONAL',
    };
    const periodless: CurrentRowWire = {
      ...viaProtobuf<CurrentRowWire>('CurrentRow', currentRowToWire(currentRow)),
      period: null,
    };

    for (const wire of bad) expect(() => partitionBatchFromWire(wire)).toThrow(WireFormatError);
    expect(() => reportFromWire(unspecified)).toThrow('[SL-WIRE-001]');
    expect(() => versionRowFromWire(provisional)).toThrow('[SL-WIRE-001]');
    expect(() => currentRowFromWire(periodless)).toThrow('[SL-WIRE-001]');
  });
});

describe('gRPC over loopback', () => {
  let server: grpc.Server | undefined;
  let client: QueryClient | undefined;

  afterEach(async () => {
    client?.close();
    if (server !== undefined) {
      const s = server;
      await new Promise<void>((resolve) => s.tryShutdown(() => resolve()));
    }
    server = undefined;
    client = undefined;
  });

  it('answers Query.Current from a client built from the same definitions', async () => {
    const unimplemented = (_call: unknown, callback: grpc.sendUnaryData<never>): void =>
      callback({ code: grpc.status.UNIMPLEMENTED, details: 'not in this test' });
    const seen: PeriodRange[] = [];
    const handlers: QueryHandlers = {
      Current: (call, callback) => {
        seen.push(periodRangeFromWire(call.request.range));
        callback(null, { rows: [currentRowToWire(currentRow)] });
      },
      History: unimplemented,
      ListFilings: unimplemented,
      CreateFiling: unimplemented,
      Rejects: unimplemented,
      WatchVersions: (call) => call.end(),
    };
    server = new grpc.Server();
    addSpeedlayerService(server, protos.query, handlers);
    const s = server;
    const port = await new Promise<number>((resolve, reject) =>
      s.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );

    client = new protos.query.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const c = client;
    const range: PeriodRange = {
      periodType: 'day',
      fromMs: WATERMARK_MS - DAY,
      toMs: WATERMARK_MS,
    };
    const response = await new Promise<CurrentResponseWire>((resolve, reject) =>
      c.Current({ range: periodRangeToWire(range) }, (err, res) =>
        err ? reject(err) : resolve(res as CurrentResponseWire),
      ),
    );

    expect(seen).toStrictEqual([range]);
    expect(response.rows.map(currentRowFromWire)).toStrictEqual([currentRow]);
  });
});
