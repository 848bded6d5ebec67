/**
 * IngestClient against a real gRPC server in the test process (test/support/
 * ingest-test-node.ts) that keeps the Ingest contract and breaks on request:
 * - every batch is acknowledged once, matched by batch id though acknowledgements come
 *   out of order, with at most the window in flight, and the totals equal a recount;
 * - a stream dropped mid-way, or the node stopped and restarted, costs a resend of the
 *   unacknowledged batches under the same ids, never a batch counted twice;
 * - a node that is down past the deadline, or answers nothing, fails the send clearly;
 *   a refusal that cannot change is not retried; an acknowledgement that does not add
 *   up is a protocol error;
 * - Finish returns the node's watermark; a signal stops taking input, and what was
 *   taken is still acknowledged;
 * - reader batches become requests line for line, and oversized ones are cut by lines.
 */
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';

import type { EventBatch } from '../../src/ingest/types.js';
import { silentLogger } from '../../src/observability/index.js';
import { IngestClient, IngestClientError } from '../../src/transport/ingest-client.js';
import { cutBatch, eventBatchToWire } from '../../src/transport/ingest-requests.js';
import type { EventBatchRequestWire } from '../../src/transport/proto.js';
import { TestIngestNode } from '../support/ingest-test-node.js';
import { rng } from '../support/events.js';

const MONDAY = Date.UTC(2026, 2, 23);
const nodes: TestIngestNode[] = [];
const clients: IngestClient[] = [];

afterEach(() => {
  for (const client of clients.splice(0)) client.close();
  for (const node of nodes.splice(0)) node.stop();
});

async function startNode(
  ...args: Parameters<typeof TestIngestNode.start>
): Promise<TestIngestNode> {
  const node = await TestIngestNode.start(...args);
  nodes.push(node);

  return node;
}

function clientOf(
  node: TestIngestNode,
  options: ConstructorParameters<typeof IngestClient>[2] = {},
) {
  const client = new IngestClient(node.address, silentLogger(), {
    initialBackoffMs: 20,
    maxBackoffMs: 200,
    // A client that loses batches fails in seconds rather than hanging the test.
    ackTimeoutMs: 2_000,
    stallTimeoutMs: 8_000,
    ...options,
  });
  clients.push(client);

  return client;
}

/** `count` batches of `size` events; about one in 20 has an empty user id, one in 25 is far ahead. */
function makeBatches(count: number, size: number, seed = 1): EventBatchRequestWire[] {
  const next = rng(seed);
  const out: EventBatchRequestWire[] = [];
  for (let b = 0; b < count; b++) {
    const events = Array.from({ length: size }, (_, i) => {
      const t = MONDAY + Math.floor(next() * 3 * 86_400_000);
      const roll = next();
      return {
        user_id: roll < 0.05 ? '' : `u${Math.floor(next() * 500)}`,
        event_time_ms: roll > 0.96 ? t + 3_600_000 : t,
        received_time_ms: t,
        event_id: '',
        attributes: {},
        line: b * size + i + 1,
      };
    });
    out.push({
      batch_id: `test:L${b * size + 1}-${(b + 1) * size}`,
      source: 'test',
      events,
      unreadable: [],
    });
  }

  return out;
}

/** What the node should answer, recounted from the batches. */
function recount(batches: readonly EventBatchRequestWire[]) {
  let accepted = 0;
  const rejects: Record<string, number> = {};
  for (const b of batches) {
    for (const e of b.events) {
      const reason =
        e.user_id === ''
          ? 'invalid_user_id'
          : (e.event_time_ms as number) > (e.received_time_ms as number) + 300_000
            ? 'future'
            : null;
      if (reason === null) accepted++;
      else rejects[reason] = (rejects[reason] ?? 0) + 1;
    }
  }

  return { accepted, rejects };
}

async function* slowly<T>(items: readonly T[], delayMs: number): AsyncGenerator<T> {
  for (const item of items) {
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    yield item;
  }
}

