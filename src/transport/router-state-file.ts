/**
 * The router's position in a node's data directory (`router.json`), so that a restarted
 * node does not judge events with an empty watermark. It is written atomically (a
 * temporary file, flushed, then renamed over the old one).
 */
import fs from 'node:fs/promises';
import path from 'node:path';

import type { RouterState } from '../ingest/event-router.js';

/** The file's name inside the data directory. */
export const ROUTER_STATE_FILE = 'router.json';

interface StoredRouterState {
  readonly version: 1;
  /** The watermark mode the state was written under, for people reading the file. */
  readonly mode: string;
  readonly state: RouterState;
  readonly writtenAtMs: number;
}

/** Reads the stored state; undefined when the directory has none yet. */
export async function readRouterState(dataDir: string): Promise<RouterState | undefined> {
  const file = path.join(dataDir, ROUTER_STATE_FILE);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }

  const stored = JSON.parse(text) as Partial<StoredRouterState>;
  const state = stored.state;
  if (stored.version !== 1 || state === undefined || !isRouterState(state)) {
    throw new Error(`[SL-CONFIG-004] ${file} is not a router state this version can read`);
  }

  return state;
}

/** Replaces the stored state in one step: a crash leaves the old file or the new one. */
export async function writeRouterState(
  dataDir: string,
  mode: string,
  state: RouterState,
): Promise<void> {
  await fs.mkdir(dataDir, { recursive: true });
  const file = path.join(dataDir, ROUTER_STATE_FILE);
  const temporary = `${file}.${process.pid}.tmp`;
  const stored: StoredRouterState = { version: 1, mode, state, writtenAtMs: Date.now() };

  const handle = await fs.open(temporary, 'w');
  try {
    await handle.writeFile(`${JSON.stringify(stored)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(temporary, file);
}

function isRouterState(value: RouterState): boolean {
  const ok = (n: unknown): boolean => n === null || Number.isFinite(n);

  return ok(value.watermarkMs) && ok(value.clockMs) && ok(value.maxEventMs);
}
