/** Says once, at the start of a run, which optional suites will not run. */
export default function setup(): void {
  if (!process.env.SPEEDLAYER_TEST_POSTGRES_URL) {
    process.stderr.write(
      'speedlayer tests: SPEEDLAYER_TEST_POSTGRES_URL is not set, so the tests against a real PostgreSQL server are skipped\n',
    );
  }
}
