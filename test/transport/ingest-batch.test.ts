/**
 * The checks an Ingest request gets before any router state: an event whose receive time
 * lies outside the calendar is rejected as invalid_time, naming the receive time, and not
 * judged by it (it would pass as 'future' or drag the clock).
 */
import { describe, expect, it } from 'vitest';

import { checkRequest } from '../../src/transport/ingest-batch.js';
import type { EventBatchRequestWire } from '../../src/transport/proto.js';

const T = Date.UTC(2026, 2, 23, 10);

function request(received: Array<number | undefined>): EventBatchRequestWire {
  return {
    batch_id: 'b-1',
    source: 'svc',
    events: received.map((receivedMs, i) => ({
      user_id: `u${i}`,
      event_time_ms: T,
      ...(receivedMs === undefined ? {} : { received_time_ms: receivedMs }),
      event_id: '',
      attributes: {},
      line: 0,
    })),
    unreadable: [],
  };
}

describe('checkRequest', () => {
  it('rejects a receive time outside years 0000-9999 as invalid_time', () => {
    const checked = checkRequest(request([T, -(2 ** 63), undefined, 4e15, T + 1]), undefined);

    expect(checked.rejected).toEqual([
      {
        index: 1,
        reason: 'invalid_time',
        detail: 'receive time -9223372036854776000 ms is outside years 0000-9999',
      },
      {
        index: 3,
        reason: 'invalid_time',
        detail: 'receive time 4000000000000000 ms is outside years 0000-9999',
      },
    ]);
    expect(checked.batch.userIds).toEqual(['u0', 'u2', 'u4']);
    expect([...(checked.batch.receiveTimeMs as Float64Array)]).toEqual([T, Number.NaN, T + 1]);
  });
});
