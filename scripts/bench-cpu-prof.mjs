/**
 * Preloaded into the node processes of a profiled `npm run bench -- --cluster --cpu-prof`
 * (`NODE_OPTIONS=--import <this file>`; Node 20 refuses `--cpu-prof` in NODE_OPTIONS):
 * profiles the main thread from start to exit at 1 ms and writes
 * `$SPEEDLAYER_BENCH_CPU_PROF_DIR/<pid>.cpuprofile`. A process killed by a signal it does
 * not handle writes nothing.
 */
import fs from 'node:fs';
import inspector from 'node:inspector';
import path from 'node:path';
import { isMainThread } from 'node:worker_threads';

const dir = process.env.SPEEDLAYER_BENCH_CPU_PROF_DIR;

if (isMainThread && dir !== undefined && dir !== '') {
  const session = new inspector.Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 1000 });
  session.post('Profiler.start');

  // An in-thread session answers synchronously, so this completes inside 'exit'.
  process.on('exit', () => {
    session.post('Profiler.stop', (err, result) => {
      if (err !== null) return;

      fs.writeFileSync(path.join(dir, `${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