describe('IngestClient.send', () => {
  it('acknowledges every batch once, matched by id, with at most the window in flight', async () => {
    const node = await startNode({ maxAckDelayMs: 8 });
    const batches = makeBatches(120, 50);
    const acked: string[] = [];
    const totals = await clientOf(node, { windowSize: 6 }).send(batches, {
      onAck: (outcome, request) => {
        expect(outcome.batchId).toBe(request.batch_id);
        acked.push(outcome.batchId);
      },
    });

    const expected = recount(batches);
    expect(totals).toMatchObject({ batches: 120, reconnects: 0, interrupted: false });
    expect(totals.accepted).toBe(expected.accepted);
    expect(totals.rejects).toEqual(expected.rejects);
    expect(totals.rejected).toBe(120 * 50 - expected.accepted);
    expect(new Set(acked)).toEqual(new Set(batches.map((b) => b.batch_id)));
    expect(acked.length).toBe(120);
    // Out of order: the node shuffles its acknowledgements.
    expect(acked).not.toEqual(batches.map((b) => b.batch_id));
    expect(node.arrivals).toEqual(batches.map((b) => b.batch_id));
    expect(node.maxInFlight).toBeLessThanOrEqual(6);
    expect(node.maxInFlight).toBeGreaterThan(1);
  });

  it('resends the unacknowledged batches with the same ids when streams drop mid-way', async () => {
    const node = await startNode();
    node.dropStreamsAt.push(10, 3, 25);
    const batches = makeBatches(80, 20, 2);
    const totals = await clientOf(node, { windowSize: 8 }).send(batches);

    expect(totals.reconnects).toBe(3);
    expect(node.streamsOpened).toBe(4);
    // Every batch arrived, some more than once, and none was counted twice.
    expect(new Set(node.batchIds)).toEqual(new Set(batches.map((b) => b.batch_id)));
    expect(node.arrivals.length).toBeGreaterThan(80);
    expect(node.mismatches).toEqual([]);
    const expected = recount(batches);
    expect(totals.batches).toBe(80);
    expect(totals.accepted).toBe(expected.accepted);
    expect(totals.rejects).toEqual(expected.rejects);
  });

  it('survives the node being stopped and restarted on the same port', async () => {
    const node = await startNode();
    const batches = makeBatches(40, 20, 3);
    let restarted = false;
    node.onRequest = (request) => {
      if (restarted || request.batch_id !== batches[12]?.batch_id) return;
      restarted = true;
      node.stop();
      setTimeout(() => void node.restart(), 300);
    };
    const totals = await clientOf(node).send(slowly(batches, 2));

    expect(restarted).toBe(true);
    expect(totals.reconnects).toBeGreaterThanOrEqual(1);
    expect(totals.batches).toBe(40);
    expect(totals.accepted).toBe(recount(batches).accepted);
    expect(new Set(node.batchIds)).toEqual(new Set(batches.map((b) => b.batch_id)));
    expect(node.mismatches).toEqual([]);
  });

  it('gives up at the deadline while the node is down', async () => {
    const node = await startNode();
    node.stop();
    const started = Date.now();
    const error = await clientOf(node, { deadlineMs: 700 })
      .send(makeBatches(3, 5))
      .catch((e: unknown) => e);

    expect(error).toBeInstanceOf(IngestClientError);
    expect(error).toMatchObject({ kind: 'deadline-exceeded', code: 'SL-INGEST-102' });
    expect((error as Error).message).toContain('3 batches unacknowledged, 0 acknowledged');
    expect(Date.now() - started).toBeGreaterThanOrEqual(690);
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('reopens a stream that acknowledges nothing, and gives up after the stall timeout', async () => {
    const node = await startNode();
    node.holdAcks = true;
    const error = await clientOf(node, { ackTimeoutMs: 150, stallTimeoutMs: 800 })
      .send(makeBatches(2, 5))
      .catch((e: unknown) => e);

    expect(error).toMatchObject({ kind: 'unavailable', code: 'SL-INGEST-101' });
    expect(node.streamsOpened).toBeGreaterThanOrEqual(3);
    // The same two batches, again on every stream.
    expect(new Set(node.arrivals).size).toBe(2);
  });

  it('does not retry a refusal that sending again cannot change', async () => {
    const node = await startNode();
    node.refuse = { code: grpc.status.INVALID_ARGUMENT, retryable: false };
    const error = await clientOf(node)
      .send(makeBatches(2, 5))
      .catch((e: unknown) => e);

    expect(error).toMatchObject({ kind: 'refused', code: 'SL-INGEST-103' });
    expect((error as Error).message).toContain('INVALID_ARGUMENT');
    expect(node.streamsOpened).toBe(1);
  });

  it('retries a refusal whose detail says it is retryable', async () => {
    const node = await startNode();
    node.refuse = { code: grpc.status.FAILED_PRECONDITION, retryable: true };
    setTimeout(() => (node.refuse = null), 200);
    const totals = await clientOf(node).send(makeBatches(3, 5));

    expect(totals.batches).toBe(3);
    expect(node.streamsOpened).toBeGreaterThan(1);
  });

  it('fails on an acknowledgement whose counts do not add up to its batch', async () => {
    const node = await startNode();
    node.wrongCounts = true;
    const error = await clientOf(node)
      .send(makeBatches(2, 5))
      .catch((e: unknown) => e);

    expect(error).toMatchObject({ kind: 'protocol', code: 'SL-INGEST-104' });
    expect((error as Error).message).toMatch(
      /has 5 events, but its acknowledgement counts \d+ accepted and \d+ rejected/,
    );
  });

  it('refuses a batch id that is already in flight', async () => {
    const node = await startNode();
    node.holdAcks = true;
    const [first] = makeBatches(1, 3);
    const error = await clientOf(node)
      .send([first!, first!])
      .catch((e: unknown) => e);

    expect(error).toMatchObject({ kind: 'invalid-input' });
    expect((error as Error).message).toContain('is already in flight');
  });

  it('stops taking input on the signal and still waits for what is in flight', async () => {
    const node = await startNode();
    node.holdAcks = true;
    const stop = new AbortController();
    node.onRequest = () => {
      if (node.arrivals.length === 4) {
        stop.abort();
        setTimeout(() => node.release(), 50);
      }
    };
    const totals = await clientOf(node, { windowSize: 4 }).send(makeBatches(20, 5), {
      signal: stop.signal,
    });

    expect(totals).toMatchObject({ interrupted: true, batches: 4 });
    expect(node.arrivals.length).toBe(4);
  });

  it('fails a send in progress when the client is closed', async () => {
    const node = await startNode();
    node.holdAcks = true;
    const client = clientOf(node);
    const sending = client.send(makeBatches(2, 5)).catch((e: unknown) => e);
    setTimeout(() => client.close(), 100);

    expect(await sending).toMatchObject({ kind: 'closed' });
  });
});

describe('IngestClient.finish', () => {
  it("returns the node's watermark, retrying while the node restarts", async () => {
    const node = await startNode();
    const client = clientOf(node);
    expect(await client.finish()).toBeNull();

    await client.send(makeBatches(5, 10, 4));
    node.stop();
    setTimeout(() => void node.restart(), 300);
    const watermark = await client.finish();

    // The batches span Monday 2026-03-23 to Thursday: the week ends Monday the 30th.
    expect(watermark).toBe(Date.UTC(2026, 2, 30, 0, 10));
    expect(node.finishCalls).toBe(2);
  });
});

describe('reader batches as requests', () => {
  const batch: EventBatch = {
    source: '/data/app.ndjson#abc',
    length: 3,
    userIds: ['alice', 'bob', 'carol'],
    eventTimeMs: Float64Array.from([MONDAY, 1e300, -1e300]),
    receiveTimeMs: Float64Array.from([MONDAY + 1, Number.NaN, MONDAY]),
    lines: Uint32Array.from([1, 3, 6]),
    eventIds: ['e1', undefined, 'e3'],
    rejects: [
      {
        source: '/data/app.ndjson#abc',
        line: 2,
        reason: 'malformed',
        detail: 'not JSON',
        raw: '{',
      },
      {
        source: '/data/app.ndjson#abc',
        line: 4,
        reason: 'invalid_time',
        detail: 'no time',
        raw: '{}',
      },
    ],
    lastLine: 6,
  };

  it('carries every event with its line and every unreadable record with its reason', () => {
    const wire = eventBatchToWire(batch, 'b1');

    expect(wire).toEqual({
      batch_id: 'b1',
      source: '/data/app.ndjson#abc',
      events: [
        {
          user_id: 'alice',
          event_time_ms: MONDAY,
          received_time_ms: MONDAY + 1,
          event_id: 'e1',
          attributes: {},
          line: 1,
        },
        // Times beyond int64 are sent at its limit, not wrapped.
        {
          user_id: 'bob',
          event_time_ms: 9_223_372_036_854_774_784,
          event_id: '',
          attributes: {},
          line: 3,
        },
        {
          user_id: 'carol',
          event_time_ms: -9_223_372_036_854_774_784,
          received_time_ms: MONDAY,
          event_id: 'e3',
          attributes: {},
          line: 6,
        },
      ],
      unreadable: [
        { line: 2, reason: 'REJECT_REASON_MALFORMED', detail: 'not JSON', raw: '{' },
        { line: 4, reason: 'REJECT_REASON_INVALID_TIME', detail: 'no time', raw: '{}' },
      ],
    });
  });

  it('cuts an oversized batch into stretches of whole lines', () => {
    const parts = cutBatch(batch, 90);
    const lines = parts.map((p) =>
      [...p.lines, ...p.rejects.map((r) => r.line)].sort((a, b) => a - b),
    );

    expect(lines.flat()).toEqual([1, 2, 3, 4, 6]);
    expect(parts.length).toBeGreaterThan(1);
    for (let i = 1; i < lines.length; i++) {
      expect(Math.min(...lines[i]!)).toBeGreaterThan(Math.max(...lines[i - 1]!));
    }
    expect(parts.map((p) => p.lastLine)).toEqual(lines.map((l) => Math.max(...l)));
    expect(cutBatch(batch)).toEqual([batch]);
  });
});
