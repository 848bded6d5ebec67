/**
 * StatusRecorder and the status record, without servers: a fake clock and round results
 * as the Coordinator returns them. Scenarios:
 * - a shard's partitions go missing: one warn line naming the shard, its address and the
 *   reason, none for the rounds while they stay missing, a reminder a minute later, and
 *   one info line when they are back;
 * - the record: reported flags, the last watermark of a missing partition kept, the
 *   global watermark only for a complete round;
 * - when the record needs writing: first, on a change of missing partitions, and after
 *   the refresh interval otherwise;
 * - the etcd encoding round-trips, and a reader judges a record of another term as
 *   having no last round.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';

import type { RoundResult } from '../../src/coordinator/coordinator.js';
import { StatusRecorder } from '../../src/coordinator/status-recorder.js';
import {
  RingError,
  encodeStatus,
  judgeStatus,
  parseStatus,
  type Ring,
} from '../../src/ring/index.js';

const RING: Ring = {
  epoch: 3,
  partitions: 4,
  owners: ['shard-a', 'shard-b', 'shard-a', 'shard-b'],
};
const ADDRESSES = ['10.0.0.1:7400', '10.0.0.2:7400', '10.0.0.1:7400', '10.0.0.2:7400'];
const T0 = Date.UTC(2026, 2, 23, 12);

interface Line {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

function setup(): {
  recorder: StatusRecorder;
  lines: Line[];
  clock: { ms: number };
} {
  const lines: Line[] = [];
  const logger = pino(
    { level: 'debug' },
    { write: (l: string) => lines.push(JSON.parse(l) as Line) },
  );
  const clock = { ms: T0 };
  const recorder = new StatusRecorder({
    leaderId: 'coord-a',
    fencingToken: 42,
    partitionCount: 4,
    logger,
    now: () => clock.ms,
  });
  recorder.setRing(RING, ADDRESSES);

  return { recorder, lines, clock };
}

/** A round in which `missing` did not report and the others reported `watermarkMs`. */
function round(missing: number[], watermarkMs: number): RoundResult {
  const reported = [0, 1, 2, 3].filter((p) => !missing.includes(p));

  return {
    globalWatermarkMs: missing.length > 0 ? Number.NEGATIVE_INFINITY : watermarkMs,
    finals: 0,
    restated: 0,
    provisional: 0,
    missingPartitions: missing,
    partitionWatermarksMs: new Map(reported.map((p) => [p, watermarkMs])),
  };
}

