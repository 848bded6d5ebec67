import { defineConfig } from 'vitest/config';

/**
 * Files that start clusters of real processes (etcd, shards, coordinators) run one at a
 * time after everything else: two of them at once on a 2-core machine slow each other's
 * processes past their lease and round deadlines.
 */
const CLUSTER_FILES = ['test/cluster/**/*.test.ts', 'test/cases/cluster-cases.test.ts'];

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 60_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: CLUSTER_FILES,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'cluster',
          include: CLUSTER_FILES,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
