export { createLogger, silentLogger } from './logger.js';
export type { Logger, LoggerOptions } from './logger.js';
export { Counter, Gauge, Registry, createMetricsRegistry, startMetricsServer } from './metrics.js';
export type { MetricsRegistryOptions, MetricsServer, MetricsServerOptions } from './metrics.js';