describe('StatusRecorder', () => {
  it('logs a shard going missing once, reminds a minute later, and logs it back once', () => {
    const { recorder, lines, clock } = setup();
    const down = new Map([['10.0.0.2:7400', new Error('connect ECONNREFUSED')]]);

    recorder.recordRound(round([], T0), new Map());
    for (let i = 0; i < 10; i++) {
      clock.ms += 1000;
      recorder.recordRound(round([1, 3], T0 + 1000), down);
    }
    expect(lines.map((l) => l.msg)).toEqual([
      'partitions missing: final and restated numbers held back',
    ]);
    expect(lines[0]).toMatchObject({
      level: 40,
      shardId: 'shard-b',
      address: '10.0.0.2:7400',
      partitions: [1, 3],
      err: { message: 'connect ECONNREFUSED' },
    });

    clock.ms += 60_000;
    recorder.recordRound(round([1, 3], T0 + 2000), down);
    clock.ms += 1000;
    recorder.recordRound(round([1, 3], T0 + 2000), down);
    expect(lines.slice(1)).toMatchObject([
      {
        level: 40,
        msg: 'partitions still missing: final and restated numbers held back',
        missingPartitions: [1, 3],
        shards: ['shard-b'],
        missingForMs: 69_000,
      },
    ]);

    clock.ms += 1000;
    recorder.recordRound(round([], T0 + 3000));
    recorder.recordRound(round([], T0 + 3000));
    expect(lines.slice(2)).toMatchObject([
      {
        level: 30,
        msg: 'partitions reporting again',
        shardId: 'shard-b',
        partitions: [1, 3],
        missingForMs: 71_000,
      },
    ]);
  });

  it('keeps the last watermark of a missing partition and the global watermark of complete rounds only', () => {
    const { recorder, clock } = setup();
    expect(recorder.current).toMatchObject({
      leaderId: 'coord-a',
      fencingToken: 42,
      ringEpoch: 3,
      missingPartitions: [],
    });
    expect(recorder.current.lastRoundAtMs).toBeUndefined();
    expect(recorder.current.partitions.map((p) => p.reported)).toEqual([
      false,
      false,
      false,
      false,
    ]);

    recorder.recordRound(round([], T0 - 5000));
    expect(recorder.current.globalWatermarkMs).toBe(T0 - 5000);
    clock.ms += 1000;
    recorder.recordRound(round([3], T0));

    const record = recorder.current;
    expect(record.globalWatermarkMs).toBeUndefined();
    expect(record.missingPartitions).toEqual([3]);
    expect(record.lastRoundAtMs).toBe(T0 + 1000);
    expect(record.partitions).toEqual([
      { partition: 0, shardId: 'shard-a', address: ADDRESSES[0], reported: true, watermarkMs: T0 },
      { partition: 1, shardId: 'shard-b', address: ADDRESSES[1], reported: true, watermarkMs: T0 },
      { partition: 2, shardId: 'shard-a', address: ADDRESSES[2], reported: true, watermarkMs: T0 },
      {
        partition: 3,
        shardId: 'shard-b',
        address: ADDRESSES[3],
        reported: false,
        watermarkMs: T0 - 5000,
      },
    ]);
  });

  it('needs a write first, on a change of missing partitions, and after the refresh interval', () => {
    const { recorder, clock } = setup();
    expect(recorder.needsWrite()).toBe(true);
    recorder.recordRound(round([], T0));
    recorder.markWritten(recorder.current);

    clock.ms += 1000;
    recorder.recordRound(round([], T0 + 1000));
    expect(recorder.needsWrite()).toBe(false);

    recorder.recordRound(round([2], T0 + 1000));
    expect(recorder.needsWrite()).toBe(true);
    recorder.markWritten(recorder.current);

    clock.ms += 4000;
    recorder.recordRound(round([2], T0 + 5000));
    expect(recorder.needsWrite()).toBe(false);
    clock.ms += 1000;
    recorder.recordRound(round([2], T0 + 6000));
    expect(recorder.needsWrite()).toBe(true);
  });
});

describe('status record', () => {
  it('round-trips through the etcd encoding', () => {
    const { recorder } = setup();
    recorder.recordRound(round([1], T0));
    const record = recorder.current;

    expect(parseStatus(encodeStatus(record))).toEqual(record);
    expect(() => parseStatus('{"leaderId":7}')).toThrow(RingError);
    expect(() => parseStatus('not json')).toThrow(/SL-RING-006/);
  });

  it('judges a record of another term, or of no elected leader, as having no last round', () => {
    const { recorder } = setup();
    recorder.recordRound(round([1], T0));
    const record = recorder.current;

    expect(judgeStatus(record, { candidateId: 'coord-a', fencingToken: 42 }, T0)).toBe(record);

    const later = judgeStatus(record, { candidateId: 'coord-b', fencingToken: 57 }, T0);
    expect(later).toMatchObject({
      leaderId: 'coord-b',
      fencingToken: 57,
      ringEpoch: 3,
      missingPartitions: [],
    });
    expect(later?.lastRoundAtMs).toBeUndefined();
    expect(later?.globalWatermarkMs).toBeUndefined();
    expect(later?.partitions.map((p) => [p.shardId, p.reported, p.watermarkMs])).toEqual([
      ['shard-a', false, T0],
      ['shard-b', false, undefined],
      ['shard-a', false, T0],
      ['shard-b', false, T0],
    ]);

    expect(judgeStatus(record, undefined, T0)).toMatchObject({ leaderId: '', fencingToken: 0 });
    expect(judgeStatus(undefined, undefined, T0)).toBeUndefined();
    expect(judgeStatus(undefined, { candidateId: 'coord-b', fencingToken: 57 }, T0)).toMatchObject({
      leaderId: 'coord-b',
      fencingToken: 57,
      ringEpoch: 0,
      partitions: [],
    });
  });
});
