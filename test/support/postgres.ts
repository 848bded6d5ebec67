/**
 * The real PostgreSQL server for integration tests: the URL in
 * SPEEDLAYER_TEST_POSTGRES_URL (CI sets it), or undefined to skip them.
 */
export function postgresTestUrl(): string | undefined {
  const url = process.env.SPEEDLAYER_TEST_POSTGRES_URL;

  return url === undefined || url === '' ? undefined : url;
}
