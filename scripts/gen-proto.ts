/**
 * Generates the TypeScript types of the wire contracts into `src/gen/`
 * (`npm run gen:proto`; `typecheck`, `lint` and `build` run it first).
 *
 * The generator is proto-loader's own `proto-loader-gen-types`, and its
 * flags are derived from the options the services load the same files with
 * at run time (`PROTO_LOADER_OPTIONS` in src/transport/proto.ts). A
 * generated `X__Output` type therefore describes exactly what a decoded
 * message looks like, and the two cannot drift apart: an option without a
 * generator flag stops the run.
 *
 * `src/gen/` is not committed. It is only ever imported with `import type`,
 * so the services, tsx and vitest run without it. The types are generated
 * aside and `src/gen/` is only replaced when they differ: a type check or
 * lint running at the same time is left alone unless the contracts changed.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Options } from '@grpc/proto-loader';

import { PROTO_FILES, PROTO_LOADER_OPTIONS } from '../src/transport/proto.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const OUT_DIR = 'src/gen';
const GENERATOR = fileURLToPath(
  new URL('../node_modules/.bin/proto-loader-gen-types', import.meta.url),
);

/** The generator flag of each runtime loader option. */
function loaderFlags(options: Options): string[] {
  const flags: string[] = [];
  for (const [name, value] of Object.entries(options)) {
    switch (name) {
      case 'keepCase':
      case 'defaults':
      case 'arrays':
      case 'objects':
      case 'oneofs':
      case 'json':
        if (value === true) flags.push(`--${name}`);
        break;
      case 'longs':
      case 'enums':
      case 'bytes':
        // The loader takes the constructor (Number, String), the generator its name.
        flags.push(`--${name}=${(value as { name: string }).name}`);
        break;
      case 'includeDirs':
        for (const dir of value as string[]) {
          flags.push(`--includeDirs=${path.relative(ROOT, dir) || '.'}`);
        }
        break;
      default:
        throw new Error(`proto-loader option '${name}' has no generator flag here yet`);
    }
  }

  return flags;
}

/** Every file below `dir` with its text, by path relative to `dir`; empty when it is missing. */
function filesOf(dir: string): Map<string, string> {
  let names: string[];
  try {
    names = readdirSync(dir, { recursive: true, encoding: 'utf8' });
  } catch {
    return new Map();
  }

  return new Map(
    names
      .filter((name) => name.endsWith('.ts'))
      .map((name) => [name, readFileSync(path.join(dir, name), 'utf8')]),
  );
}

function sameFiles(a: Map<string, string>, b: Map<string, string>): boolean {
  return a.size === b.size && [...a].every(([name, text]) => b.get(name) === text);
}

const outDir = path.join(ROOT, OUT_DIR);
const fresh = mkdtempSync(path.join(tmpdir(), 'speedlayer-gen-proto-'));
try {
  execFileSync(
    GENERATOR,
    [
      ...loaderFlags(PROTO_LOADER_OPTIONS),
      '--grpcLib=@grpc/grpc-js',
      // NodeNext resolution wants the extension that tsx and vitest map back to .ts.
      '--importFileExtension=.js',
      '--includeComments',
      `--outDir=${fresh}`,
      '--',
      ...PROTO_FILES,
    ],
    { cwd: ROOT, stdio: 'inherit' },
  );
  if (!sameFiles(filesOf(fresh), filesOf(outDir))) {
    rmSync(outDir, { recursive: true, force: true });
    cpSync(fresh, outDir, { recursive: true });
  }
} finally {
  rmSync(fresh, { recursive: true, force: true });
}
